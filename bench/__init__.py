"""Benchmarks for the catalog: request economy, parse, import, catalog latency (`make bench`).

Run `python -m bench` (all sections) or `python -m bench requests parse import catalog`.
Results go to bench/results.json and bench/RESULTS.md; nothing is written to db/.
"""
