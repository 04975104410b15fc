"""Which topic an integration event goes to: one topic per aggregate type.

By convention ``<service>.<aggregate>s.v1`` (for a service named ``billing`` and aggregate type
``invoice``: ``billing.invoices.v1``); any aggregate's topic can be overridden. The ``v1`` names
the topic's contract; a breaking change gets a new topic.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.building_blocks.domain.events import IntegrationEvent


class TopicRouter:
    def __init__(self, service: str, overrides: Mapping[str, str] | None = None) -> None:
        self.service = service
        self.overrides = dict(overrides or {})

    def topic_for_aggregate(self, aggregate_type: str) -> str:
        if not aggregate_type:
            raise ValueError("integration events need an AGGREGATE_TYPE to be routed")
        return self.overrides.get(aggregate_type) or f"{self.service}.{aggregate_type}s.v1"

    def __call__(self, event: IntegrationEvent) -> str:
        return self.topic_for_aggregate(event.aggregate_type)
