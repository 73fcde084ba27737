"""The label store: a workspace's games, labels, model versions and their predictions.

The pieces it stands on are apart: the connection and transactions (``database``), the
tables and their migrations (``schema``), the change log with undo and redo (``history``)
and the jobs and settings (``jobs``). What is here is the domain: which edits exist, what
each checks, and what a prediction's accept or reject does to the labels.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from core.errors import BallspotError, ConflictError, NotFoundError
from core.formats import MAX_POSITION_MS, Annotation
from core.labels import (
    CLASSES,
    DEFAULT_TEAM,
    DEFAULT_VISIBILITY,
    SOURCES,
    TEAMS,
    VISIBILITIES,
    clock,
    frame_to_ms,
)
from core.store.database import now
from core.store.history import History
from core.store.jobs import Jobs
from core.store.schema import decode_row, encode_json, encode_row
from core.workspace import Workspace

if TYPE_CHECKING:  # core.video imports PyAV and OpenCV: the store only reads a VideoInfo's fields
    from core.video import VideoInfo

_LABEL_FIELDS = ("frame", "label", "team", "visibility")


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
    #: The label file's top-level keys beyond its annotations (the 2025 ``halftime``): ``games.extra``.
    extra: dict = field(default_factory=dict)


@dataclass
class ImportResult:
    games_added: int = 0
    games_replaced: int = 0
    labels: int = 0
    labels_replaced: int = 0
    videos: int = 0


class Store(History, Jobs):
    """A workspace's database. Safe to share between threads; open one per process.

    Rows come back as dicts, their JSON columns (a label's ``extra``, a model's ``config`` and
    ``metrics``, a job's ``params`` and ``result``) as Python values.
    """

    @classmethod
    def open(cls, workspace: Workspace | str | Path | None = None) -> "Store":
        ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
        ws.ensure()
        return cls(ws.db_path)

    def _integrity(self, table: str, row: dict, exc: sqlite3.IntegrityError) -> BallspotError:
        if "UNIQUE" in str(exc) and table == "labels":
            other = self._one(
                "SELECT * FROM labels WHERE game_id = ? AND frame = ? AND label = ? AND team = ?",
                (row["game_id"], row["frame"], row["label"], row["team"]),
            )
            return ConflictError(
                f"a {row['label']} label for {row['team']} already exists at frame {row['frame']} "
                f"({clock(row['frame'])}), label {other['id'] if other else '?'}",
                current=decode_row("labels", other),
            )
        return super()._integrity(table, row, exc)

    # ----------------------------------------------------------------- games

    def game(self, game: int | str) -> dict:
        """A game by id or UrlLocal."""
        column = "id" if isinstance(game, int) else "url_local"
        row = self._select_one("games", f"SELECT * FROM games WHERE {column} = ?", (game,))
        if row is None:
            raise NotFoundError(f"no game {game!r} in {self.path}")
        return row

    def games(self) -> list[dict]:
        return self._select("games", "SELECT * FROM games ORDER BY url_local")

    def _game_id(self, game: int | str) -> int:
        return self.game(game)["id"]

    def set_fully_reviewed(self, game: int | str, marked: bool, *, author: str | None = None,
                           seen: str | None = None) -> dict:
        """Mark a game fully reviewed (every event in it labelled) or take the mark back.

        The mark is ``"<UTC timestamp> <author>"`` (just the timestamp without an author): who
        said so and when, readable without parsing JSON. It is an undoable edit of the game's
        row, logged like a label's. ``seen``: the mark the caller last saw (None: unmarked); a
        mark changed since is a conflict and nothing is written. Already as wanted: no edit.
        """
        with self.transaction():  # the check and the write see the same row
            g = self.game(game)
            if g["fully_reviewed"] != seen:
                state = f"marked fully reviewed ({g['fully_reviewed']})" if g["fully_reviewed"] else "not marked"
                raise ConflictError(f"{g['url_local']} was changed since you loaded it: it is {state} now; "
                                    "nothing was changed",
                                    current={"id": g["id"], "fully_reviewed": g["fully_reviewed"]})
            if bool(g["fully_reviewed"]) == marked:
                return g
            value = None if not marked else f"{now()} {author}" if author else now()
            summary = f"{'mark' if marked else 'unmark'} {g['url_local']} fully reviewed"
            with self._operation("update", g["id"], author, summary):
                self._update("games", g["id"], {"fully_reviewed": value}, None)
            return self.game(g["id"])

    def fully_reviewed_games(self) -> dict[int, str]:
        """The games a reviewer marked fully reviewed: id -> mark (``"<UTC timestamp> <author>"``)."""
        rows = self._query("SELECT id, fully_reviewed FROM games WHERE fully_reviewed IS NOT NULL")
        return {r["id"]: r["fully_reviewed"] for r in rows}

    def team_names(self, game: int | str) -> set[str]:
        """The team names a game's labels and predictions use (home/away, left/right or both)."""
        gid = self._game_id(game)
        rows = self._query("SELECT DISTINCT team FROM labels WHERE game_id = ? "
                           "UNION SELECT DISTINCT team FROM predictions WHERE game_id = ?", (gid, gid))
        return {r["team"] for r in rows}

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
        rows = self._select("labels", "SELECT * FROM labels WHERE game_id = ? ORDER BY frame, id", (gid,))
        if sources is not None:
            keep = set(sources)
            rows = [r for r in rows if r["source"] in keep]
        return rows

    def label(self, label_id: int) -> dict:
        return decode_row("labels", self._row("labels", label_id))

    def label_made_by(self, prediction_id: int) -> dict | None:
        """The label that accepting this prediction made, if it still exists."""
        return self._select_one("labels", "SELECT * FROM labels WHERE prediction_id = ? ORDER BY id LIMIT 1",
                                (prediction_id,))

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
            return decode_row("labels", self._insert("labels", {
                "game_id": g["id"], **fields, "source": source, "author": author,
                "created": stamp, "updated": stamp,
            }))

    def update_label(self, label_id: int, base_revision: int, *, author: str | None = None, **fields: Any) -> dict:
        """Change frame, label, team or visibility of a label last seen at ``base_revision``."""
        unknown = set(fields) - set(_LABEL_FIELDS)
        if unknown:
            raise BallspotError(f"cannot change {', '.join(sorted(unknown))} of a label")
        current = self.label(label_id)
        self._validate_label(self.game(current["game_id"]), fields)
        what = ", ".join(f"{k} {v}" for k, v in fields.items())
        with self._operation("update", current["game_id"], author, f"label {label_id}: {what}"):
            return decode_row("labels", self._update("labels", label_id, {**fields, "author": author}, base_revision))

    def delete_label(self, label_id: int, base_revision: int, *, author: str | None = None) -> dict:
        current = self.label(label_id)
        summary = f"delete {current['label']} {current['team']} at {clock(current['frame'])}"
        with self._operation("delete", current["game_id"], author, summary):
            deleted = self._delete("labels", label_id, base_revision)
            self._unaccept(deleted["prediction_id"])
            return decode_row("labels", deleted)

    def _unaccept(self, prediction_id: int | None) -> None:
        """Deleting the label an accept made undoes the accept: the prediction is pending again
        (in the queue, neither a positive nor a hard negative), in the same operation."""
        if prediction_id is None:
            return
        p = self._one("SELECT * FROM predictions WHERE id = ?", (prediction_id,))
        still = self._one("SELECT 1 FROM labels WHERE prediction_id = ?", (prediction_id,))
        if p is not None and p["status"] == "accepted" and still is None:
            self._update("predictions", prediction_id, {"status": "pending", "reviewer": None, "reviewed": None}, None)

    # ----------------------------------------------------------------- models

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
            self.db["models"].insert(encode_row("models", {
                "version": version, "parent": parent, "path": path,
                "config": config or {}, "metrics": metrics or {},
                "label_fingerprint": label_fingerprint, "created": now(),
            }))
            return self.model(version)

    def set_model_metrics(self, version: str, metrics: dict) -> dict:
        """Replace a version's metrics (e.g. once it has been scored on this workspace's games)."""
        with self.transaction():
            self.model(version)
            self.conn.execute("UPDATE models SET metrics = ? WHERE version = ?", (encode_json(metrics), version))
            return self.model(version)

    def model(self, version: str) -> dict:
        """A registered version, its ``config`` and ``metrics`` decoded."""
        row = self._select_one("models", "SELECT * FROM models WHERE version = ?", (version,))
        if row is None:
            raise NotFoundError(f"no model version {version!r} in {self.path}")
        return row

    def models(self) -> list[dict]:
        """Every registered version, oldest first."""
        return self._select("models", "SELECT * FROM models ORDER BY id")

    # ----------------------------------------------------------------- predictions and their review

    def add_predictions(
        self, model_version: str, game: int | str, events: Iterable[tuple[int, str, str, float]], *,
        replace: bool = True,
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

    def predicted_games(self, model_version: str) -> set[int]:
        """Ids of the games a model version has predictions on."""
        rows = self._query("SELECT DISTINCT game_id FROM predictions WHERE model_version = ?", (model_version,))
        return {r["game_id"] for r in rows}

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

    def review_many(self, status: str, predictions: list[tuple[int, int]], *, reviewer: str | None = None,
                    summary: str) -> list[dict]:
        """Accept or reject many predictions of one game as ONE operation (one undo step).

        ``predictions``: ``(id, revision seen)`` each; one changed since (a stale revision) is a
        conflict and nothing at all is written, as for a single accept or reject.
        """
        if status not in ("accepted", "rejected"):
            raise BallspotError(f"a review decision is 'accepted' or 'rejected', not {status!r}")
        if not predictions:
            raise BallspotError("no predictions to review")
        with self.transaction():
            rows = [self.prediction(pid) for pid, _ in predictions]
            games = {p["game_id"] for p in rows}
            if len(games) != 1:
                raise BallspotError("a bulk review applies to the predictions of one game")
            g = self.game(games.pop())
            targets = [self._accept_target(p, {}, g) if status == "accepted" else None for p in rows]
            kind = "accept" if status == "accepted" else "reject"
            with self._operation(kind, g["id"], reviewer, summary):
                return [self._accept_row(pid, reviewer, revision, target) if status == "accepted"
                        else self._reject_row(pid, reviewer, revision)
                        for (pid, revision), target in zip(predictions, targets)]

    def carry_decisions(self, game: int | str, decisions: list[tuple[int, str, str | None, dict]],
                        summary: str) -> int:
        """Apply review decisions to a new prediction run in one operation (not undoable, like
        the run itself): ``(prediction id, "accepted" | "rejected", reviewer, corrections)``."""
        g = self.game(game)
        rows = [self.prediction(pid) for pid, *_ in decisions]
        if any(p["game_id"] != g["id"] for p in rows):
            raise BallspotError(f"carried decisions apply to predictions of {g['url_local']} only")
        targets = [(pid, status, who, self._accept_target(p, fix, g) if status == "accepted" else None)
                   for p, (pid, status, who, fix) in zip(rows, decisions)]
        with self._operation("carry", g["id"], None, summary):
            for pid, status, who, target in targets:
                if status == "accepted":
                    self._accept_row(pid, who, None, target)
                else:
                    self._reject_row(pid, who, None)
        return len(targets)

    def _accept_target(self, p: dict, corrections: dict, game: dict | None = None) -> dict:
        """What accepting ``p`` with ``corrections`` labels; ``game``: its game, when the caller
        has it (a bulk operation checks thousands against one game)."""
        unknown = set(corrections) - {"frame", "label", "team"}
        if unknown:
            raise BallspotError(f"cannot correct {', '.join(sorted(unknown))} of a prediction")
        self._validate_label(game or self.game(p["game_id"]), corrections)
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
                row["extra"] = encode_json(g.extra)  # the file's, replacing what an older file said
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
                ((gid, a.frame, a.label, a.team, a.visibility, author, encode_json(a.extra), stamp, stamp)
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

    def prediction_counts(self, model_version: str | None = None) -> list[dict]:
        """Predictions per game and review status, of one model version (or of all)."""
        if model_version is None:
            return self._query("SELECT game_id, status, COUNT(*) AS n FROM predictions GROUP BY game_id, status")
        return self._query("SELECT game_id, status, COUNT(*) AS n FROM predictions WHERE model_version = ? "
                           "GROUP BY game_id, status", (model_version,))
