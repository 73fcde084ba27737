"""The workspace: one folder holding a project's database, extracted sources, models and runs.

Every path the product writes is derived here, so the layout is stated once.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import BallspotError, InputError, Problem

#: The workspace a user gets without ``--workspace``: ``./data`` beside ``launch.py``.
DEFAULT_WORKSPACE = Path(__file__).resolve().parent.parent / "data"
DB_NAME = "ballspot.sqlite"
#: The files SQLite keeps beside the database (WAL mode uses the first two).
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace. Creating the object touches nothing; ``ensure()`` makes folders."""

    root: Path

    @classmethod
    def at(cls, path: str | Path | None = None) -> "Workspace":
        return cls(Path(path if path is not None else DEFAULT_WORKSPACE).expanduser().resolve())

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def sources_dir(self) -> Path:
        """Zips the user imported are unpacked here (videos inside them are then used in place)."""
        return self.root / "sources"

    @property
    def soccernet_dir(self) -> Path:
        """Where SoccerNet's downloader puts its zips."""
        return self.root / "soccernet"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def cache_dir(self) -> Path:
        """What can be computed again from the videos and models (decoded frames, the ball's
        tracks): deleting it loses nothing but time."""
        return self.root / "cache"

    def run_dir(self, kind: str, name: str | None = None) -> Path:
        """A run's folder: ``runs/<kind>-<name>``, named by the time when no name is given
        (training, retraining, exported predictions all land here)."""
        return self.runs_dir / f"{kind}-{name or time.strftime('%Y%m%d-%H%M%S')}"

    def job_log(self, job_id: int) -> Path:
        """The live log of a background job."""
        return self.runs_dir / f"job-{job_id}.log"

    @property
    def scores_dir(self) -> Path:
        """Per-frame score curves of each model version's inference, one file per game."""
        return self.root / "scores"

    def scores_path(self, version: str, game_id: int) -> Path:
        return self.scores_dir / version / f"game-{game_id}.npz"

    def ensure(self) -> "Workspace":
        for folder in (self.root, self.sources_dir, self.models_dir, self.runs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def inside(self, path: str | Path) -> Path:
        """``path`` resolved, refusing anything outside the workspace (``..``, links, absolute)."""
        resolved = (self.root / path).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise BallspotError(f"{path}: outside the workspace {self.root}")
        return resolved

    @property
    def database_files(self) -> list[Path]:
        """The database and the files SQLite keeps beside it."""
        return [self.root / f"{DB_NAME}{suffix}" for suffix in DB_SUFFIXES]

    def guard(self, path: str | Path, *, writing: bool = False) -> Path:
        """Refuse a path a user gave before anything opens it; return it unchanged.

        Why: closing *any* file descriptor of the database drops every POSIX lock this
        process holds on it (SQLite's locks are per process, not per descriptor). Another
        process (``launch.py games``) then believes it is the last user, checkpoints and
        deletes ``-wal`` and ``-shm``, and every later edit of this process goes into
        unlinked files and is lost. So a path that *is* the database or its ``-wal``/``-shm``
        (compared by device and inode from ``os.stat``, which never opens: this catches
        symbolic and hard links under any name, ``x.mp4`` or ``Labels-ball.json``) is
        refused, as is any path that resolves inside the workspace, except ``sources/`` and
        ``soccernet/`` (where zips are unpacked and SoccerNet's downloads land) for reading,
        and ``sources/`` and ``runs/`` for writing (exports).

        Raises :class:`InputError` (reading: an import) or :class:`BallspotError` (writing).
        """
        verb = "export" if writing else "import"
        where = "to" if writing else "from"
        reason = self._refusal(Path(path), writing)
        if reason is None:
            return Path(path)
        message = f"{reason}; {verb} {where} elsewhere"
        if writing:
            raise BallspotError(f"{path}: {message}")
        raise InputError(Problem(str(path), "", message))

    def _refusal(self, path: Path, writing: bool) -> str | None:
        try:
            st = os.stat(path)  # follows links, never opens the file
        except (OSError, ValueError):
            st = None
        if st is not None:
            for db in self.database_files:
                try:
                    other = os.stat(db)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
                    return f"is the workspace's database ({db.name}), or a link to it"
        real = Path(os.path.realpath(path))
        root = Path(os.path.realpath(self.root))
        if real != root and root not in real.parents:
            return None
        areas = (self.sources_dir, self.runs_dir) if writing else (self.sources_dir, self.soccernet_dir)
        for area in areas:
            area = Path(os.path.realpath(area))
            if real == area or area in real.parents:
                return None
        names = " and ".join(f"{a.name}/" for a in areas)
        return f"is inside the workspace {root} (only its {names} may be used)"
