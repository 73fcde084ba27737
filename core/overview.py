"""The workspace at a glance: one row per game, for ``launch.py games`` and the game picker."""
from __future__ import annotations

import os
from datetime import datetime

import pandas as pd

from core.labels import CLASSES
from core.store import Store
from core.versions import review_progress

#: Short column names for the 12 classes, so the table fits a terminal.
CLASS_ABBREV: dict[str, str] = {
    "PASS": "PASS", "DRIVE": "DRIVE", "HEADER": "HEAD", "HIGH PASS": "HIGH", "OUT": "OUT", "CROSS": "CROSS",
    "THROW IN": "THROW", "SHOT": "SHOT", "BALL PLAYER BLOCK": "BLOCK", "PLAYER SUCCESSFUL TACKLE": "TACKLE",
    "FREE KICK": "FK", "GOAL": "GOAL",
}


def video_status(game: dict) -> str:
    """``720p 95.2 min``, ``none``, ``missing`` (file gone) or ``changed`` (size or time differ)."""
    path = game["video_path"]
    if not path:
        return "none"
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    if st.st_size != game["size_bytes"] or abs(st.st_mtime - (game["video_mtime"] or 0)) > 1e-3:
        return "changed"
    return f"{game['height']}p {game['duration_s'] / 60:.1f} min"


def reviewed_note(mark: str | None) -> str:
    """A game's fully-reviewed mark as a person reads it: ``ana, 2024-10-01 14:02`` (local
    time), ``""`` when not marked. The mark is ``"<UTC timestamp> <author>"``
    (:meth:`core.store.Store.set_fully_reviewed`)."""
    if not mark:
        return ""
    stamp, _, who = mark.partition(" ")
    try:
        when = datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:  # not a timestamp (written by hand): show it as it is
        return mark
    return f"{who}, {when}" if who else when


def games_table(store: Store) -> pd.DataFrame:
    """Games with split, video status, the active version's predictions and review progress,
    who marked the game fully reviewed, when, and labels (in all, then per class)."""
    games = store.games()
    counts = pd.DataFrame(store.label_counts(), columns=["game_id", "label", "n"])
    per_class = counts.pivot_table(index="game_id", columns="label", values="n", aggfunc="sum", fill_value=0)
    progress = review_progress(store)  # the active version's, as the picker shows
    rows = []
    for g in games:
        row = {"game": g["url_local"], "split": g["split"] or "", "video": video_status(g)}
        total = 0
        for name in CLASSES:
            n = int(per_class.at[g["id"], name]) if g["id"] in per_class.index and name in per_class.columns else 0
            row[CLASS_ABBREV[name]] = n
            total += n
        row["labels"] = total
        done, n_pred = progress.get(g["id"], (0, 0))
        row["predictions"] = n_pred
        row["reviewed"] = f"{done}/{n_pred}" if n_pred else "-"
        row["fully reviewed"] = reviewed_note(g["fully_reviewed"])
        rows.append(row)
    # Review progress before the per-class counts: on a laptop the table scrolls sideways, and
    # what a reviewer picks a game by must be on screen without it.
    columns = ["game", "split", "video", "predictions", "reviewed", "fully reviewed", "labels",
               *CLASS_ABBREV.values()]
    return pd.DataFrame(rows, columns=columns)
