"""The lifecycle simulator: the job lifecycle's real domain code under seeded faults and
interleavings, checked against the service's invariants (see `oracle.py`). `python -m
tests.simulation --seeds N` runs many seeds; `--seed S` replays one with its trace."""
