"""``@task``'s argument check: the fast binder agrees with ``inspect.Signature.bind``."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from bgworkers.errors import InvalidArguments
from bgworkers.tasks import _fast_binder, argument_checker


def deliver(email_id: int, attempt: int = 0, note: str | None = None) -> None:
    pass


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, "x"), {}),
    ((1, 2, "x", 4), {}),
    ((), {"email_id": 1}),
    ((1,), {"attempt": 2}),
    ((1,), {"email_id": 2}),
    ((), {"attempt": 2}),
    ((1,), {"unknown": 2}),
    ((), {"email_id": 1, "note": None, "attempt": 3}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_the_fast_binder_binds_as_inspect_does_or_steps_aside(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    signature = inspect.signature(deliver)
    fast = _fast_binder(signature)(args, kwargs)
    try:
        expected = dict(signature.bind(*args, **kwargs).arguments)
    except TypeError:
        assert fast is None  # inspect then says why
        return
    assert fast == expected


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        ((), {}, "missing a required argument: 'email_id'"),
        ((1, 2, "x", 4), {}, "too many positional arguments"),
        ((1,), {"email_id": 2}, "multiple values for argument 'email_id'"),
        ((1,), {"unknown": 2}, "unexpected keyword argument 'unknown'"),
        (("seven",), {}, "email_id: Input should be a valid integer"),
        ((2**40,), {}, "email_id: Input should be less than or equal to 2147483647"),
        ((1,), {"note": "n" * 1001}, "note: String should have at most 1000 characters"),
    ],
)
def test_bad_arguments_are_still_refused_with_their_reason(
    args: tuple[Any, ...], kwargs: dict[str, Any], says: str
) -> None:
    check = argument_checker(deliver)
    with pytest.raises(InvalidArguments) as refused:
        check(*args, **kwargs)
    assert says in str(refused.value)


def test_good_arguments_come_back_complete_with_defaults() -> None:
    check = argument_checker(deliver)
    assert check(1) == {"email_id": 1, "attempt": 0, "note": None}
    assert check("2", note="n") == {"email_id": 2, "attempt": 0, "note": "n"}


def test_keyword_only_parameters_take_inspects_path() -> None:
    def keyword_only(*, user_id: int) -> None:
        pass

    assert _fast_binder(inspect.signature(keyword_only))((), {"user_id": 1}) is None
    assert argument_checker(keyword_only)(user_id=1) == {"user_id": 1}
