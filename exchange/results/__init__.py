"""From the processes' final reports to what a person reads.

``build`` turns typed status messages into ``result.json`` (:class:`~schemas.results.Result`);
``latency`` the mergeable HdrHistograms; ``slos`` the verdicts; ``report`` the HTML page (a package:
load, series, charts, markup, sections, compose); ``compare`` two runs side by side.
"""
