"""The label store: one SQLite database per workspace, on sqlite-utils.

Why it is built this way:

* Every operation is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock before it
  reads, so two writers (two browser tabs, the CLI beside the app) serialise instead of
  overwriting each other, and a failure rolls back everything the operation did.
* WAL mode with ``synchronous=FULL``: readers (a training job) never block writers, and a
  write that has returned survives a crash of the process.
* Rows carry a ``revision``. An edit names the revision it was based on; a stale edit raises
  :class:`ConflictError` and overwrites nothing.
* Every insert, update and delete of a label or prediction is appended to ``changes`` (before
  and after as JSON) under one ``actions`` row per user operation. That log is the audit trail
  and the undo/redo stack, so undo survives a restart. Triggers make it append-only.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import sqlite_utils

from core.errors import BallspotError, ConflictError, NotFoundError, SchemaError
from core.formats import MAX_POSITION_MS, Annotation
from core.labels import (
    CLASSES,
    DEFAULT_TEAM,
    DEFAULT_VISIBILITY,
    REVIEW_STATUSES,
    SOURCES,
    TEAMS,
    VISIBILITIES,
    clock,
    frame_to_ms,
)
from core.video import VideoInfo
from core.workspace import Workspace

# --------------------------------------------------------------------------- schema

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

#: Migration ``i`` brings a database from schema version ``i`` to ``i + 1``.
MIGRATIONS: list[list[str]] = [_SCHEMA_1, _SCHEMA_2]
SCHEMA_VERSION = len(MIGRATIONS)

#: Operations a reviewer can undo. Imports are audit-only and act as a barrier for undo.
UNDOABLE = ("add", "update", "delete", "accept", "reject")
#: Tables whose rows are versioned and logged.
_LOGGED = ("labels", "predictions")
_LABEL_FIELDS = ("frame", "label", "team", "visibility")


def _same_state(a: dict | None, b: dict | None) -> bool:
    """Two states of a row are the same if equal in everything but revision and update time."""
    if a is None or b is None:
        return a is b
    skip = ("revision", "updated")
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def now() -> str:
    """UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class GameImport:
    """One game as the importer hands it to :meth:`Store.bulk_import`."""

    url_local: str
    split: str | None
    url_youtube: str = ""
    label_path: str | None = None
    #: None when the source has no label file for this game (video only, e.g. challenge).
    annotations: list[Annotation] | None = None
    video: VideoInfo | None = None


@dataclass
class ImportResult:
    games_added: int = 0
    games_replaced: int = 0
    labels: int = 0
    labels_replaced: int = 0
    videos: int = 0


