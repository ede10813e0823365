"""A check's answer counts only when it came by the deadline (no broker, no database).

The checks' own timeouts may equal the deadline (pika's ``stack_timeout``, libpq's
``connect_timeout``), so on a loaded machine their failure can be there, late, when the
deadline is looked at; it must be reported as what it is, no answer within the deadline.
"""

from __future__ import annotations

import threading
import time

from bgworkers.monitoring.health import CheckResult, DeadlineCheck
from tests.platform_helpers import wait_for

DEADLINE_S = 0.05


def check_thread_ended(name: str) -> bool:
    return not any(thread.name == f"check-{name}" for thread in threading.enumerate())


def test_an_answer_after_the_deadline_is_no_answer_within_it() -> None:
    def slow_refusal() -> CheckResult:
        time.sleep(DEADLINE_S * 4)  # a service whose own timeout fires after the deadline
        return CheckResult("late", False, "RabbitMQ does not answer at 127.0.0.1:5672")

    check = DeadlineCheck("late", slow_refusal, timeout_s=DEADLINE_S)
    check.start()
    # The late answer is in before it is looked at: the case a loaded machine produces.
    wait_for(lambda: check_thread_ended("late"), timeout_s=10, what="the slow check to end")
    assert check.wait() == CheckResult("late", False, f"no answer within {DEADLINE_S:g} s")


def test_an_answer_by_the_deadline_is_taken_as_it_is() -> None:
    refusal = CheckResult("quick", False, "RabbitMQ refused the user name or password")
    check = DeadlineCheck("quick", lambda: refusal, timeout_s=10.0)
    check.start()
    assert check.wait() == refusal


def test_a_check_that_still_hangs_says_so() -> None:
    release = threading.Event()

    def hang() -> CheckResult:
        release.wait(30)
        return CheckResult("hung", True, "reachable")

    check = DeadlineCheck("hung", hang, timeout_s=DEADLINE_S)
    try:
        check.start()
        assert check.wait() == CheckResult("hung", False, f"no answer within {DEADLINE_S:g} s")
    finally:
        release.set()
