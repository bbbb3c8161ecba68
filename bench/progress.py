"""Progress bars for the long bench commands: tqdm on the command's stderr, drawn only where someone watches.

A bar appears only when the command's stderr is a terminal and --verbosity is at least 1; logs, pipes and
tests get nothing from it. Stdout keeps the commands' stage lines and summaries, free of carriage returns.
"""

from __future__ import annotations

from types import TracebackType

from django.core.management.base import BaseCommand, OutputWrapper
from tqdm import tqdm


def _plain(text: str) -> str:
    return text


class _Terminal:
    """What tqdm writes to: the command's stderr as it is. Django's OutputWrapper would end every write with
    a newline and colour stderr as an error; tqdm writes partial lines that start with a carriage return."""

    def __init__(self, wrapper: OutputWrapper):
        self._wrapper = wrapper

    def write(self, text: str) -> None:
        self._wrapper.write(text, style_func=_plain, ending="")

    def flush(self) -> None:
        self._wrapper.flush()

    def isatty(self) -> bool:
        return self._wrapper.isatty()

    @property
    def encoding(self) -> str | None:  # tqdm draws smooth bars on a UTF-8 terminal, '#' otherwise
        return getattr(self._wrapper, "encoding", None)


def progress_bar(command: BaseCommand, *, total: int, desc: str, unit: str, verbosity: int) -> tqdm:
    """A bar on `command`'s stderr; disabled (every call a no-op) off a terminal or at verbosity 0."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=_Terminal(command.stderr),
        disable=True if verbosity < 1 else None,  # None: tqdm disables itself when the file is not a TTY
        dynamic_ncols=True,
        mininterval=0.2,
        leave=False,  # the command prints the stage's summary line on stdout instead
    )


class StageProgress:
    """A (stage, done, total) progress callback, as the seeding functions take: one bar per stage."""

    def __init__(self, command: BaseCommand, verbosity: int, unit: str = "rows"):
        self.command, self.verbosity, self.unit = command, verbosity, unit
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = progress_bar(
                self.command, total=total, desc=stage, unit=self.unit, verbosity=self.verbosity
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for bar in self.bars.values():
            bar.close()
