"""User use cases: commands, queries, their handlers and the read models they return."""
