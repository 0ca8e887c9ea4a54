"""Capture and replay (issue 28): a sampled share of each model's requests written with
their answers to Parquet files, and `dualserve replay` to judge a candidate on them."""
