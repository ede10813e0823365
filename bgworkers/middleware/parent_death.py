"""Worker processes stop when dramatiq's main process dies
(see :mod:`bgworkers.processes.runner`).

Why a middleware: dramatiq forks its worker processes itself; ``process_boot`` is the first
hook that runs inside each of them. SIGTERM is dramatiq's own "stop gracefully" signal, so an
orphaned worker finishes or returns its messages instead of consuming unsupervised.
"""

from __future__ import annotations

import signal

import dramatiq
from dramatiq.middleware import Middleware

from bgworkers.processes.runner import set_parent_death_signal


class StopWithParent(Middleware):
    """Asks the kernel to send SIGTERM to this worker process when its parent dies."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        set_parent_death_signal(signal.SIGTERM)
