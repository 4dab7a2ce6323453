"""Benchmark scenarios of bench/run.py (see bench/README.md). Not tests: pytest never collects them."""
