"""The database's tables, how an older database is brought up to date, and which columns hold JSON.

Why apart from the store: the schema changes by appending a migration, never by editing one
(a workspace made by an older version must still open), and that rule is easier to keep
where the migrations are all there is.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from core.errors import SchemaError

_SCHEMA_1 = [
    """CREATE TABLE games (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        url_local TEXT NOT NULL UNIQUE,
        url_youtube TEXT NOT NULL DEFAULT '',
        split TEXT,
        label_path TEXT,
        video_path TEXT,
        fps REAL,
        frame_count INTEGER,
        duration_s REAL,
        width INTEGER,
        height INTEGER,
        start_time_s REAL,
        size_bytes INTEGER,
        video_mtime REAL,
        video_codec TEXT,
        variable_fps INTEGER,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    )""",
    """CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        version TEXT NOT NULL UNIQUE,
        parent TEXT REFERENCES models(version),
        path TEXT,
        config TEXT NOT NULL DEFAULT '{}',
        metrics TEXT NOT NULL DEFAULT '{}',
        label_fingerprint TEXT,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE predictions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model_version TEXT NOT NULL REFERENCES models(version) ON DELETE CASCADE,
        game_id INTEGER NOT NULL REFERENCES games(id) ON DELETE CASCADE,
        frame INTEGER NOT NULL CHECK (frame >= 0),
        label TEXT NOT NULL,
        team TEXT NOT NULL,
        confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
        reviewer TEXT,
        reviewed TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        revision INTEGER NOT NULL DEFAULT 1
    )""",
    "CREATE INDEX predictions_game ON predictions (game_id, model_version, frame)",
    """CREATE TABLE labels (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        game_id INTEGER NOT NULL REFERENCES games(id) ON DELETE CASCADE,
        frame INTEGER NOT NULL CHECK (frame >= 0),
        label TEXT NOT NULL,
        team TEXT NOT NULL,
        visibility TEXT NOT NULL DEFAULT 'visible',
        source TEXT NOT NULL CHECK (source IN ('imported', 'human', 'model')),
        author TEXT,
        prediction_id INTEGER REFERENCES predictions(id) ON DELETE SET NULL,
        extra TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        revision INTEGER NOT NULL DEFAULT 1,
        UNIQUE (game_id, frame, label, team)
    )""",
    "CREATE INDEX labels_game ON labels (game_id, frame)",
    """CREATE TABLE actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        game_id INTEGER,
        author TEXT,
        summary TEXT NOT NULL DEFAULT '',
        target INTEGER REFERENCES actions(id),
        status TEXT CHECK (status IN ('done', 'undone'))
    )""",
    "CREATE INDEX actions_game ON actions (game_id, id)",
    """CREATE TABLE changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        action_id INTEGER NOT NULL REFERENCES actions(id),
        tbl TEXT NOT NULL,
        row_id INTEGER NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
        before TEXT,
        after TEXT
    )""",
    "CREATE INDEX changes_row ON changes (tbl, row_id, id)",
    "CREATE INDEX changes_action ON changes (action_id, id)",
    """CREATE TRIGGER changes_no_update BEFORE UPDATE ON changes
       BEGIN SELECT RAISE(ABORT, 'the change history is append-only'); END""",
    """CREATE TRIGGER changes_no_delete BEFORE DELETE ON changes
       BEGIN SELECT RAISE(ABORT, 'the change history is append-only'); END""",
    """CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        params TEXT NOT NULL DEFAULT '{}',
        progress REAL NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT '',
        log_path TEXT,
        pid INTEGER,
        result TEXT,
        error TEXT,
        created TEXT NOT NULL,
        started TEXT,
        finished TEXT
    )""",
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)",
]

#: Schema 2: the video file's inode, so that a video replaced under the same name (another
#: file, a hard link) is refused before it is read (``core.video.open_game_video``). Games
#: imported before it keep NULL there and are checked by size and time only.
_SCHEMA_2 = [
    "ALTER TABLE games ADD COLUMN video_inode INTEGER",
]

#: Schema 3: what a game's label file says beyond its annotations (for example the 2025
#: release's ``halftime``), kept so that export writes it back; and the reviewer's "fully
#: reviewed" mark (who, when; NULL: not marked), after which training treats the game as
#: completely labelled.
_SCHEMA_3 = [
    "ALTER TABLE games ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE games ADD COLUMN fully_reviewed TEXT",
]

#: Schema 4: the label an accept made, found by its prediction. Every accept and reject looks it
#: up, and without an index each one read every label of every game.
_SCHEMA_4 = [
    "CREATE INDEX labels_prediction ON labels (prediction_id)",
]

#: Migration ``i`` brings a database from schema version ``i`` to ``i + 1``.
MIGRATIONS: list[list[str]] = [_SCHEMA_1, _SCHEMA_2, _SCHEMA_3, _SCHEMA_4]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database up to :data:`SCHEMA_VERSION`; call inside a transaction, so that a
    migration that fails half way leaves the database as it was.

    A database newer than this program is refused rather than opened: its tables may mean
    things this code does not know, and writing to them could lose what a newer version keeps.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: schema version {version} is newer than this program's {SCHEMA_VERSION}; "
            "update Ballspot Studio"
        )
    for statements in MIGRATIONS[version:]:
        for sql in statements:
            conn.execute(sql)
    if version != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# --------------------------------------------------------------------------- JSON columns

#: The TEXT columns that hold JSON, by table, with what an empty one (NULL or '') reads as.
#: Rows leave the store with these decoded (:func:`decode_row`) and values arrive as Python
#: objects (:func:`encode_json`), so no caller parses the database's text. The change log is
#: the exception: it keeps rows exactly as stored, since undo compares and restores them.
JSON_COLUMNS: dict[str, dict[str, str | None]] = {
    "games": {"extra": "{}"},
    "labels": {"extra": "{}"},
    "models": {"config": "{}", "metrics": "{}"},
    "jobs": {"params": "{}", "result": None},
}


def decode_row(table: str, row: dict | None) -> dict | None:
    """A row of ``table`` as callers see it: its JSON columns as Python values (a copy; None stays None)."""
    columns = JSON_COLUMNS.get(table)
    if row is None or not columns:
        return row
    out = dict(row)
    for column, empty in columns.items():
        if column in out:
            text = out[column] or empty
            out[column] = None if text is None else json.loads(text)
    return out


def encode_json(value: Any) -> str | None:
    """A value for a JSON column (None stays NULL): the one place values become the database's text."""
    return None if value is None else json.dumps(value)


def encode_row(table: str, fields: dict) -> dict:
    """Column values of ``table`` ready to write: its JSON columns encoded, the rest as they are."""
    columns = JSON_COLUMNS.get(table, {})
    return {k: encode_json(v) if k in columns else v for k, v in fields.items()}
