"""Routing: which framework answers, what is mirrored, and what happens on failure."""
