"""`python -m bench`: the service measured against its limits, written to BENCHMARKS.md."""
