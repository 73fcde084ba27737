"""A background job as a person reads it: phase, epoch, per cent, time left, when it started.

Pure functions over a job's row (``core.store.Store.job``): the Models tab draws a progress
bar per job from :func:`job_view`, and nothing in the UI parses a job's message itself. The
phase and epoch come from the words every job's progress uses (``core.training.progress.describe``
for training, ``core.jobs`` for the rest), so they follow that vocabulary.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

#: Statuses in which a job can still be cancelled.
CANCELLABLE = ("queued", "running")
#: Below this share done, a time-left estimate is noise (the first seconds load data).
_MIN_FRACTION_FOR_ETA = 0.02

_EPOCH = re.compile(r"\bepoch (\d+)/(\d+)")
#: The phase a job's message names, first match wins (training's and jobs' own words).
_PHASES = (
    ("pretraining", re.compile(r"^pretraining")),
    ("ball track", re.compile(r"^the (?:track classifier|ball's track)")),
    ("training", re.compile(r"^(?:epoch \d|training from|torchrun)")),
    ("inference", re.compile(r"^inference")),
    ("finishing", re.compile(r"^(?:registering|carrying review decisions)")),
    ("starting", re.compile(r"^starting")),
)


def _parse_time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h 05 min``: a span at the precision a person plans with."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def local_time(stamp: str | None, now: datetime | None = None) -> str:
    """A stored UTC timestamp in this machine's time: ``14:02`` today, else ``2024-10-01 14:02``."""
    when = _parse_time(stamp)
    if when is None:
        return ""
    when = when.astimezone()
    today = (now or datetime.now(timezone.utc)).astimezone().date()
    return when.strftime("%H:%M") if when.date() == today else when.strftime("%Y-%m-%d %H:%M")


def phase(job: dict) -> str:
    """What the job is doing: queued, starting, pretraining, ball track, training, inference,
    finishing; or how it ended (done, failed, cancelled)."""
    if job["status"] != "running":
        return job["status"]
    message = job.get("message") or ""
    for name, pattern in _PHASES:
        if pattern.search(message):
            return name
    return "inference" if job["kind"] == "infer" else "running"


def epoch(job: dict) -> tuple[int, int] | None:
    """``(epoch, epochs)`` while a retrain is in its epochs, from its latest progress line."""
    match = _EPOCH.search(job.get("message") or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def eta_seconds(job: dict, now: datetime | None = None) -> float | None:
    """Time left of a running job, assuming the rest goes at the pace so far (None when too
    early to tell, or not running)."""
    started = _parse_time(job.get("started"))
    fraction = float(job.get("progress") or 0)
    if job["status"] != "running" or started is None or fraction < _MIN_FRACTION_FOR_ETA or fraction >= 1:
        return None
    elapsed = ((now or datetime.now(timezone.utc)) - started).total_seconds()
    return max(0.0, elapsed * (1 - fraction) / fraction)


def job_view(job: dict, now: datetime | None = None, public=str) -> dict:
    """One job for the Models tab: ``id``, ``kind``, ``status``, ``phase``, ``percent`` (0-100,
    whole), ``epoch`` (``"3/20"`` or None), ``left`` (``"about 4 min left"`` or ""),
    ``started`` (local time), ``took`` (run time of a finished job), ``message`` (the error of a
    failed one), ``cancellable``. ``public`` rewrites text a remote user must not see (paths)."""
    now = now or datetime.now(timezone.utc)
    ep = epoch(job) if job["status"] == "running" else None
    eta = eta_seconds(job, now)
    started, finished = _parse_time(job.get("started")), _parse_time(job.get("finished"))
    took = duration((finished - started).total_seconds()) if started and finished else ""
    text = job.get("error") if job["status"] == "failed" and job.get("error") else job.get("message") or ""
    return {
        "id": job["id"], "kind": job["kind"], "status": job["status"], "phase": phase(job),
        "percent": int(100 * float(job.get("progress") or 0)) if job["status"] != "done" else 100,
        "epoch": f"{ep[0]}/{ep[1]}" if ep else None,
        "left": f"about {duration(eta)} left" if eta is not None else "",
        "started": local_time(job.get("started") or job.get("created"), now), "took": took,
        "message": public(text)[:300], "cancellable": job["status"] in CANCELLABLE,
    }
