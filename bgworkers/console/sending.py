"""``bgworkers send ACTOR --arg k=v``: enqueue a message by hand, checked like the worker does.

Values are read as JSON when they parse as JSON (``5``, ``true``, ``"text"``, ``[1, 2]``) and
as plain strings otherwise (``k=hello``). The arguments go through the actor's own check
(:func:`bgworkers.tasks.argument_checker`) before anything is enqueued, so an unknown actor,
an unknown or missing argument or a value of the wrong type is refused with one line, and the
queue is untouched. What is enqueued are the values as given (JSON primitives), as any caller
would send them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound

from bgworkers.errors import BgworkersError, InvalidArguments
from bgworkers.tasks import argument_checker


class SendRefused(BgworkersError):
    """``send`` would enqueue something the worker cannot run; nothing was sent."""


def parse_arguments(pairs: Iterable[str]) -> dict[str, Any]:
    """``["k=v", ...]`` as keyword arguments (JSON values where they parse)."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise SendRefused(f"--arg {pair!r}: expected NAME=VALUE")
        if name in kwargs:
            raise SendRefused(f"--arg {name}: given twice")
        try:
            kwargs[name] = json.loads(text)
        except ValueError:
            kwargs[name] = text
    return kwargs


def send(broker: dramatiq.Broker, actor_name: str, kwargs: dict[str, Any]) -> dramatiq.Message[Any]:
    """Check, then enqueue; returns the message sent."""
    try:
        actor: dramatiq.Actor[Any, Any] = broker.get_actor(actor_name)
    except ActorNotFound:
        known = ", ".join(sorted(broker.get_declared_actors()))
        raise SendRefused(f"unknown actor {actor_name!r}; known actors: {known}") from None
    fn = getattr(actor.fn, "__wrapped__", actor.fn)  # @task wraps the function with its check
    try:
        argument_checker(fn)(**kwargs)
    except InvalidArguments as exc:
        raise SendRefused(f"bad arguments for {actor_name}: {exc}") from None
    return actor.send_with_options(kwargs=kwargs)
