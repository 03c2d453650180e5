"""Graph Construction Agent: crawl platforms, register and calibrate experts (paper §3.1).

Entry points: ``agents.construction.graph.run_crawl`` (with ``make_context`` /
``make_calibrator``) and ``diffgraph crawl`` (``agents.construction.cli``). Nothing is
imported here, so that the CLI stays fast to start.
"""
