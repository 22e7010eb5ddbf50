"""The router worker: the Faust and aiokafka adapter around the policy core.

``app`` is the worker (``python -m exchange.router``): it fetches ingress batches, routes them
through :class:`~exchange.policy.routing.RouterCore`, sends deliveries, audit blocks and dead
letters, and commits offsets (``commits``) once the outputs are acknowledged. ``faust_bulk``
hands whole fetched batches to it, ``lenient_records`` turns undecodable batches into dead
letters, ``tables`` holds the approvals and authoritative values in Faust tables.
"""
