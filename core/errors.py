"""Errors a user sees. Each says which file and which entry is at fault, so it can be fixed."""
from __future__ import annotations

from dataclasses import dataclass


class BallspotError(Exception):
    """Base of every error the product reports to a user instead of a traceback."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (file, entry) and what."""

    file: str
    entry: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.entry}" if self.entry else self.file
        return f"{where}: {self.message}"


class InputError(BallspotError):
    """Bad input (a label file, a video, a zip). Nothing was stored when this is raised."""

    #: How many problems the message lists before summarising the rest.
    SHOWN = 20

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[: self.SHOWN])
        more = len(self.problems) - self.SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the input, nothing was imported:\n{shown}{tail}")


class ConflictError(BallspotError):
    """An edit was based on a state that has changed since (another tab, another user)."""

    def __init__(self, message: str, current: dict | None = None):
        super().__init__(message)
        self.current = current


class NotFoundError(BallspotError):
    """A game, label, prediction or model that the caller named does not exist."""


class SchemaError(BallspotError):
    """The database was written by a newer Ballspot Studio than this one."""


class VideoChangedError(BallspotError):
    """A game's video is no longer the file that was imported: changed, replaced by another
    file, a link or a folder. It is not opened; re-importing the game takes the new file."""
