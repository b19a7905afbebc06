"""Benchmarks. They print figures; nothing here asserts on wall-clock time.

`python -m bench.ingest` (or `make bench`) measures the ingest pipeline end to end; see
docs/performance.md for what is measured and the figures so far.

Layout: `ingest` (flags and the run), `config` (constants, options), `stack` (servers,
tiers, catalog), `load` (load generator), `measure` (Postgres/Valkey side), `phases`,
`machine`, `report`; `httpclient`, `procstat` and `serverstats` are the helpers they use.
"""
