"""A daemon's state directory: its lock, and small JSON files replaced whole.

A crash while writing must never leave half a file behind: the value goes to a
temporary file beside the target, which then replaces it in one rename. Only one
daemon uses a state directory at a time (``lock_state_dir``).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, value: Any, fsync: bool = True) -> None:
    """Replace ``path`` with ``value`` as JSON, atomically; ``fsync`` also makes
    it survive a power loss (blocking: off the loop, or pass ``fsync=False``).
    Creates the directory; raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(value, fh, indent=1)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


#: the lock file inside a state directory; it holds the pid of the daemon using it
LOCK_NAME = "lock"


class StateDirError(RuntimeError):
    """The state directory cannot be used (in use by another daemon, or not writable);
    the message is the one line ``main()`` prints before it exits 2."""


class StateDirLock:
    """An exclusive ``flock`` on ``state_dir/lock``, held while this object lives
    (the kernel drops it when the process dies, even by -9): two daemons never
    share a spool, masks or markers."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / LOCK_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateDirError(f"cannot use state dir {state_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(self._fd)
            os.close(self._fd)
            raise StateDirError(f"state dir {state_dir} is in use by pid {holder}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Let another daemon have the directory (closing the file drops the lock)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def lock_state_dir(state_dir: Path) -> StateDirLock:
    """Take ``state_dir`` for this process (creating it); raises ``StateDirError``."""
    return StateDirLock(state_dir)
