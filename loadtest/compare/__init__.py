"""`python -m loadtest compare RUN_A RUN_B`: two runs cell by cell, with a verdict, as a page."""
