"""The policy core (pure: plain functions over pydantic models; no Kafka, no I/O, no clock).

``sharing`` compiles a scenario's catalogue and subscriptions into per-entry policies and
decides one record; ``grouping`` decides a batch's records per subscription group; ``masking``
the 脱敏 rules; ``routing`` the router's per-batch work (:class:`~exchange.policy.routing.RouterCore`);
``audit`` the hash-chained audit trail (全程留痕). The import contracts in pyproject.toml keep it pure.
"""
