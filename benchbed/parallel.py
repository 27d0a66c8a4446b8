"""Run independent work in parallel threads, with a progress bar on a terminal."""

import contextvars
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import TypeVar

from benchbed.errors import BenchbedError, DatabaseError, ParallelError

Item = TypeVar("Item")
Result = TypeVar("Result")


def run_parallel(
    label: str,
    items: Sequence[Item],
    work: Callable[[Item], Result],
    describe: Callable[[Item], str] = str,
    max_workers: int = 16,
) -> list[Result]:
    """Apply `work` to every item concurrently; results keep the items' order.

    Every task runs to its end even when another fails, so that callers can clean
    up what did get created; failures are then raised together.
    """
    if not items:
        return []
    results: dict[int, Result] = {}
    failures: list[tuple[str, BaseException]] = []
    progress = _progress(label, len(items))
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        # each task runs in a copy of the caller's context: its steps nest under the caller's
        futures = {pool.submit(contextvars.copy_context().run, work, item): index
                   for index, item in enumerate(items)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception as error:
                failures.append((describe(items[index]), error))
            progress.advance()
    progress.close()
    if failures:
        if len(failures) == 1 and len(items) == 1 and isinstance(failures[0][1], BenchbedError):
            raise failures[0][1]
        # the database is every task's: its loss is the one cause, said once
        lost = next((error for _, error in failures if isinstance(error, DatabaseError)), None)
        if lost is not None:
            raise lost
        raise ParallelError(label, failures)
    return [results[index] for index in range(len(items))]


class _NoProgress:
    def advance(self) -> None:
        pass

    def close(self) -> None:
        pass


class _RichProgress:
    def __init__(self, label: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress("[progress.description]{task.description}", BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), transient=True,
                                  # the running step's line (Deployment.step) is written as
                                  # is: rich would print its escape codes as text
                                  redirect_stderr=False)
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def advance(self) -> None:
        self._progress.advance(self._task)

    def update(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)

    def close(self) -> None:
        self._progress.stop()


def _progress(label: str, total: int) -> _NoProgress | _RichProgress:
    if sys.stderr.isatty():
        return _RichProgress(label, total)
    return _NoProgress()


@contextmanager
def percent_progress(label: str) -> Iterator[Callable[[int], None]]:
    """A bar from 0 to 100 % for one long task (on a terminal); yields `update(percent)`."""
    if not sys.stderr.isatty():
        yield lambda percent: None
        return
    bar = _RichProgress(label, 100)
    try:
        yield lambda percent: bar.update(percent)
    finally:
        bar.close()
