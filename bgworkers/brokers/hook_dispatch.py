"""Middleware hooks called only on the middleware that implement them.

Why: dramatiq's ``Broker.emit_before``/``emit_after`` call the hook on *every* middleware,
most of them :class:`~dramatiq.middleware.Middleware`'s empty defaults: with bgworkers' 17
middleware, about a hundred calls per message did nothing. :class:`SelectiveHooks` keeps
dramatiq's order and error handling exactly (a :class:`~dramatiq.middleware.MiddlewareError`
from a ``before_*`` hook propagates, any other exception is logged as dramatiq logs it) and
skips the middleware whose class leaves the hook at the default. The list per signal is
rebuilt whenever the broker's middleware list changes (``add_middleware`` or a direct edit).

Kept rather than left to dramatiq because it saves 5.5-11% of a CPU-bound worker's drain rate
(``hook_share_p1t8`` of ``bench/stack_overhead.py``; docs/architecture.md, "What the stack
costs"), above the 5% for which it would be left to dramatiq. It replaces dramatiq's public
``emit_before``/``emit_after``: :mod:`bgworkers.compat.dramatiq` pins their source.
"""

from __future__ import annotations

from typing import Any

from dramatiq.middleware import Middleware, MiddlewareError

_MISSING = object()


def implements(middleware: Middleware, hook: str) -> bool:
    """Whether calling ``hook`` on ``middleware`` could do anything.

    A hook that :class:`Middleware` does not define at all counts as implemented, so that
    calling it fails as it does in dramatiq.
    """
    if hook in vars(middleware):
        return True
    default = getattr(Middleware, hook, _MISSING)
    return default is _MISSING or getattr(type(middleware), hook, _MISSING) is not default


class SelectiveHooks:
    """Mixin for a dramatiq broker class: its hooks skip middleware without that hook."""

    middleware: list[Middleware]
    logger: Any

    def _implementing(self, hook: str) -> tuple[Middleware, ...]:
        cache: dict[str, tuple[tuple[Middleware, ...], tuple[Middleware, ...]]]
        cache = self.__dict__.setdefault("_bgw_hook_cache", {})
        current = tuple(self.middleware)
        cached = cache.get(hook)
        if cached is not None and cached[0] == current:
            return cached[1]
        selected = tuple(m for m in current if implements(m, hook))
        cache[hook] = (current, selected)
        return selected

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hook = "before_" + signal
        for middleware in self._implementing(hook):
            try:
                getattr(middleware, hook)(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:  # as dramatiq's own dispatch: one failing hook must not skip the rest
                self.logger.critical(
                    "Unexpected failure in %s of %r.", hook, middleware, exc_info=True
                )

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hook = "after_" + signal
        for middleware in reversed(self._implementing(hook)):
            try:
                getattr(middleware, hook)(self, *args, **kwargs)
            except Exception:  # as dramatiq's own dispatch: one failing hook must not skip the rest
                self.logger.critical(
                    "Unexpected failure in %s of %r.", hook, middleware, exc_info=True
                )
