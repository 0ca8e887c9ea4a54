"""Experiment records: per-arm statistics and shadow comparisons, off the reply's path."""
