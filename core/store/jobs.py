"""The jobs table (background retraining and inference) and the workspace's settings.

What a job does lives in ``core/jobs.py``; here is only its record: queued, running, done,
failed or cancelled, with its progress, its parameters and its result (both JSON columns,
read and written as Python values). Settings sit here too: a handful of keys (the active
model) that, like jobs, belong to the workspace rather than to a game, and are not undoable.
"""
from __future__ import annotations

from typing import Any, Iterable

from core.errors import BallspotError
from core.store.database import Database, now
from core.store.schema import decode_row, encode_row


class Jobs(Database):
    """Jobs and settings: plain rows, outside the change log (nothing here is undone)."""

    #: The fields a job's own process and the app may change after it is created.
    _JOB_FIELDS = ("status", "progress", "message", "log_path", "pid", "result", "error", "started", "finished")

    def setting(self, key: str, default: str | None = None) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return row["value"] if row else default

    def set_setting(self, key: str, value: str | None) -> None:
        with self.transaction():
            self.db["settings"].upsert({"key": key, "value": value}, pk="key")

    def create_job(self, kind: str, params: dict | None = None) -> dict:
        with self.transaction():
            pk = self.db["jobs"].insert(encode_row("jobs", {"kind": kind, "params": params or {},
                                                            "created": now()})).last_pk
            return self.job(pk)

    def job(self, job_id: int) -> dict:
        """A job, its ``params`` and ``result`` decoded (``result`` is None until it is done)."""
        return decode_row("jobs", self._row("jobs", job_id))

    def jobs(self, limit: int = 50) -> list[dict]:
        """The latest jobs, newest first."""
        return self._select("jobs", "SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))

    def transition_job(self, job_id: int, from_statuses: Iterable[str], **fields: Any) -> dict | None:
        """Change a job only if it is still in one of ``from_statuses`` (atomically): the app's
        timer, its buttons and the job's own process may race; the first transition wins.
        Returns the job as changed, or None if it was in another status."""
        unknown = set(fields) - set(self._JOB_FIELDS)
        if unknown:
            raise BallspotError(f"jobs have no field {', '.join(sorted(unknown))}")
        fields = encode_row("jobs", fields)
        allowed = list(from_statuses)
        sets = ", ".join(f"{k} = ?" for k in fields)
        marks = ", ".join("?" for _ in allowed)
        with self.transaction():
            cur = self.conn.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND status IN ({marks})",
                                    (*fields.values(), job_id, *allowed))
            return self.job(job_id) if cur.rowcount else None
