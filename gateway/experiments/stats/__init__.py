"""The statistics of an experiment: live per-arm figures, estimates, sequential tests, SRM, the
decision.
"""
