"""The throwaway home of `certman simulate`: named after its process, gone even when killed.

A run removes its home on return, on an exception, on SIGINT (Python's KeyboardInterrupt)
and on SIGTERM (caught here, then the process dies of it as it would have). A run killed
outright (SIGKILL, a power cut) cannot clean up, so every run first removes the homes of
earlier runs whose process no longer exists: the directory name carries the pid.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

PREFIX = "certman-simulate-"
_OWNED = re.compile(rf"{re.escape(PREFIX)}(\d+)-")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def remove_leftovers(parent: Path | None = None) -> list[Path]:
    """Remove the homes of earlier runs (ours, by uid) whose process is gone; return them."""
    parent = parent or Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        found = _OWNED.match(entry.name)
        if found is None or int(found[1]) == os.getpid():
            continue
        try:
            if not entry.is_dir() or entry.is_symlink() or entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not pid_alive(int(found[1])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class _Stopped(BaseException):
    """Raised in the main thread by SIGTERM so that the home is removed on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def simulation_home(
    parent: Path | None = None, stopping: threading.Event | None = None
) -> Iterator[Path]:
    """A new private directory for one simulation, removed however the run ends.

    With ``stopping``, SIGTERM and SIGINT only set it: the simulation stops at its next safe
    point (never in the middle of a database call, whose cleanup would print a traceback),
    and the process then dies of the signal once the home is gone. Without it, SIGTERM
    stops the run at once.
    """
    remove_leftovers(parent)
    home = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    previous: dict[int, object] = {}
    received: list[int] = []
    if threading.current_thread() is threading.main_thread():

        def stop(signum: int, _frame: FrameType | None) -> None:
            if stopping is None:
                raise _Stopped(signum)
            received.append(signum)
            stopping.set()

        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, stop)
        if stopping is not None:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, stop)
    try:
        yield home
    except _Stopped as stopped:
        _die(home, previous, stopped.signum)
    finally:
        for signum, handler in previous.items():
            with suppress(ValueError, TypeError):
                signal.signal(signum, handler)  # type: ignore[arg-type]
        shutil.rmtree(home, ignore_errors=True)
    if received:
        _die(home, {}, received[0])


def _die(home: Path, previous: dict[int, object], signum: int) -> None:
    """Remove the home, then die of the signal as if it had not been caught, so the caller
    sees the usual status."""
    shutil.rmtree(home, ignore_errors=True)
    for number, handler in previous.items():
        signal.signal(number, handler)  # type: ignore[arg-type]
    previous.clear()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)
