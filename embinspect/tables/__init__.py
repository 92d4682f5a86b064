"""The token table: rows read in chunks, dtypes and devices, exact scoring, and how a query
becomes rows."""
