"""The workspace: one folder holding a project's database, extracted sources, models and runs.

Every path the product writes is derived here, so the layout is stated once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import BallspotError

#: The workspace a user gets without ``--workspace``: ``./data`` beside ``launch.py``.
DEFAULT_WORKSPACE = Path(__file__).resolve().parent.parent / "data"
DB_NAME = "ballspot.sqlite"


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
