"""Everything about the broker and its clients.

Broker lifecycles: ``tansu`` (embedded, default), ``apache`` (Apache Kafka nodes; ``distribution`` finds
Java and the pinned Kafka); ``brokers`` picks one from ``--broker`` or describes a ``--bootstrap``
cluster. ``clients`` builds every Kafka client of the project by named profile; ``topics`` creates
and reads topics; ``batching`` sends many records with few futures; ``gateway`` models a
department's boundary gateway (the delay and cap a client feels between it and the broker).
"""
