"""The benchmarks of ``exchange bench``: is the simulator ever the bottleneck?

``run`` the producer, raw pass-through (``raw``), router and consumer rates; ``broker_floor`` one hop
on the broker alone; ``policy`` the cost of one decision; ``guarantee`` what exactly-once costs.
"""
