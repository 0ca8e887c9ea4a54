"""Benchmarks of the experiments room and capture: the prediction log, its handoff, the
analysis at production volume and under load, the capture."""
