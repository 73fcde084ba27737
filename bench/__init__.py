"""Benchmarks: scripts run as `python bench/NAME.py`; a package so that one can use another's
builders (`from bench.fullgame import build_match`) without path tricks."""
