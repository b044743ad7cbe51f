"""One training process per run directory.

`RunLock(logdir)` holds an exclusive `flock` on `<logdir>/run.lock` for as long as a run trains.
The file names its holder (pid, host, start time) so that a second `main.py -r <run> -t` can be
refused with one line saying who trains the run. The operating system drops the lock when the
holder exits in any way (kill -9 included), so a lock file left behind by a dead process is stale:
the next run takes it over and says so. Where `flock` does not exist (Windows) or the filesystem
refuses it, runs are not locked and a warning says so."""
from __future__ import annotations

import errno
import json
import os
import socket
import warnings
from datetime import datetime
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = "run.lock"


class RunLockedError(RuntimeError):
    """Another live process trains this run directory."""


def describe_holder(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {holder.get('started', '?')})"


class RunLock:
    """Exclusive lock on a run directory (created if missing); a context manager."""

    def __init__(self, logdir: str | Path) -> None:
        self.path = Path(logdir) / LOCK_NAME
        self.handle = None
        self.stale_holder: dict | None = None  # the holder named by a stale lock file taken over

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            warnings.warn("run directories cannot be locked on this platform: never train one run twice at once")
            return self
        while True:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = self._read(handle)
                handle.close()
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    raise RunLockedError(
                        f"run directory '{self.path.parent}' is being trained by {describe_holder(holder)}: wait for "
                        "that run to end (or stop it) before training it again") from None
                warnings.warn(f"cannot lock '{self.path}' ({error.strerror}): never train this run twice at once")
                return self
            try:
                if os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            handle.close()  # the previous holder removed the file while we opened it: lock the new one
        self.stale_holder = self._read(handle) or None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": datetime.now().isoformat(timespec="seconds")}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
        self.handle = handle
        return self

    @staticmethod
    def _read(handle) -> dict:
        handle.seek(0)
        try:
            holder = json.loads(handle.read() or "{}")
        except json.JSONDecodeError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def release(self) -> None:
        if self.handle is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked: a waiting process then locks a fresh file
        self.handle.close()
        self.handle = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        self.release()
