"""What a training record means to a person: one formatter for every view of a run.

Training reports dict records (they are also the lines of a run's ``progress.jsonl``, which
the Models tab plots). The command line's bar and a background job's log and progress read
them through :func:`describe`, so both say the same thing in the same words.
"""
from __future__ import annotations

from dataclasses import dataclass

#: The share of a run's progress bar that comes before the epochs (pretraining, the track).
BEFORE_EPOCHS = 0.1


@dataclass(frozen=True)
class Update:
    """One record, read: where the run is and one line about it."""

    #: ``pretrain``, ``track``, ``step`` (inside an epoch), ``epoch`` (one ended) or ``note``
    #: (something skipped: worth a line of its own, not a position).
    kind: str
    #: How much of the run is done, 0 to 1.
    fraction: float
    text: str


def _map(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def describe(record: dict, epochs: int) -> Update:
    """Read one training record (see ``core.training.train`` and ``core.training.track``)."""
    phase = record.get("phase")
    if "skipped" in record:
        text = record["skipped"]
        return Update("note", 0.0, f"pretraining skipped: {text}" if phase == "pretrain" else text)
    if phase == "pretrain":
        accuracy = record.get("ball_cell_accuracy")
        found = "" if accuracy is None else f", ball found {accuracy:.0%}"
        return Update("pretrain", BEFORE_EPOCHS * record["step"] / record["steps"],
                      f"pretraining the encoder {record['step']}/{record['steps']}{found}")
    if phase == "track":
        if "step" in record:
            return Update("track", BEFORE_EPOCHS, f"the track classifier on every frame: step {record['step']}/"
                                                  f"{record['steps']}, loss {record['loss']:.4f}")
        return Update("track", BEFORE_EPOCHS, f"the ball's track of the training games: {record['game']}/"
                                              f"{record['games']}")
    share = (1 - BEFORE_EPOCHS) / max(1, epochs)
    if "valid_map" in record:
        speed = f", {record['samples_per_s']:.1f} samples/s" if "samples_per_s" in record else ""
        return Update("epoch", BEFORE_EPOCHS + share * record["epoch"],
                      f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f}, "
                      f"valid mAP@1 {_map(record['valid_map'])}{speed}")
    within = record["step"] / max(1, record["steps"])
    return Update("step", BEFORE_EPOCHS + share * (record["epoch"] - 1 + within),
                  f"epoch {record['epoch']}/{epochs} step {record['step']}/{record['steps']} "
                  f"loss {record['loss']:.4f}")
