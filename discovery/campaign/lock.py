"""One campaign process per work directory: an exclusive, non-blocking ``flock`` on ``.lock``.

The lock is held by the operating system for the life of the open file, so a process killed with
SIGKILL releases it at once and a stale lock file never blocks a resume.
"""

from __future__ import annotations

__all__ = ["CampaignLockedError", "WorkdirLock"]

import os
from pathlib import Path
from types import TracebackType

from discovery.errors import DiscoveryError


class CampaignLockedError(DiscoveryError):
    """Another process is running a campaign in this work directory."""


class WorkdirLock:
    """Context manager holding the lock of a work directory."""

    def __init__(self, workdir: str | Path) -> None:
        self.path = Path(workdir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CampaignLockedError(
                f"{self.path.parent}: a campaign is already running in this work directory "
                f"(process {holder}); wait for it to stop or use another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
