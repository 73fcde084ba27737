"""Write a workspace's labels or a model version's predictions in SoccerNet's layout.

``OUT/<UrlLocal>/Labels-ball.json`` (or ``results_spotting.json``), or the same tree inside
one ``.zip`` when ``OUT`` ends in ``.zip``. Files are written to a temporary name and renamed,
so an interrupted export never leaves a truncated file where a good one was.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from core.formats import check_url_local, dumps, labels_document, predictions_document
from core.errors import BallspotError
from core.labels import LABEL_FILE, PREDICTION_FILE
from core.store import Store


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
            doc = labels_document(g["url_local"], g["url_youtube"], store.labels(g["id"]))
            name = LABEL_FILE
        else:
            doc = predictions_document(g["url_local"], store.predictions(g["id"], predictions))
            name = PREDICTION_FILE
        out[f"{g['url_local']}/{name}"] = dumps(doc)
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export(store: Store, out: str | Path, *, games: list[str] | None = None,
           predictions: str | None = None) -> list[str]:
    """Export to a folder or a ``.zip``; returns the relative paths written."""
    docs = documents(store, games=games, predictions=predictions)
    out = Path(out).expanduser()
    if out.suffix.lower() == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.partial")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rel, text in docs.items():
                zf.writestr(rel, text)
        os.replace(tmp, out)
    else:
        for rel, text in docs.items():
            _atomic_write(out / rel, text.encode("utf-8"))
    return list(docs)
