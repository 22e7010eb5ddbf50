"""One run: ``controller`` (broker, topics, children, faults, result), its children's plumbing
(``processes``: never outliving the run; ``status``: the typed status files; ``warmup``: the schedule),
the ``--chaos`` spec (``chaos``, pure) and its injection (``faults``), ``maxrate`` (``--find-max-rate``)
and the terminal view (``display``).
"""
