"""A count kept per thread, and only inside a `counting()` block: what one caller's own calls added up
to while other threads (a page upload, other HTTP requests) use the same object."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class ThreadTally:
    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def active(self) -> bool:
        return getattr(self._local, "count", None) is not None

    def add(self, amount: int) -> None:
        if self.active:
            self._local.count += amount

    @contextlib.contextmanager
    def counting(self) -> Iterator[Callable[[], int]]:
        """Count this thread's additions inside the block; the yielded function gives the total."""
        self._local.count = 0
        total = 0
        try:
            yield lambda: total
        finally:
            total = self._local.count
            self._local.count = None
