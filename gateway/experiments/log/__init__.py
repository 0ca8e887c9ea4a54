"""The prediction log: records, the bounded hand-off, the writer process, the SQL store, columns
for analysis.
"""
