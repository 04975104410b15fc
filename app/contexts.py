"""The service's bounded contexts: the one list the composition root builds everything from.

Adding a context is its package (``app/<name>/``, declaring ``context`` in ``module.py``) plus
one line here; see docs/ADD_A_BOUNDED_CONTEXT.md.
"""

from __future__ import annotations

from app.building_blocks.bounded_context import BoundedContext
from app.users.module import context as users

CONTEXTS: tuple[BoundedContext, ...] = (users,)
