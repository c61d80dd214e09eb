"""Running a few blocking functions at once, each in a thread of its own.

Asking several servers something (their load, their agents, to stop) takes
as long as the slowest one, not their sum.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def run_together(functions: Sequence[Callable[[], Any]],
                 ignore: tuple[type[BaseException], ...] = ()) -> list[BaseException | None]:
    """Call ``functions`` in threads at once; return what each raised (None if it returned).

    An exception of a type in ``ignore`` counts as returning.
    """
    errors: list[BaseException | None] = [None] * len(functions)

    def run(i: int) -> None:
        try:
            functions[i]()
        except ignore:
            pass
        except BaseException as exc:  # handed back to the caller, who raises it
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(functions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def gather(functions: Sequence[Callable[[], T]]) -> list[T]:
    """Call ``functions`` in threads at once; return their values in order, or raise
    the first one's exception (after all of them ended)."""
    values: list[Any] = [None] * len(functions)

    def keep(i: int) -> None:
        values[i] = functions[i]()

    errors = run_together([functools.partial(keep, i) for i in range(len(functions))])
    failure = next((error for error in errors if error is not None), None)
    if failure is not None:
        raise failure
    return values
