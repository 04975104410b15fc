"""The user-management bounded context, built only from ``app.building_blocks``.

Read it in this order: ``domain`` (the rules), ``application`` (use cases as commands, queries and
handlers), ``persistence`` (tables, repository, read model), ``api`` (HTTP), ``module`` (wiring).
"""
