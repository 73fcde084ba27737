"""What a training record means to a person: one formatter for every view of a run.

Training reports dict records (they are also the lines of a run's ``progress.jsonl``, which
the Models tab plots). The command line's bar and a background job's log and progress read
them through :func:`describe` as the :class:`core.progress.Step` every long task reports, so
both say the same thing in the same words.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from core.metrics import VALID_MAP
from core.progress import Progress, Step, at

if TYPE_CHECKING:
    from core.training.config import Records

#: The share of a run's progress bar that comes before the epochs (pretraining, the track).
BEFORE_EPOCHS = 0.1


def _map(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def record_map(record: dict) -> float | None:
    """A record's validation mAP@1; runs written before the key was unified say ``valid_map``."""
    return record[VALID_MAP] if VALID_MAP in record else record.get("valid_map")


def is_epoch(record: dict) -> bool:
    """Whether a record is an epoch's end (it carries a validation score, maybe None)."""
    return VALID_MAP in record or "valid_map" in record


def describe(record: dict, epochs: int) -> Step:
    """Read one training record (see ``core.training.train`` and ``core.training.track``)."""
    phase = record.get("phase")
    if "skipped" in record:
        text = record["skipped"]
        return at(0.0, f"pretraining skipped: {text}" if phase == "pretrain" else text, "note")
    if phase == "pretrain":
        accuracy = record.get("ball_cell_accuracy")
        found = "" if accuracy is None else f", ball found {accuracy:.0%}"
        return at(BEFORE_EPOCHS * record["step"] / record["steps"],
                   f"pretraining the encoder {record['step']}/{record['steps']}{found}")
    if phase == "track":
        if "step" in record:
            return at(BEFORE_EPOCHS, f"the track classifier on every frame: step {record['step']}/"
                                   f"{record['steps']}, loss {record['loss']:.4f}")
        return at(BEFORE_EPOCHS, f"the ball's track of the training games: {record['game']}/"
                                   f"{record['games']}")
    share = (1 - BEFORE_EPOCHS) / max(1, epochs)
    if is_epoch(record):
        speed = f", {record['samples_per_s']:.1f} samples/s" if "samples_per_s" in record else ""
        return at(BEFORE_EPOCHS + share * record["epoch"],
                   f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f}, "
                   f"valid mAP@1 {_map(record_map(record))}{speed}", "milestone")
    within = record["step"] / max(1, record["steps"])
    return at(BEFORE_EPOCHS + share * (record["epoch"] - 1 + within),
               f"epoch {record['epoch']}/{epochs} step {record['step']}/{record['steps']} "
               f"loss {record['loss']:.4f}")


def records_to(progress: Progress, epochs: int) -> Records:
    """Training's records callback reporting each record to ``progress`` as a step."""
    return lambda record: progress(describe(record, epochs))


def run_curve(run: str | Path) -> list[dict]:
    """A run's loss and validation mAP@1 per epoch, from its ``progress.jsonl``: rows of
    ``epoch``, ``value`` and ``series`` (``loss`` or ``valid mAP@1``), what the Models tab plots.
    No file yet (a run that has not finished an epoch): no rows."""
    log = Path(run) / "progress.jsonl"
    rows: list[dict] = []
    if not log.is_file():
        return rows
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if not is_epoch(record):
            continue
        rows.append({"epoch": record["epoch"], "value": record["loss"], "series": "loss"})
        if record_map(record) is not None:
            rows.append({"epoch": record["epoch"], "value": record_map(record), "series": "valid mAP@1"})
    return rows
