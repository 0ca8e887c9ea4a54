"""The prediction log: the record, the bounded hand-off, the writer process, the SQL store,
columns for analysis."""
