"""Progress reporting for long steps (training, scoring, waiting on the oracle).

The engine reports through a :class:`Reporter`; the CLI passes :class:`RichReporter` (progress bars
on stderr), the Python API defaults to :class:`Reporter`, which reports nothing.
"""

from __future__ import annotations

__all__ = ["Reporter", "RichReporter"]

from typing import Any


class Reporter:
    """Silent reporter; subclasses show lines and progress bars."""

    def line(self, text: str) -> None:
        """One line of news (a round started, results arrived)."""

    def progress(self, key: str, label: str, done: float, total: float | None) -> None:
        """Progress of the step ``key`` (``done`` of ``total`` units; ``total=None``: unknown)."""

    def finish(self, key: str) -> None:
        """The step ``key`` is over."""


class RichReporter(Reporter):
    """Progress bars and lines on stderr with rich."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}

    def line(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def progress(self, key: str, label: str, done: float, total: float | None) -> None:
        if key not in self._tasks:
            if not self._tasks:
                self._progress.start()
            self._tasks[key] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[key], completed=done, total=total, description=label)

    def finish(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            self._progress.remove_task(task)
        if not self._tasks:
            self._progress.stop()
