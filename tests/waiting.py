"""Waiting for a state another thread, process or replica reaches on its own."""

from __future__ import annotations

import time
from collections.abc import Callable

# Deadlines are generous because CI machines are shared and loaded; a deadline only
# costs time when the awaited state never comes, and then the test fails anyway.
DEFAULT_TIMEOUT_S = 30.0


def wait_until(condition: Callable[[], object], message: str | Callable[[], str], *,
               timeout_s: float = DEFAULT_TIMEOUT_S, interval_s: float = 0.02) -> None:
    """Poll ``condition`` until it is truthy; fail with ``message`` after ``timeout_s``
    (a callable message is formed at the failure, to show the state then)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval_s)
