"""The mediator: one ``send`` for every use case, wrapped in ordered pipeline behaviours.

Each ``send`` gets a fresh :class:`RequestContext`. It carries a new unit of work from the
factory its request type was registered with (or the mediator's default), which the handler and
the behaviours share (the transaction behaviour opens and commits it), so no handler deals with
sessions itself. One mediator serves every bounded context: each request gets its own
context's unit of work.

Behaviours run in the order given, outermost first::

    Mediator(behaviors=[LoggingBehavior(), TransactionBehavior()])
    # logging( transaction( handler ) )
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from app.building_blocks.application.commands import Command
from app.building_blocks.application.handlers import RequestHandler
from app.building_blocks.application.queries import Query
from app.building_blocks.application.requests import Request

__all__ = [
    "Command",
    "HandlerFactory",
    "Mediator",
    "MissingHandlerError",
    "NextStep",
    "PipelineBehavior",
    "Query",
    "Request",
    "RequestContext",
]

T = TypeVar("T")
TUnitOfWork = TypeVar("TUnitOfWork")


class MissingHandlerError(LookupError):
    """A request type has no registered handler: a wiring mistake, reported at startup."""


@dataclass
class RequestContext(Generic[TUnitOfWork]):
    """What one ``send`` shares between its behaviours and its handler."""

    request: Request[Any]
    unit_of_work_or_none: TUnitOfWork | None = None
    items: dict[str, Any] = field(default_factory=dict)

    @property
    def unit_of_work(self) -> TUnitOfWork:
        if self.unit_of_work_or_none is None:
            raise RuntimeError("this mediator was built without a unit_of_work_factory")
        return self.unit_of_work_or_none

    @property
    def request_name(self) -> str:
        return type(self.request).__name__

    @property
    def is_command(self) -> bool:
        return isinstance(self.request, Command)


NextStep = Callable[[], Awaitable[Any]]
HandlerFactory = Callable[[RequestContext[TUnitOfWork]], RequestHandler[Any, Any]]


class PipelineBehavior(Protocol):
    """Cross-cutting step around every handler (logging, tracing, transactions...)."""

    async def handle(self, context: RequestContext[Any], call_next: NextStep) -> Any: ...


class Mediator(Generic[TUnitOfWork]):
    def __init__(
        self,
        *,
        behaviors: Sequence[PipelineBehavior] = (),
        unit_of_work_factory: Callable[[], TUnitOfWork] | None = None,
    ) -> None:
        self._behaviors = list(behaviors)
        self._unit_of_work_factory = unit_of_work_factory
        self._factories: dict[type[Request[Any]], HandlerFactory[TUnitOfWork]] = {}
        self._units_of_work: dict[type[Request[Any]], Callable[[], TUnitOfWork]] = {}

    def register(
        self,
        request_type: type[Request[Any]],
        handler: RequestHandler[Any, Any] | HandlerFactory[TUnitOfWork],
        *,
        unit_of_work_factory: Callable[[], TUnitOfWork] | None = None,
    ) -> None:
        """Register a handler instance, or a factory called per request with its context.

        ``unit_of_work_factory`` overrides the mediator's for this request type: the unit of work
        of the bounded context the handler belongs to.
        """
        if request_type in self._factories:
            raise ValueError(f"{request_type.__name__} already has a handler")
        if isinstance(handler, type):
            raise TypeError(
                f"register an instance of {handler.__name__} or a factory "
                f"(lambda context: {handler.__name__}(context.unit_of_work)), not the class"
            )
        if hasattr(handler, "handle"):
            instance = cast(RequestHandler[Any, Any], handler)
            self._factories[request_type] = lambda _context: instance
        else:
            self._factories[request_type] = handler
        if unit_of_work_factory is not None:
            self._units_of_work[request_type] = unit_of_work_factory

    def add_behavior(self, behavior: PipelineBehavior, *, outermost: bool = False) -> None:
        """Add a behaviour innermost (default) or outermost (to see the committed outcome)."""
        if outermost:
            self._behaviors.insert(0, behavior)
        else:
            self._behaviors.append(behavior)

    @property
    def behaviors(self) -> tuple[PipelineBehavior, ...]:
        """The pipeline, outermost first."""
        return tuple(self._behaviors)

    @property
    def registered(self) -> frozenset[type[Request[Any]]]:
        return frozenset(self._factories)

    def verify(self, *packages: str) -> None:
        """Fail fast if a request type defined under ``packages`` has no handler.

        Called by the composition root at startup so a forgotten registration is a boot error,
        not a 500 on the first request that needs it. Request classes that others subclass are
        treated as shared bases and need no handler of their own.
        """
        missing = sorted(
            f"{cls.__module__}.{cls.__qualname__}"
            for cls in _request_types(packages)
            if cls not in self._factories
        )
        if missing:
            raise MissingHandlerError("no handler registered for: " + ", ".join(missing))

    async def send(self, request: Request[T]) -> T:
        factory = self._factories.get(type(request))
        if factory is None:
            raise MissingHandlerError(f"no handler registered for {type(request).__name__}")
        unit_of_work_factory = self._units_of_work.get(type(request), self._unit_of_work_factory)
        unit_of_work = unit_of_work_factory() if unit_of_work_factory else None
        context: RequestContext[TUnitOfWork] = RequestContext(request, unit_of_work)
        handler = factory(context)

        async def call_handler() -> Any:
            return await handler.handle(request)

        call: NextStep = call_handler
        for behavior in reversed(self._behaviors):
            call = _bind(behavior, context, call)
        return cast(T, await call())


def _bind(behavior: PipelineBehavior, context: RequestContext[Any], call_next: NextStep) -> NextStep:
    async def step() -> Any:
        return await behavior.handle(context, call_next)

    return step


def _request_types(packages: Iterable[str]) -> list[type[Request[Any]]]:
    prefixes = tuple(packages)
    found: list[type[Request[Any]]] = []
    stack: list[type[Any]] = [Request]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        generic_origin = getattr(cls, "__pydantic_generic_metadata__", {}).get("origin")
        if generic_origin is not None or cls in (Request, Command, Query):
            continue
        if any(
            getattr(sub, "__pydantic_generic_metadata__", {}).get("origin") is None
            for sub in cls.__subclasses__()
        ):
            continue  # a shared base, not a request of its own
        module = cls.__module__
        if module.startswith(prefixes) and module in sys.modules:
            found.append(cls)
    return found
