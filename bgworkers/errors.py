"""The error hierarchy of bgworkers.

::

    BgworkersError
     +-- ConfigurationError        bad settings: fail at start, never inside an actor
     +-- PermanentError            retrying cannot help: the message is dead-lettered at once
     |    +-- InvalidArguments     the message's arguments do not fit the actor's signature
     |    +-- PermanentHTTPError   an HTTP 4xx other than 429 (401 after a refresh, 404, ...)
     +-- TransientError            may succeed later: retried with backoff
          +-- TransientHTTPError   transport errors, 429 and 5xx; carries ``Retry-After``

The retry policy middleware reads only this tree: code raises the error that says what went
wrong and the policy decides what happens to the message.
"""

from __future__ import annotations


class BgworkersError(Exception):
    """Root of every error bgworkers raises on purpose."""


class ConfigurationError(BgworkersError):
    """A setting is missing or malformed; raised at start so nothing runs half-configured."""


class PermanentError(BgworkersError):
    """Retrying cannot help (bad input, a rejected request): dead-letter at once."""


class InvalidArguments(PermanentError):
    """The message's arguments do not match the actor's parameters."""


class TransientError(BgworkersError):
    """A failure that may pass (network, overload).

    ``retry_after_s`` is the server's requested wait in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentHTTPError(PermanentError):
    """An HTTP answer that will not change on retry (4xx other than 429)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class TransientHTTPError(TransientError):
    """A transport error, a 429 or a 5xx; ``status_code`` is None for transport errors."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status_code = status_code