class Store:
    """A workspace's database. Safe to share between threads; open one per process."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self.conn = conn
        self._lock = threading.RLock()
        self._depth = 0
        self._action_id: int | None = None
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise BallspotError(f"{self.path}: the database cannot use WAL mode (is it on a network drive?)")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    @classmethod
    def open(cls, workspace: Workspace | str | Path | None = None) -> "Store":
        ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
        ws.ensure()
        return cls(ws.db_path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of work. A nested call is a savepoint: if it fails, only its own
        writes are undone and the outer transaction can go on."""
        with self._lock:
            if self._depth:
                name = f"sp{self._depth}"
                self.conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute(f"ROLLBACK TO {name}")
                        self.conn.execute(f"RELEASE {name}")
                    raise
                else:
                    self.conn.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                # Inside the try: a signal raised (a job's cancel) just after BEGIN still rolls back.
                self.conn.execute("BEGIN IMMEDIATE")
                yield
                self.conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (disk full, I/O error): don't mask the cause.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
                self._action_id = None

    def _migrate(self) -> None:
        with self.transaction():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.path}: schema version {version} is newer than this program's {SCHEMA_VERSION}; "
                    "update Ballspot Studio"
                )
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    self.conn.execute(sql)
            if version != SCHEMA_VERSION:
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def integrity_check(self) -> str:
        with self._lock:
            return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def dump(self) -> str:
        """The whole database as SQL text: what tests compare to prove nothing changed."""
        with self._lock:
            return "\n".join(self.conn.iterdump())

    # ----------------------------------------------------------------- low-level logged writes

    # The connection is shared by threads (the app's handlers); the lock keeps a reader from
    # seeing another thread's transaction before it commits.

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self.conn.execute(sql, params)]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> dict | None:
        with self._lock:
            row = self.conn.execute(sql, params).fetchone()
            return dict(row) if row is not None else None

    def _row(self, table: str, row_id: int) -> dict:
        row = self._one(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
        if row is None:
            raise NotFoundError(f"{table[:-1]} {row_id} does not exist (deleted meanwhile?)")
        return row

    @contextmanager
    def _operation(self, kind: str, game_id: int | None, author: str | None, summary: str) -> Iterator[int]:
        """A user operation: a transaction plus the ``actions`` row its changes belong to."""
        with self.transaction():
            status = "done" if kind in UNDOABLE else None
            cur = self.conn.execute(
                "INSERT INTO actions (ts, kind, game_id, author, summary, status) VALUES (?, ?, ?, ?, ?, ?)",
                (now(), kind, game_id, author, summary, status),
            )
            outer, self._action_id = self._action_id, cur.lastrowid
            try:
                yield cur.lastrowid
            finally:
                self._action_id = outer

    def _log(self, table: str, row_id: int, op: str, before: dict | None, after: dict | None) -> None:
        self._log_many(table, op, [(row_id, before, after)])

    def _log_many(self, table: str, op: str, rows: Iterable[tuple[int, dict | None, dict | None]]) -> None:
        """Append ``(row id, before, after)`` changes of one kind to the current operation."""
        assert self._action_id is not None, "logged writes happen inside an operation"
        dump = lambda state: json.dumps(state) if state is not None else None  # noqa: E731
        self.conn.executemany(
            "INSERT INTO changes (action_id, tbl, row_id, op, before, after) VALUES (?, ?, ?, ?, ?, ?)",
            ((self._action_id, table, row_id, op, dump(before), dump(after)) for row_id, before, after in rows),
        )

    def _insert(self, table: str, row: dict) -> dict:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        try:
            new = dict(self.conn.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING *", tuple(row.values())
            ).fetchone())
        except sqlite3.IntegrityError as exc:
            raise self._integrity(table, row, exc) from None
        self._log(table, new["id"], "insert", None, new)
        return new

    def _update(self, table: str, row_id: int, changes: dict, base_revision: int | None) -> dict:
        before = self._row(table, row_id)
        self._check_revision(table, before, base_revision)
        after = {**before, **changes, "revision": before["revision"] + 1, "updated": now()}
        sets = ", ".join(f"{k} = ?" for k in after if k != "id")
        try:
            self.conn.execute(
                f"UPDATE {table} SET {sets} WHERE id = ?",
                tuple(v for k, v in after.items() if k != "id") + (row_id,),
            )
        except sqlite3.IntegrityError as exc:
            raise self._integrity(table, after, exc) from None
        self._log(table, row_id, "update", before, after)
        return after

    def _delete(self, table: str, row_id: int, base_revision: int | None) -> dict:
        before = self._row(table, row_id)
        self._check_revision(table, before, base_revision)
        self.conn.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))
        self._log(table, row_id, "delete", before, None)
        return before

    @staticmethod
    def _check_revision(table: str, row: dict, base_revision: int | None) -> None:
        if base_revision is not None and row["revision"] != base_revision:
            raise ConflictError(
                f"{table[:-1]} {row['id']} was changed since you loaded it (your revision {base_revision}, "
                f"now {row['revision']}); reload it and try again - nothing was overwritten",
                current=row,
            )

    def _integrity(self, table: str, row: dict, exc: sqlite3.IntegrityError) -> BallspotError:
        if "UNIQUE" in str(exc) and table == "labels":
            other = self._one(
                "SELECT * FROM labels WHERE game_id = ? AND frame = ? AND label = ? AND team = ?",
                (row["game_id"], row["frame"], row["label"], row["team"]),
            )
            return ConflictError(
                f"a {row['label']} label for {row['team']} already exists at frame {row['frame']} "
                f"({clock(row['frame'])}), label {other['id'] if other else '?'}",
                current=other,
            )
        return BallspotError(f"{table}: {exc}")

    # ----------------------------------------------------------------- games

    def game(self, game: int | str) -> dict:
        """A game by id or UrlLocal."""
        column = "id" if isinstance(game, int) else "url_local"
        row = self._one(f"SELECT * FROM games WHERE {column} = ?", (game,))
        if row is None:
            raise NotFoundError(f"no game {game!r} in {self.path}")
        return row

    def games(self) -> list[dict]:
        return self._query("SELECT * FROM games ORDER BY url_local")

    def _game_id(self, game: int | str) -> int:
        return self.game(game)["id"]

    def set_video(self, game: int | str, video: VideoInfo | None) -> dict:
        """Attach (or detach, with None) a game's video."""
        with self.transaction():
            gid = self._game_id(game)
            self.conn.execute(
                f"UPDATE games SET {', '.join(f'{k} = ?' for k in self._video_columns(video))}, updated = ? "
                "WHERE id = ?",
                (*self._video_columns(video).values(), now(), gid),
            )
            return self.game(gid)

    @staticmethod
    def _video_columns(video: VideoInfo | None) -> dict:
        v = video
        return {
            "video_path": v.path if v else None,
            "fps": v.fps if v else None,
            "frame_count": v.frame_count if v else None,
            "duration_s": v.duration_s if v else None,
            "width": v.width if v else None,
            "height": v.height if v else None,
            "start_time_s": v.start_time_s if v else None,
            "size_bytes": v.size_bytes if v else None,
            "video_mtime": v.mtime if v else None,
            "video_codec": v.codec if v else None,
            "variable_fps": int(v.variable_fps) if v else None,
            "video_inode": v.inode if v else None,
        }

    # ----------------------------------------------------------------- labels

    def labels(self, game: int | str, *, sources: Iterable[str] | None = None) -> list[dict]:
        gid = self._game_id(game)
        rows = self._query("SELECT * FROM labels WHERE game_id = ? ORDER BY frame, id", (gid,))
        if sources is not None:
            keep = set(sources)
            rows = [r for r in rows if r["source"] in keep]
        return rows

    def label(self, label_id: int) -> dict:
        return self._row("labels", label_id)

    def _validate_label(self, game: dict, fields: dict) -> None:
        if "label" in fields and fields["label"] not in CLASSES:
            raise BallspotError(f"unknown label {fields['label']!r} (known: {', '.join(CLASSES)})")
        if "team" in fields and fields["team"] not in TEAMS:
            raise BallspotError(f"unknown team {fields['team']!r} (known: {', '.join(TEAMS)})")
        if "visibility" in fields and fields["visibility"] not in VISIBILITIES:
            raise BallspotError(f"unknown visibility {fields['visibility']!r} (known: {', '.join(VISIBILITIES)})")
        if "frame" in fields:
            frame = fields["frame"]
            if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
                raise BallspotError(f"frame {frame!r} is not a frame number (a whole number from 0)")
            if game["duration_s"] is not None:
                if frame_to_ms(frame) >= game["duration_s"] * 1000:
                    raise BallspotError(
                        f"frame {frame} ({clock(frame)}) is past the end of the video of {game['url_local']} "
                        f"({game['duration_s']:.2f} s)"
                    )
            # Without a video, the label files' own limit (no match lasts 24 hours); it also
            # keeps the number inside SQLite's 64-bit integers (2**63 was an OverflowError).
            elif frame_to_ms(frame) > MAX_POSITION_MS:
                raise BallspotError(
                    f"frame {frame} is more than 24 hours into {game['url_local']}, which has no video; "
                    "no match is that long"
                )

    def add_label(
        self,
        game: int | str,
        frame: int,
        label: str,
        team: str = DEFAULT_TEAM,
        *,
        visibility: str = DEFAULT_VISIBILITY,
        author: str | None = None,
        source: str = "human",
    ) -> dict:
        """Add one label; :class:`ConflictError` if the same (frame, label, team) exists."""
        if source not in SOURCES:
            raise BallspotError(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
        g = self.game(game)
        fields = {"frame": frame, "label": label, "team": team, "visibility": visibility}
        self._validate_label(g, fields)
        stamp = now()
        with self._operation("add", g["id"], author, f"add {label} {team} at {clock(frame)}"):
            return self._insert("labels", {
                "game_id": g["id"], **fields, "source": source, "author": author,
                "created": stamp, "updated": stamp,
            })

    def update_label(self, label_id: int, base_revision: int, *, author: str | None = None, **fields: Any) -> dict:
        """Change frame, label, team or visibility of a label last seen at ``base_revision``."""
        unknown = set(fields) - set(_LABEL_FIELDS)
        if unknown:
            raise BallspotError(f"cannot change {', '.join(sorted(unknown))} of a label")
        current = self.label(label_id)
        self._validate_label(self.game(current["game_id"]), fields)
        what = ", ".join(f"{k} {v}" for k, v in fields.items())
        with self._operation("update", current["game_id"], author, f"label {label_id}: {what}"):
            return self._update("labels", label_id, {**fields, "author": author}, base_revision)

    def delete_label(self, label_id: int, base_revision: int, *, author: str | None = None) -> dict:
        current = self.label(label_id)
        summary = f"delete {current['label']} {current['team']} at {clock(current['frame'])}"
        with self._operation("delete", current["game_id"], author, summary):
            return self._delete("labels", label_id, base_revision)

    # ----------------------------------------------------------------- models and predictions

    def register_model(
        self,
        version: str,
        *,
        path: str | None = None,
        parent: str | None = None,
        config: dict | None = None,
        metrics: dict | None = None,
        label_fingerprint: str | None = None,
    ) -> dict:
        with self.transaction():
            if self._one("SELECT 1 FROM models WHERE version = ?", (version,)):
                raise ConflictError(f"model version {version!r} is already registered")
            if parent is not None and not self._one("SELECT 1 FROM models WHERE version = ?", (parent,)):
                raise NotFoundError(f"parent model version {parent!r} is not registered")
            self.db["models"].insert({
                "version": version, "parent": parent, "path": path,
                "config": json.dumps(config or {}), "metrics": json.dumps(metrics or {}),
                "label_fingerprint": label_fingerprint, "created": now(),
            })
            return self.model(version)

    def set_model_metrics(self, version: str, metrics: dict) -> dict:
        """Replace a version's metrics (e.g. once it has been scored on this workspace's games)."""
        with self.transaction():
            self.model(version)
            self.conn.execute("UPDATE models SET metrics = ? WHERE version = ?", (json.dumps(metrics), version))
            return self.model(version)

    def model(self, version: str) -> dict:
        row = self._one("SELECT * FROM models WHERE version = ?", (version,))
        if row is None:
            raise NotFoundError(f"no model version {version!r} in {self.path}")
        return row

    def models(self) -> list[dict]:
        return self._query("SELECT * FROM models ORDER BY id")

    def add_predictions(
        self, model_version: str, game: int | str, events: Iterable[tuple[int, str, str, float]], *, replace: bool = True
    ) -> int:
        """Store a model version's events ``(frame, label, team, confidence)`` for a game.

        ``replace`` first removes that version's earlier predictions of the game (a re-run).
        """
        self.model(model_version)
        g = self.game(game)
        events = list(events)
        for frame, label, team, confidence in events:
            self._validate_label(g, {"frame": frame, "label": label, "team": team})
            if not 0.0 <= float(confidence) <= 1.0:
                raise BallspotError(f"confidence {confidence!r} of {label} at frame {frame} is not in [0, 1]")
        stamp = now()
        with self._operation("predict", g["id"], None, f"{len(events)} predictions of {model_version}"):
            if replace:
                for old in self._query(
                    "SELECT id FROM predictions WHERE game_id = ? AND model_version = ?", (g["id"], model_version)
                ):
                    # Labels made by accepting it stay; their link goes, through the history.
                    for lab in self._query("SELECT id FROM labels WHERE prediction_id = ?", (old["id"],)):
                        self._update("labels", lab["id"], {"prediction_id": None}, None)
                    self._delete("predictions", old["id"], None)
            for frame, label, team, confidence in events:
                self._insert("predictions", {
                    "model_version": model_version, "game_id": g["id"], "frame": int(frame), "label": label,
                    "team": team, "confidence": float(confidence), "created": stamp, "updated": stamp,
                })
        return len(events)

    def predictions(self, game: int | str, model_version: str | None = None) -> list[dict]:
        gid = self._game_id(game)
        if model_version is None:
            return self._query("SELECT * FROM predictions WHERE game_id = ? ORDER BY frame, id", (gid,))
        return self._query(
            "SELECT * FROM predictions WHERE game_id = ? AND model_version = ? ORDER BY frame, id",
            (gid, model_version),
        )

    def prediction(self, prediction_id: int) -> dict:
        return self._row("predictions", prediction_id)

    def accept(self, prediction_id: int, *, reviewer: str | None = None, base_revision: int | None = None,
               **corrections: Any) -> dict:
        """Accept a prediction: it becomes a label (source ``model``) unless that label exists already.

        ``corrections`` (frame, label, team) accept it corrected: the label gets those values
        while the prediction keeps what the model said; one operation, so one undo step.
        """
        p = self.prediction(prediction_id)
        target = self._accept_target(p, corrections)
        fixed = "".join(f", {k} -> {v}" for k, v in corrections.items() if v != p[k])
        summary = f"accept {p['label']} {p['team']} at {clock(p['frame'])}{fixed}"
        with self._operation("accept", p["game_id"], reviewer, summary):
            return self._accept_row(prediction_id, reviewer, base_revision, target)

    def reject(self, prediction_id: int, *, reviewer: str | None = None, base_revision: int | None = None) -> dict:
        """Reject a prediction (a hard negative for training); removes the label its accept made."""
        p = self.prediction(prediction_id)
        summary = f"reject {p['label']} {p['team']} at {clock(p['frame'])}"
        with self._operation("reject", p["game_id"], reviewer, summary):
            return self._reject_row(prediction_id, reviewer, base_revision)

    def carry_decisions(self, game: int | str, decisions: list[tuple[int, str, str | None, dict]],
                        summary: str) -> int:
        """Apply review decisions to a new prediction run in one operation (not undoable, like
        the run itself): ``(prediction id, "accepted" | "rejected", reviewer, corrections)``."""
        g = self.game(game)
        targets = [(pid, status, who, self._accept_target(self.prediction(pid), fix) if status == "accepted" else None)
                   for pid, status, who, fix in decisions]
        with self._operation("carry", g["id"], None, summary):
            for pid, status, who, target in targets:
                if status == "accepted":
                    self._accept_row(pid, who, None, target)
                else:
                    self._reject_row(pid, who, None)
        return len(targets)

    def _accept_target(self, p: dict, corrections: dict) -> dict:
        unknown = set(corrections) - {"frame", "label", "team"}
        if unknown:
            raise BallspotError(f"cannot correct {', '.join(sorted(unknown))} of a prediction")
        self._validate_label(self.game(p["game_id"]), corrections)
        return {k: corrections.get(k, p[k]) for k in ("frame", "label", "team")}

    def _accept_row(self, prediction_id: int, reviewer: str | None, base_revision: int | None, target: dict) -> dict:
        p = self._update("predictions", prediction_id, {
            "status": "accepted", "reviewer": reviewer, "reviewed": now(),
        }, base_revision)
        existing = self._one(
            "SELECT * FROM labels WHERE game_id = ? AND frame = ? AND label = ? AND team = ?",
            (p["game_id"], target["frame"], target["label"], target["team"]),
        )
        for (lid,) in self.conn.execute("SELECT id FROM labels WHERE prediction_id = ?", (prediction_id,)).fetchall():
            if existing is None or lid != existing["id"]:
                self._delete("labels", lid, None)  # accepted before with other corrections
        if existing is None:
            stamp = now()
            self._insert("labels", {
                "game_id": p["game_id"], **target,
                "visibility": DEFAULT_VISIBILITY, "source": "model", "author": reviewer,
                "prediction_id": prediction_id, "created": stamp, "updated": stamp,
            })
        return p

    def _reject_row(self, prediction_id: int, reviewer: str | None, base_revision: int | None) -> dict:
        p = self._update("predictions", prediction_id, {
            "status": "rejected", "reviewer": reviewer, "reviewed": now(),
        }, base_revision)
        for (lid,) in self.conn.execute("SELECT id FROM labels WHERE prediction_id = ?", (prediction_id,)).fetchall():
            self._delete("labels", lid, None)
        return p

    def transition_job(self, job_id: int, from_statuses: Iterable[str], **fields: Any) -> dict | None:
        """Change a job only if it is still in one of ``from_statuses`` (atomically): the app's
        timer, its buttons and the job's own process may race; the first transition wins."""
        unknown = set(fields) - set(self._JOB_FIELDS)
        if unknown:
            raise BallspotError(f"jobs have no field {', '.join(sorted(unknown))}")
        if "result" in fields and not isinstance(fields["result"], (str, type(None))):
            fields["result"] = json.dumps(fields["result"])
        allowed = list(from_statuses)
        sets = ", ".join(f"{k} = ?" for k in fields)
        marks = ", ".join("?" for _ in allowed)
        with self.transaction():
            cur = self.conn.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND status IN ({marks})",
                                    (*fields.values(), job_id, *allowed))
            return self.job(job_id) if cur.rowcount else None

    # ----------------------------------------------------------------- undo / redo

    def _scope(self, game: int | str | None, author: str | None) -> tuple[str, list]:
        where, params = ["1 = 1"], []
        if game is not None:
            where.append("game_id = ?")
            params.append(self._game_id(game))
        if author is not None:
            where.append("author IS ?")
            params.append(author)
        return " AND ".join(where), params

    def _barrier(self, game: int | str | None) -> int:
        """Undo and redo never reach back past an import or a prediction run of the game,
        whoever made it: those replace rows wholesale."""
        where, params = self._scope(game, None)
        marks = ", ".join("?" for _ in UNDOABLE)
        row = self._one(
            f"SELECT MAX(id) AS id FROM actions WHERE {where} AND kind NOT IN ({marks}, 'undo', 'redo')",
            (*params, *UNDOABLE),
        )
        return row["id"] or 0

    def undo(self, game: int | str | None = None, *, author: str | None = None) -> dict | None:
        """Undo the latest undoable operation in scope (a game, an author); None if there is none."""
        with self.transaction():
            where, params = self._scope(game, author)
            marks = ", ".join("?" for _ in UNDOABLE)
            target = self._one(
                f"SELECT * FROM actions WHERE {where} AND kind IN ({marks}) AND status = 'done' AND id > ? "
                "ORDER BY id DESC LIMIT 1",
                (*params, *UNDOABLE, self._barrier(game)),
            )
            if target is None:
                return None
            # Reverse the target's last application: the operation itself, or its latest redo.
            applied = self._one(
                "SELECT id FROM actions WHERE id = ? OR (kind = 'redo' AND target = ?) ORDER BY id DESC LIMIT 1",
                (target["id"], target["id"]),
            )["id"]
            self._reverse(applied, target, "undo", author)
            self.conn.execute("UPDATE actions SET status = 'undone' WHERE id = ?", (target["id"],))
            return target

    def redo(self, game: int | str | None = None, *, author: str | None = None) -> dict | None:
        """Redo the most recently undone operation, unless a new edit has been made since."""
        with self.transaction():
            where, params = self._scope(game, author)
            last_undo = None
            for row in self._query(f"SELECT * FROM actions WHERE {where} AND kind = 'undo' ORDER BY id DESC", params):
                if self._row("actions", row["target"])["status"] == "undone":
                    last_undo = row
                    break
            if last_undo is None or self._barrier(game) > last_undo["id"]:
                return None
            marks = ", ".join("?" for _ in UNDOABLE)
            if self.conn.execute(
                f"SELECT 1 FROM actions WHERE {where} AND kind IN ({marks}) AND id > ? LIMIT 1",
                (*params, *UNDOABLE, last_undo["id"]),
            ).fetchone():
                return None  # a new edit since the undo: the redo stack is gone, as in any editor
            target = self._row("actions", last_undo["target"])
            self._reverse(last_undo["id"], target, "redo", author)
            self.conn.execute("UPDATE actions SET status = 'done' WHERE id = ?", (target["id"],))
            return target

    def _reverse(self, applied: int, target: dict, kind: str, author: str | None) -> None:
        """Reverse every change of action ``applied``, newest first, as a new ``kind`` action.

        Undo reverses the operation (or its latest redo); redo reverses the undo. Refuses, with
        nothing written, if any row was changed by something else after ``applied``.
        """
        changes = self._query("SELECT * FROM changes WHERE action_id = ? ORDER BY id DESC", (applied,))
        # The undo belongs to the author of the edit (so a scoped redo finds it); who pressed it
        # is kept in the summary when that is someone else.
        by = f" (by {author})" if author is not None and author != target["author"] else ""
        with self._operation(kind, target["game_id"], target["author"], f"{kind}: {target['summary']}{by}") as action_id:
            self.conn.execute("UPDATE actions SET target = ? WHERE id = ?", (target["id"], action_id))
            for ch in changes:
                table, row_id = ch["tbl"], ch["row_id"]
                before = json.loads(ch["before"]) if ch["before"] else None
                after = json.loads(ch["after"]) if ch["after"] else None
                current = self._one(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
                if not _same_state(current, after):
                    raise ConflictError(
                        f"cannot {kind} '{target['summary']}': {table[:-1]} {row_id} was changed after it; "
                        "nothing was changed"
                    )
                self._restore(table, row_id, after, before)

    def _restore(self, table: str, row_id: int, have: dict | None, want: dict | None) -> None:
        """Bring a row from state ``have`` to state ``want`` (None = absent), bumping its revision
        so that any edit based on the state before stays stale."""
        if want is None:
            self._delete(table, row_id, None)
        elif have is None:
            prior = self._one(
                "SELECT before FROM changes WHERE tbl = ? AND row_id = ? AND op = 'delete' ORDER BY id DESC LIMIT 1",
                (table, row_id),
            )
            revision = json.loads(prior["before"])["revision"] if prior else want["revision"]
            self._insert(table, {**want, "revision": revision + 1, "updated": now()})
        else:
            fields = {k: v for k, v in want.items() if k not in ("id", "revision", "updated", "created")}
            self._update(table, row_id, fields, None)

    def change_cursor(self) -> int:
        """The id of the newest logged change: a client's position in the history."""
        return (self._one("SELECT MAX(id) AS id FROM changes") or {}).get("id") or 0

    def changes_since(self, game: int | str, cursor: int) -> tuple[dict[tuple[str, int], dict | None], int]:
        """What changed in a game's labels and predictions after ``cursor``: the latest state of
        each changed row (None if deleted), keyed by (table, id), and the new cursor. Lets a
        client apply only deltas, including edits made elsewhere (another tab, the CLI)."""
        gid = self._game_id(game)
        rows = self._query(
            "SELECT c.id, c.tbl, c.row_id, c.after FROM changes c JOIN actions a ON a.id = c.action_id "
            "WHERE a.game_id = ? AND c.id > ? ORDER BY c.id", (gid, cursor))
        latest: dict[tuple[str, int], dict | None] = {}
        for r in rows:
            latest[(r["tbl"], r["row_id"])] = json.loads(r["after"]) if r["after"] else None
        return latest, max([cursor, *(r["id"] for r in rows)])

    def history(self, game: int | str | None = None, limit: int = 100) -> list[dict]:
        """The audit trail, newest first: operations with their row changes."""
        where, params = self._scope(game, None)
        actions = self._query(f"SELECT * FROM actions WHERE {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        for a in actions:
            a["changes"] = self._query("SELECT * FROM changes WHERE action_id = ? ORDER BY id", (a["id"],))
        return actions

    # ----------------------------------------------------------------- bulk import

    #: Pause after each game an import writes (seconds), so that an edit waiting for the store
    #: (another thread of the app) gets its turn: a lock released and at once taken again by
    #: the same thread would otherwise keep it waiting for the whole import.
    IMPORT_PAUSE_S = 0.002

    def bulk_import(self, games: list[GameImport], *, replace: bool = False, author: str | None = None) -> ImportResult:
        """Write imported games (already read and validated), one transaction per game.

        Why per game: one transaction for a whole import (300,000 labels took 21 s) held every
        other edit back for as long. Now an edit waits for one game's write at most, and still
        no game is ever half written: its row, the removal of its old labels, its new labels
        and their history are one transaction, under an ``import`` action (the barrier undo
        and redo never cross).

        The conflict check for every game comes before the first write, so a refused import
        writes nothing. An I/O failure mid-way (disk full) leaves the games written so far
        complete and the rest untouched, and raises; importing again with ``replace``
        finishes it. A game that another process imported meanwhile is a conflict too.
        """
        result = ImportResult()
        with self._lock:
            existing = [g.url_local for g in games
                        if self._one("SELECT 1 FROM games WHERE url_local = ?", (g.url_local,))]
        if existing and not replace:
            raise self._already_there(existing)
        for i, g in enumerate(games):
            if i:
                time.sleep(self.IMPORT_PAUSE_S)
            self._import_game(g, replace, author, result)
        return result

    @staticmethod
    def _already_there(urls: list[str], written: int = 0) -> ConflictError:
        names = "\n  ".join(urls)
        done = f"the {written} game(s) before it were imported, no more" if written else "nothing was imported"
        return ConflictError(
            f"{len(urls)} game(s) already in the workspace; {done}. "
            f"Use --replace to replace their labels (the old ones stay in the history):\n  {names}"
        )

    def _import_game(self, g: GameImport, replace: bool, author: str | None, result: ImportResult) -> None:
        """One game of :meth:`bulk_import`, in one transaction; adds to ``result`` once committed."""
        done = ImportResult()
        with self.transaction():
            stamp = now()
            old = self._one("SELECT * FROM games WHERE url_local = ?", (g.url_local,))
            if old is not None and not replace:  # imported meanwhile, by another process
                raise self._already_there([g.url_local], result.games_added + result.games_replaced)
            row = {"url_local": g.url_local, "split": g.split, "updated": stamp}
            if g.url_youtube or old is None:
                row["url_youtube"] = g.url_youtube
            if g.label_path or old is None:
                row["label_path"] = g.label_path
            if g.video is not None or old is None:
                row.update(self._video_columns(g.video))
                done.videos += g.video is not None
            if old is None:
                row["created"] = stamp
                gid = self.db["games"].insert(row).last_pk
                done.games_added += 1
            else:
                gid = old["id"]
                self.db["games"].update(gid, row)
                done.games_replaced += 1
            if g.annotations is not None:
                n = len(g.annotations)
                with self._operation("import", gid, author, f"import {n} labels from {g.label_path}"):
                    done.labels_replaced = self._replace_labels(gid, g, author, stamp)
                done.labels += n
        for f in fields(ImportResult):
            setattr(result, f.name, getattr(result, f.name) + getattr(done, f.name))

    def _replace_labels(self, gid: int, g: GameImport, author: str | None, stamp: str) -> int:
        """A game's labels become ``g``'s, all logged in the current operation: set-wise
        statements (``executemany``), as fast as SQLite goes, where an edit goes row by row.
        Returns how many old labels were removed."""
        old = self._query("SELECT * FROM labels WHERE game_id = ? ORDER BY id", (gid,))
        if old:
            self.conn.execute("DELETE FROM labels WHERE game_id = ?", (gid,))
            self._log_many("labels", "delete", ((r["id"], r, None) for r in old))
        try:
            self.conn.executemany(
                "INSERT INTO labels (game_id, frame, label, team, visibility, source, author, extra, created, updated) "
                "VALUES (?, ?, ?, ?, ?, 'imported', ?, ?, ?, ?)",
                ((gid, a.frame, a.label, a.team, a.visibility, author, json.dumps(a.extra), stamp, stamp)
                 for a in g.annotations),
            )
        except sqlite3.IntegrityError as exc:  # the parser refuses duplicates; this is a backstop
            raise BallspotError(f"{g.label_path or g.url_local}: {exc}") from None
        # The game has no other labels now: they are exactly the rows just inserted.
        new = self._query("SELECT * FROM labels WHERE game_id = ? ORDER BY id", (gid,))
        self._log_many("labels", "insert", ((r["id"], None, r) for r in new))
        return len(old)

    # ----------------------------------------------------------------- summaries

    def label_fingerprint(self, games: Iterable[int | str] | None = None) -> str:
        """A hash of the training targets (labels and review decisions) of some games.

        Two models trained on the same fingerprint saw the same labels; any edit changes it.
        """
        ids = None if games is None else {self._game_id(g) for g in games}
        h = hashlib.sha256()
        with self.transaction():  # one consistent snapshot, even while others write
            for g in self.games():
                if ids is not None and g["id"] not in ids:
                    continue
                h.update(f"G{g['url_local']}\n".encode())
                for r in self._query(
                    "SELECT frame, label, team, visibility FROM labels WHERE game_id = ? ORDER BY frame, label, team",
                    (g["id"],),
                ):
                    h.update(f"L{tuple(r.values())}\n".encode())
                for r in self._query(
                    "SELECT frame, label, team FROM predictions WHERE game_id = ? AND status = 'rejected' "
                    "ORDER BY frame, label, team",
                    (g["id"],),
                ):
                    h.update(f"R{tuple(r.values())}\n".encode())
        return h.hexdigest()

    def label_counts(self) -> list[dict]:
        """Labels per game and class."""
        return self._query("SELECT game_id, label, COUNT(*) AS n FROM labels GROUP BY game_id, label")

    def label_made_by(self, prediction_id: int) -> dict | None:
        """The label that accepting this prediction made, if it still exists."""
        return self._one("SELECT * FROM labels WHERE prediction_id = ? ORDER BY id LIMIT 1", (prediction_id,))

    def predicted_games(self, model_version: str) -> set[int]:
        """Ids of the games a model version has predictions on."""
        rows = self._query("SELECT DISTINCT game_id FROM predictions WHERE model_version = ?", (model_version,))
        return {r["game_id"] for r in rows}

    def prediction_counts(self) -> list[dict]:
        """Predictions per game and review status."""
        return self._query("SELECT game_id, status, COUNT(*) AS n FROM predictions GROUP BY game_id, status")

    # ----------------------------------------------------------------- settings and jobs

    def setting(self, key: str, default: str | None = None) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return row["value"] if row else default

    def set_setting(self, key: str, value: str | None) -> None:
        with self.transaction():
            self.db["settings"].upsert({"key": key, "value": value}, pk="key")

    def create_job(self, kind: str, params: dict | None = None) -> dict:
        with self.transaction():
            pk = self.db["jobs"].insert({"kind": kind, "params": json.dumps(params or {}), "created": now()}).last_pk
            return self.job(pk)

    def job(self, job_id: int) -> dict:
        return self._row("jobs", job_id)

    def jobs(self, limit: int = 50) -> list[dict]:
        return self._query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))

    _JOB_FIELDS = ("status", "progress", "message", "log_path", "pid", "result", "error", "started", "finished")

    def update_job(self, job_id: int, **fields: Any) -> dict:
        unknown = set(fields) - set(self._JOB_FIELDS)
        if unknown:
            raise BallspotError(f"jobs have no field {', '.join(sorted(unknown))}")
        if "result" in fields and not isinstance(fields["result"], (str, type(None))):
            fields["result"] = json.dumps(fields["result"])
        with self.transaction():
            self.job(job_id)
            self.db["jobs"].update(job_id, fields)
            return self.job(job_id)


__all__ = ["Store", "GameImport", "ImportResult", "SCHEMA_VERSION", "UNDOABLE", "REVIEW_STATUSES", "now"]
