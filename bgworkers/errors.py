"""The error hierarchy of bgworkers.

::

    BgworkersError
     +-- ConfigurationError        bad settings: fail at start, never inside an actor
     +-- PermanentError            retrying cannot help: the message is dead-lettered at once
     |    +-- InvalidArguments     the message's arguments do not fit the actor's signature
     |    +-- InvalidEnvelope      a delivery that is no valid message (bgworkers.brokers.envelope)
     |    +-- MessageTooLarge      a message to send is over BGW_MESSAGE_MAX_BYTES
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


class MessageTooLarge(PermanentError):
    """A message to send is larger than ``BGW_MESSAGE_MAX_BYTES``; nothing was sent.

    Permanent: the same arguments make the same message. Messages carry ids, not data.
    """

    def __init__(self, *, actor_name: str, size_bytes: int, max_bytes: int) -> None:
        super().__init__(
            f"message for {actor_name} is {size_bytes} bytes, more than BGW_MESSAGE_MAX_BYTES "
            f"({max_bytes}); send ids and let the actor read the data"
        )
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes


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
