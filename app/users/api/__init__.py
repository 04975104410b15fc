"""HTTP interface of the users context."""
