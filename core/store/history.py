"""The change log: every write of a label or prediction, and undo and redo read back from it.

Why it is built this way:

* Rows of the logged tables carry a ``revision``. An edit names the revision it was based on;
  a stale edit raises :class:`ConflictError` and overwrites nothing.
* Every insert, update and delete of a label or prediction goes through :meth:`History._insert`,
  :meth:`History._update` or :meth:`History._delete`, which append it to ``changes`` (the row
  before and after, as JSON) under one ``actions`` row per user operation. That log is the
  audit trail and the undo/redo stack, so undo survives a restart. Triggers make it append-only.
* A game's own row is logged the same way when a reviewer marks it fully reviewed (so undo
  takes the mark back); it has no ``revision``, so that edit is checked against the mark seen.
* The log keeps rows exactly as stored (JSON columns as text): undo compares a row's present
  state with the logged one and writes the logged one back, so both must be the database's own.
  Rows handed to callers (:meth:`History.changes_since`, a conflict's ``current``) are decoded.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from typing import Iterable, Iterator

from core.errors import BallspotError, ConflictError
from core.store.database import Database, now
from core.store.schema import decode_row

#: Operations a reviewer can undo. Imports are audit-only and act as a barrier for undo.
UNDOABLE = ("add", "update", "delete", "accept", "reject")


def _same_state(a: dict | None, b: dict | None) -> bool:
    """Two states of a row are the same if equal in everything but revision and update time."""
    if a is None or b is None:
        return a is b
    skip = ("revision", "updated")
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


class History(Database):
    """Logged writes, grouped into user operations, and undo, redo and deltas over them.

    A base of :class:`~core.store.Store`, which supplies two things it needs: how a game's id
    or name becomes its id (:meth:`_game_id`) and which rows a refused write collides with
    (:meth:`_integrity`).
    """

    #: The id of the ``actions`` row the current operation's changes belong to.
    _action_id: int | None = None

    def _game_id(self, game: int | str) -> int:
        raise NotImplementedError("the store resolves games")

    def _integrity(self, table: str, row: dict, exc: sqlite3.IntegrityError) -> BallspotError:
        """The error for a write the database refused (the store names a label in the way)."""
        return BallspotError(f"{table}: {exc}")

    # ----------------------------------------------------------------- logged writes

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
        """Insert a row (column values as stored) and log it; returns the stored row."""
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
        """Change a row last seen at ``base_revision`` (None: whatever it is now) and log it."""
        before = self._row(table, row_id)
        self._check_revision(table, before, base_revision)
        after = {**before, **changes, "updated": now()}
        if "revision" in before:  # a game's row has none: its review mark is checked by value
            after["revision"] = before["revision"] + 1
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
                current=decode_row(table, row),
            )

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
        summary = f"{kind}: {target['summary']}{by}"
        with self._operation(kind, target["game_id"], target["author"], summary) as action_id:
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

    # ----------------------------------------------------------------- reading the log

    def change_cursor(self) -> int:
        """The id of the newest logged change: a client's position in the history."""
        return (self._one("SELECT MAX(id) AS id FROM changes") or {}).get("id") or 0

    def changes_since(self, game: int | str, cursor: int) -> tuple[dict[tuple[str, int], dict | None], int]:
        """What changed in a game's labels, predictions and own row after ``cursor``: the latest state of
        each changed row (None if deleted), keyed by (table, id), and the new cursor. Lets a
        client apply only deltas, including edits made elsewhere (another tab, the CLI)."""
        gid = self._game_id(game)
        rows = self._query(
            "SELECT c.id, c.tbl, c.row_id, c.after FROM changes c JOIN actions a ON a.id = c.action_id "
            "WHERE a.game_id = ? AND c.id > ? ORDER BY c.id", (gid, cursor))
        latest: dict[tuple[str, int], dict | None] = {}
        for r in rows:
            latest[(r["tbl"], r["row_id"])] = decode_row(r["tbl"], json.loads(r["after"])) if r["after"] else None
        return latest, max([cursor, *(r["id"] for r in rows)])

    def history(self, game: int | str | None = None, limit: int = 100) -> list[dict]:
        """The audit trail, newest first: operations with their row changes (before and after
        as the JSON text logged, rows as stored)."""
        where, params = self._scope(game, None)
        actions = self._query(f"SELECT * FROM actions WHERE {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        for a in actions:
            a["changes"] = self._query("SELECT * FROM changes WHERE action_id = ? ORDER BY id", (a["id"],))
        return actions
