"""Benchmarks of the heavy paths: `make bench` / `python -m bench`.

Each case runs ours side by side with its baseline (the physical limit, or the
naive way) on SQLite (a temp file) and on PostgreSQL (a private scratch
database on BENCH_DATABASE_URL's server; skipped with a note when unset), and
the run writes BENCHMARKS.md. Ratios are what count; absolute times are for
context. `--quick` shrinks every size ~50-100x for CI.

Not collected by pytest (it lives outside tests/); tests/bench/ runs the
smallest mode to keep it working.
"""
