"""What bgworkers relies on beyond its dependencies' public API: one module per dependency.

- ``dramatiq``: the RabbitMQ consumer and message classes, the queue-declaration methods;
- ``pika``: the asynchronous channel and the parameters behind a blocking connection;
- ``periodiq``: the scheduler's send loop;
- ``structlog``: the records ``ProcessorFormatter`` renders.

Code that needs one of these names takes it from here, never from the dependency directly.
Each use is a :class:`PrivateUse`: the name, why we need it, what to re-check, and, where our
code copies or replaces the dependency's code, a digest of the source it was written against.
Why a check and not only a pin: pyproject pins each dependency exactly, but whoever upgrades
cannot know which underscore names our code reaches for; ``tests/test_dependency_contracts.py``
runs :func:`problem` on every use against the installed versions, so an upgrade that changes
a used name or source fails at once, saying what to re-check, instead of silently losing an
upstream fix. docs/dependencies.md is the reader's version of these lists.
"""

from __future__ import annotations

import hashlib
import inspect
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateUse:
    """``target`` is ``module:attribute.path``; ``used_by`` names our code that relies on it."""

    target: str
    used_by: str
    why: str
    recheck: str
    #: First 16 hex digits of the SHA-256 of the target's source, when our code copies it,
    #: replaces it or depends on what it does inside (not only on its name).
    source_sha256: str | None = None
    #: The target's ``inspect.signature`` as text, when our code calls or overrides it.
    signature: str | None = None
    #: For attributes set on instances (not visible on the class): skip the lookup.
    instance_attribute: bool = False


def problem(use: PrivateUse) -> str | None:
    """None when the installed dependency still offers ``use``; else what to re-check."""
    where = f"{use.target} (used by {use.used_by})"
    # An instance attribute is not on the class: its owner is looked up instead.
    target = use.target.rpartition(".")[0] if use.instance_attribute else use.target
    try:
        obj = pkgutil.resolve_name(target)
    except (ImportError, AttributeError):
        return f"{where} is gone from the installed version. Re-check: {use.recheck}"
    if use.signature is not None:
        found = str(inspect.signature(obj))
        if found != use.signature:
            return (
                f"{where} now has the signature {found} (we rely on {use.signature}). "
                f"Re-check: {use.recheck}"
            )
    if use.source_sha256 is not None:
        found = hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
        if found != use.source_sha256:
            return (
                f"{where} changed upstream (source digest {found}, written against "
                f"{use.source_sha256}). Re-check: {use.recheck}; then update the digest."
            )
    return None
