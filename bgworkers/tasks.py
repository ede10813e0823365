"""``@task``: the one way to declare an actor, with the house retry and time-limit policy.

Why a project decorator: dramatiq's defaults (20 retries over up to a week, a 10-minute time
limit, every exception retried) are wrong for most of our jobs. What ``@task`` sets and checks
is in docs/architecture.md ("Declaring an actor"); a malformed message fails with
:class:`InvalidArguments` (never retried) instead of a ``TypeError`` deep inside the actor,
and ``2**70`` is refused, not retried as a database error.
"""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import dramatiq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from bgworkers import queues
from bgworkers.errors import InvalidArguments, PermanentError
from bgworkers.settings import get_settings

P = ParamSpec("P")
R = TypeVar("R")


#: Every ``int`` argument is an id of a row (or a count) that lives in an ``INTEGER`` column,
#: 32-bit in PostgreSQL: a larger value is refused as invalid, never sent to the database to
#: fail there as a (retried) database error. An actor that needs more annotates its own bound.
DB_INT_MIN = -(2**31)
DB_INT_MAX = 2**31 - 1
#: Characters of a ``str`` argument without a bound of its own: messages carry ids and short
#: keys, never text bodies (those live in the database).
MAX_STR_CHARS = 1_000

BoundedInt = Annotated[int, Field(ge=DB_INT_MIN, le=DB_INT_MAX)]
BoundedStr = Annotated[str, Field(max_length=MAX_STR_CHARS)]


def _bounded(hint: Any) -> Any:
    """``hint`` with every bare ``int`` and ``str`` in it (``list[int]``, ``int | None``)
    replaced by its bounded form; ``Annotated`` hints keep the bounds they state."""
    if hint is int:
        return BoundedInt
    if hint is str:
        return BoundedStr
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None or origin is Annotated or not args:
        return hint
    bounded = tuple(_bounded(arg) for arg in args)
    if origin in (types.UnionType, typing.Union):
        return functools.reduce(operator.or_, bounded)
    return origin[bounded]


def _arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"@task {fn.__name__}: *args/**kwargs cannot be checked; name them")
        default = ... if param.default is param.empty else param.default
        fields[name] = (_bounded(hints.get(name, Any)), default)
    return create_model(f"{fn.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields)


def argument_checker(fn: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """The check ``@task`` runs before ``fn``: returns the validated keyword arguments.

    Raises :class:`InvalidArguments`, naming each bad argument. ``bgworkers send`` and the
    outbox's ``enqueue`` run the same check before they enqueue anything, so a bad call fails
    in the caller.
    """
    signature = inspect.signature(fn)
    model = _arguments_model(fn)  # built once per actor; pydantic compiles its validator then
    bind = _fast_binder(signature)

    def check(*args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = bind(args, kwargs)
        if arguments is None:  # not a plain call: let inspect bind it, or say why not
            try:
                arguments = signature.bind(*args, **kwargs).arguments
            except TypeError as exc:
                raise InvalidArguments(f"{fn.__name__}: {exc}") from None
        try:
            values = model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidArguments(f"{fn.__name__}: {problems}") from None
        return {name: getattr(values, name) for name in model.model_fields}

    return check


def _fast_binder(
    signature: inspect.Signature,
) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any] | None]:
    """``Signature.bind`` for the calls messages make, at a fraction of its cost.

    Returns the same ``arguments`` mapping for a call that binds cleanly (positional values
    first, then keywords, every required parameter given, nothing unknown or twice), and None
    for anything else, which then goes through ``Signature.bind`` for its exact error. Only
    for signatures of plain parameters (``@task`` refuses ``*args``/``**kwargs``).
    """
    params = list(signature.parameters.values())
    if any(p.kind is not p.POSITIONAL_OR_KEYWORD for p in params):
        return lambda args, kwargs: None
    names = tuple(p.name for p in params)
    known = frozenset(names)
    required = frozenset(p.name for p in params if p.default is p.empty)

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        if len(args) > len(names):
            return None
        arguments = dict(zip(names, args, strict=False))
        if kwargs:
            if not known.issuperset(kwargs) or not arguments.keys().isdisjoint(kwargs):
                return None
            arguments.update(kwargs)
        if not required.issubset(arguments):
            return None
        return arguments

    return bind


def check_actor_arguments(
    actor: dramatiq.Actor[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Raise :class:`InvalidArguments` if the ``@task`` actor would refuse these arguments.

    Actors not declared with ``@task`` have no check; any arguments pass.
    """
    check = getattr(actor.fn, "check_arguments", None)
    if check is not None:
        check(*args, **kwargs)


def is_final_attempt(actor: dramatiq.Actor[Any, Any]) -> bool:
    """Whether the message being processed is dead-lettered if it raises now (its retries
    are used up, as the retry policy counts them); False outside a worker."""
    from dramatiq.middleware import CurrentMessage

    message = CurrentMessage.get_current_message()
    if message is None:
        return False
    max_retries = message.options.get("max_retries", actor.options.get("max_retries"))
    return max_retries is not None and message.options.get("retries", 0) >= max_retries


def is_retry() -> bool:
    """Whether the message being processed failed before (this is one of its retries); False
    outside a worker."""
    from dramatiq.middleware import CurrentMessage

    message = CurrentMessage.get_current_message()
    return message is not None and message.options.get("retries", 0) > 0


def task(
    *,
    queue: str,
    max_retries: int | None = None,
    min_backoff_ms: int | None = None,
    max_backoff_ms: int | None = None,
    time_limit_ms: int | None = None,
    permanent_errors: tuple[type[BaseException], ...] = (),
    periodic: bool = False,
    broker: dramatiq.Broker | None = None,
    **options: Any,
) -> Callable[[Callable[P, R]], dramatiq.Actor[P, R]]:
    """Declare an actor with explicit policy.

    Units: backoffs and time limit in milliseconds. ``permanent_errors`` adds exceptions that
    are never retried (every :class:`~bgworkers.errors.PermanentError` already is).
    ``periodic=True`` schedules the actor with its line in :mod:`bgworkers.scheduling.schedule`.
    """
    if queue not in queues.ALL:
        raise ValueError(f"unknown queue {queue!r}; use one of {queues.ALL}")
    settings = get_settings()

    def decorate(fn: Callable[P, R]) -> dramatiq.Actor[P, R]:
        actor_options: dict[str, Any] = {
            "max_retries": settings.retry_max_retries if max_retries is None else max_retries,
            "min_backoff": min_backoff_ms or settings.retry_min_backoff_ms,
            "max_backoff": max_backoff_ms or settings.retry_max_backoff_ms,
            "time_limit": time_limit_ms or settings.time_limit_ms,
            # Listed here (not only known to the retry policy) so that dramatiq's worker logs
            # them as expected failures, without a traceback that repeats the arguments.
            "throws": (PermanentError, *permanent_errors),
            **options,
        }
        from bgworkers.brokers.wiring import app_broker, periodic_option

        if periodic:
            actor_options["periodic"] = periodic_option(fn.__name__)
        check = argument_checker(fn)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return fn(**check(*args, **kwargs))  # type: ignore[call-arg]

        run.check_arguments = check  # type: ignore[attr-defined]  # see check_actor_arguments
        declare = dramatiq.actor(
            actor_name=fn.__name__,
            queue_name=queue,
            broker=broker if broker is not None else app_broker(),
            **actor_options,
        )
        actor: dramatiq.Actor[P, R] = declare(run)
        return actor

    return decorate
