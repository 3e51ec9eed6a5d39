"""Progress bars for long work, on a terminal only (rich).

On a terminal (the stream is a TTY) a bar per task is drawn on stderr; piped
or redirected, nothing at all is written, so scripts and logs stay clean.
"""
from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress, TaskID


class _QuietTask:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        pass


class _RichTask(_QuietTask):
    def __init__(self, progress: RichProgress, task_id: TaskID) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._id, amount)

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        # rich leaves what is None as it was.
        self._progress.update(self._id, completed=completed, total=total, description=description)


class Progress:
    """``with Progress() as p: t = p.task("copying", total=n); t.advance()``."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream) if enabled is None else enabled
        self._rich: RichProgress | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress
            # What the program prints meanwhile goes above the bars, but only
            # when it goes to the same terminal: piped output (make bench | tee)
            # must stay where it was going.
            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(file=self.stream), transient=False,
                                      redirect_stdout=_isatty(sys.stdout),
                                      redirect_stderr=self.stream is sys.stderr)
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def print(self, line: str) -> None:
        """A line of the program's own output to the stream, above the bars while they are drawn."""
        if self._rich is not None:
            self._rich.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self.stream)

    def task(self, description: str, total: float | None = None) -> _QuietTask:
        if self._rich is None:
            return _QuietTask()
        return _RichTask(self._rich, self._rich.add_task(description, total=total))


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
