"""The load-test report: summaries, tables, sentences, plots, HTML pages, and `compare`."""
