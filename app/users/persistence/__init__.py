"""How users are stored: the table, the repository, the read model and the unit of work."""
