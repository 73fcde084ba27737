"""Write a workspace's labels or a model version's predictions in SoccerNet's layout.

``OUT/<UrlLocal>/Labels-ball.json`` (or ``results_spotting.json``), or the same tree inside
one ``.zip`` when ``OUT`` ends in ``.zip``. Files are written to a temporary name and renamed,
so an interrupted export never leaves a truncated file where a good one was. ``OUT`` and every
file written pass ``Workspace.guard`` first: an export never opens (nor replaces) the
workspace's database or anything of the workspace but its ``sources/`` and ``runs/``.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path

from core.formats import check_url_local, dumps, labels_document, predictions_document
from core.errors import BallspotError
from core.labels import LABEL_FILE, PREDICTION_FILE
from core.store import Store
from core.workspace import Workspace


#: Exports made for a browser download live in the system's temporary folder under this prefix.
DOWNLOAD_PREFIX = "ballspot-export-"
#: An app stopped by a signal leaves its last download folder behind; those older than this go.
DOWNLOAD_MAX_AGE_S = 3600.0


def download_folder(root: str | Path | None = None, max_age_s: float = DOWNLOAD_MAX_AGE_S) -> Path:
    """A new folder for one download, in ``root`` (the system's temporary folder). This user's
    download folders older than ``max_age_s`` are removed first (by then the server has copied
    what it served into its own cache), so stopped apps do not fill the disk; links and other
    users' folders are left alone."""
    root = Path(root or tempfile.gettempdir())
    cutoff = time.time() - max_age_s
    for old in root.glob(DOWNLOAD_PREFIX + "*"):
        try:
            info = old.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # gone meanwhile
            continue
    return Path(tempfile.mkdtemp(prefix=DOWNLOAD_PREFIX, dir=root))


def documents(store: Store, *, games: list[str] | None = None, predictions: str | None = None) -> dict[str, str]:
    """``relative path -> JSON text`` for each game (all games, or those named)."""
    if predictions is not None:
        store.model(predictions)
    if games is not None and not games:
        raise BallspotError("no game to export")
    chosen = [store.game(g) for g in games] if games is not None else store.games()
    out: dict[str, str] = {}
    for g in chosen:
        try:
            check_url_local(g["url_local"])  # it becomes folders: never ../ or absolute
        except ValueError as exc:
            raise BallspotError(f"game {g['id']}: UrlLocal {exc}") from None
        if predictions is None:
            doc = labels_document(g["url_local"], g["url_youtube"], store.labels(g["id"]), g["extra"])
            name = LABEL_FILE
        else:
            doc = predictions_document(g["url_local"], store.predictions(g["id"], predictions))
            name = PREDICTION_FILE
        out[f"{g['url_local']}/{name}"] = dumps(doc)
    return out


def _atomic_write(path: Path, write) -> None:
    """``write(file)`` into a new temporary file beside ``path`` (created exclusively, so never
    an existing file or link), then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export(store: Store, out: str | Path, *, games: list[str] | None = None,
           predictions: str | None = None) -> list[str]:
    """Export to a folder or a ``.zip``; returns the relative paths written.

    The store's workspace is its database's folder (as ``Store.open`` lays it out)."""
    docs = documents(store, games=games, predictions=predictions)
    workspace = Workspace(store.path.resolve().parent)
    out = workspace.guard(Path(out).expanduser(), writing=True)
    if out.suffix.lower() == ".zip":
        def write_zip(f) -> None:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for rel, text in docs.items():
                    zf.writestr(rel, text)
        _atomic_write(out, write_zip)
    else:
        for rel, text in docs.items():
            data = text.encode("utf-8")
            _atomic_write(workspace.guard(out / rel, writing=True), lambda f: f.write(data))
    return list(docs)


def unreviewed_note(store: Store, games: list[str] | None = None) -> str:
    """What an export of labels leaves out: the active version's pending predictions of those
    games (not labels until someone accepts them). Empty when there are none."""
    from core.versions import active_version, review_progress

    version = active_version(store)
    chosen = {store.game(g)["id"] for g in games} if games else None
    pending = sum(total - done for gid, (done, total) in review_progress(store, version).items()
                  if chosen is None or gid in chosen)
    if not pending:
        return ""
    return (f"{pending} prediction(s) of {version} not reviewed yet are not in these labels "
            "(accept or reject them, or export the predictions)")
