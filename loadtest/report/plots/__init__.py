"""The report's plots, drawn with matplotlib (Agg) into base64 PNGs: no files, no network."""
