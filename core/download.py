"""Download SoccerNet Ball Action Spotting 2024 with SoccerNet's own downloader, then import it.

The downloader leaves one zip per split in ``<workspace>/soccernet/spotting-ball-2024/``;
each is unpacked once and imported with its split, through the same path as
``launch.py import``.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import BallspotError
from core.ingest import ImportReport, import_source
from core.progress import Progress
from core.splits import SPLITS
from core.store import Store
from core.workspace import Workspace

TASK = "spotting-ball-2024"


def fetch(workspace: Workspace, splits: list[str]) -> list[Path]:
    """Run SoccerNet's downloader (network) and return the split zips it left."""
    from SoccerNet.Downloader import SoccerNetDownloader

    target = workspace.soccernet_dir
    target.mkdir(parents=True, exist_ok=True)
    SoccerNetDownloader(LocalDirectory=str(target)).downloadDataTask(task=TASK, split=list(splits))
    return split_zips(workspace, splits)


def split_zips(workspace: Workspace, splits: list[str]) -> list[Path]:
    found = []
    for split in splits:
        path = workspace.soccernet_dir / TASK / f"{split}.zip"
        if not path.is_file():
            raise BallspotError(
                f"{path}: the SoccerNet downloader did not produce the {split} split "
                "(no network, or no access to the dataset on Hugging Face?)"
            )
        found.append(path)
    return found


def download(store: Store, workspace: Workspace, splits: list[str], *, replace: bool = False,
             progress: Progress | None = None) -> list[ImportReport]:
    """Download the splits and import each zip with its split name."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise BallspotError(f"unknown split {', '.join(unknown)} (known: {', '.join(SPLITS)})")
    reports = []
    for split, path in zip(splits, fetch(workspace, splits)):
        reports.append(import_source(store, path, workspace=workspace, split=split, replace=replace,
                                     progress=progress))
    return reports
