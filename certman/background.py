"""A call run on a thread of its own, for work that waits on the disk without the GIL."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    """Runs ``call`` on a thread at once; ``wait`` joins it and raises what it raised."""

    def __init__(self, call: Callable[[], None], *, name: str) -> None:
        self._call = call
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.start()

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        try:
            self._call()
        except BaseException as e:  # handed to the waiting thread
            self._error = e
