"""Retry with exponential backoff inside an overall deadline."""

import time
from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")


def retry(
    attempt: Callable[[], Result],
    *,
    timeout: float,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    initial_delay: float = 0.1,
    max_delay: float = 2.0,
) -> Result:
    """Call `attempt` until it returns; re-raise its last error once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    delay = initial_delay
    while True:
        try:
            return attempt()
        except retry_on:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, max_delay)


def wait_for(
    condition: Callable[[], Result | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    max_interval: float = 1.0,
) -> Result:
    """Poll `condition` until it returns something truthy; TimeoutError names `what`."""
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, max_interval)
