"""The reusable kit: generic building blocks that know nothing about any bounded context.

Dependency rule: ``domain`` imports only the standard library and pydantic; ``application``
imports ``domain``; ``infrastructure`` and ``api`` import both. Nothing here imports ``app.users``.
"""
