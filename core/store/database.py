"""The connection to a workspace's SQLite file: pragmas, migration on open, transactions, queries.

Why it is built this way:

* Every operation is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock before it
  reads, so two writers (two browser tabs, the CLI beside the app) serialise instead of
  overwriting each other, and a failure rolls back everything the operation did.
* WAL mode with ``synchronous=FULL``: readers (a training job) never block writers, and a
  write that has returned survives a crash of the process.
* The connection is shared by threads (the app's handlers); one lock keeps a reader from
  seeing another thread's transaction before it commits.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Self, Sequence

import sqlite_utils

from core.errors import BallspotError, NotFoundError
from core.store.schema import decode_row, migrate


def now() -> str:
    """UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Database:
    """One open database file, migrated to the current schema. Safe to share between threads."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self.conn = conn
        self._lock = threading.RLock()
        self._depth = 0
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise BallspotError(f"{self.path}: the database cannot use WAL mode (is it on a network drive?)")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        with self.transaction():
            migrate(self.conn, self.path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # ----------------------------------------------------------------- queries

    # Raw rows (JSON columns as stored) for the store's own use; what it hands out goes
    # through ``_select`` / ``_select_one``, which decode them.

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

    def _select(self, table: str, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        """Rows of ``table`` as callers see them (JSON columns decoded)."""
        return [decode_row(table, r) for r in self._query(sql, params)]

    def _select_one(self, table: str, sql: str, params: Sequence[Any] = ()) -> dict | None:
        return decode_row(table, self._one(sql, params))
