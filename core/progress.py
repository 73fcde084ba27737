"""How long work says where it is: one small event type, one callback type, one bar.

Import, rendering, inference, the demo's build and the background jobs all report
:class:`Step`\\ s to a :data:`Progress` callback. The command line draws them with :func:`bar`
(tqdm), a job writes them to its row and log, the UI shows that row: the same words
everywhere. Training keeps its richer records (they are also its ``progress.jsonl``) and
turns them into steps with ``core.training.progress.describe``.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` units (frames, games, per cent) and a line about it.

    ``total`` may be an estimate until the work ends (a video's length before it is decoded)
    and 0 when unknown.
    """

    done: float
    total: float
    text: str = ""
    #: ``progress``: a position; ``milestone``: a position and a line worth keeping (an epoch
    #: ended); ``note``: a line worth keeping whose position means nothing (something skipped).
    kind: str = "progress"

    @property
    def fraction(self) -> float:
        """How much is done, 0 to 1 (0 while the total is unknown)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total > 0 else 0.0


Progress = Callable[[Step], None]


def at(fraction: float, text: str, kind: str = "progress") -> Step:
    """A step of work measured as a share, 0 to 1 (shown in per cent)."""
    return Step(round(100 * fraction, 2), 100, text, kind)


def quiet(_step: Step) -> None:
    """The callback of work nobody watches."""


def part(progress: Progress | None, start: float, end: float, text: str | None = None) -> Progress:
    """A sub-task's progress as the ``[start, end]`` share (fractions) of a bigger task's, in
    per cent; ``text`` replaces the sub-task's own line when given."""
    if progress is None:
        return quiet

    def report(step: Step) -> None:
        progress(at(start + (end - start) * step.fraction, step.text if text is None else text, step.kind))
    return report


def after(progress: Progress | None, base: float, total: float, text: str) -> Progress:
    """A sub-task's progress counted on after ``base`` units of a ``total``: the next game of
    several, the next file. Its own ``text`` is replaced by ``text``."""
    if progress is None:
        return quiet
    return lambda step: progress(Step(base + step.done, total, text, step.kind))


@contextmanager
def bar(desc: str, unit: str = "game", enabled: bool = True) -> Iterator[Progress]:
    """A :data:`Progress` drawn as a tqdm bar on stderr; notes and milestones are printed above it.
    ``enabled=False``: nothing drawn (the other ranks of a distributed run)."""
    from tqdm import tqdm

    shown = tqdm(desc=desc, unit=unit, file=sys.stderr, leave=False, disable=not enabled)

    def progress(step: Step) -> None:
        if step.kind != "note":
            shown.total = step.total or None
            shown.n = step.done
        if step.kind == "progress":
            shown.set_postfix_str(step.text[:60], refresh=False)
        else:
            shown.write(step.text, file=sys.stderr)
        shown.refresh()

    try:
        yield progress
    finally:
        shown.close()
