"""Active learning: what a reviewer should look at next, and why.

Three kinds of items, each with its reasons, ranked by one priority in 0..1:

* uncertain predictions (pending): confidence close to the decision threshold, the flipped
  and unflipped views disagreeing (TTA), or the previous model version disagreeing (no
  prediction of the class within +-2 frames, or a very different confidence);
* candidate missed events: peaks of a class's score curve just under the prediction height,
  with no label or prediction of that class near;
* consistency flags on the labels: an OUT with no restart after it, a GOAL with no SHOT or
  HEADER before it, two labels of one class within 3 frames.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.signal import find_peaks

from core.infer import InferConfig, load_curves, smooth
from core.labels import CLASSES, FPS, clock
from core.store import Store
from core.versions import nearest
from core.workspace import Workspace


@dataclass
class QueueConfig:
    #: Confidence where the model is least sure (a prediction at it is a coin toss).
    threshold: float = 0.5
    #: Missed-event candidates: curve peaks from ``low`` up to the prediction height.
    low: float = 0.05
    #: At most this many missed-event candidates per game, the highest peaks: the rest are
    #: noise under the cut that would bury the useful items.
    max_missed: int = 25
    near: int = 12  # frames: "a label or prediction near"
    carry: int = 2  # frames: the same event in two versions
    restart_s: float = 20.0
    goal_before_s: float = 5.0
    duplicate_frames: int = 3


@dataclass
class QueueItem:
    kind: str  # uncertain | missed | consistency
    game_id: int
    game: str
    frame: int
    label: str
    team: str | None
    priority: float
    reasons: list[str] = field(default_factory=list)
    event_id: str | None = None  # "p12" / "l34" when the item is a stored event
    confidence: float | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "clock": clock(self.frame)}


def previous_version(store: Store, version: str) -> str | None:
    """The version this one was trained from, else the one registered before it."""
    models = store.models()
    row = next((m for m in models if m["version"] == version), None)
    if row is None:
        return None
    if row["parent"]:
        return row["parent"]
    earlier = [m["version"] for m in models if m["id"] < row["id"]]
    return earlier[-1] if earlier else None


def _uncertain(store: Store, workspace: Workspace, game: dict, version: str, cfg: QueueConfig) -> list[QueueItem]:
    preds = [p for p in store.predictions(game["id"], version) if p["status"] == "pending"]
    if not preds:
        return []
    path = workspace.scores_path(version, game["id"])
    gap = load_curves(path).flip_gap if path.is_file() else None
    prev = previous_version(store, version)
    prev_preds = store.predictions(game["id"], prev) if prev else []
    if not prev_preds:
        prev = None  # the earlier version never scored this game: nothing to disagree with
    items = []
    for p in preds:
        closeness = 1 - abs(p["confidence"] - cfg.threshold) / max(cfg.threshold, 1 - cfg.threshold)
        reasons = ([f"confidence {p['confidence']:.2f}: a coin toss for the model (it is least sure at "
                    f"{cfg.threshold:.2f})"] if closeness > 0.6 else [])
        scores = [closeness]
        if gap is not None and p["frame"] < len(gap):
            g = float(gap[max(0, p["frame"] - 2):p["frame"] + 3, CLASSES.index(p["label"])].max())
            scores.append(min(1.0, 2 * g))
            if g >= 0.15:
                reasons.append(f"the flipped view disagrees by {g:.2f}")
        if prev:
            same = nearest(prev_preds, p["frame"], p["label"], cfg.carry)
            if same is None:
                scores.append(1.0)
                reasons.append(f"new in {version}: {prev} did not predict it")
            else:
                d = abs(same["confidence"] - p["confidence"])
                scores.append(min(1.0, 2 * d))
                if d >= 0.2:
                    reasons.append(f"{prev} said {same['confidence']:.2f}")
        if not reasons:
            reasons.append(f"confidence {p['confidence']:.2f}")
        items.append(QueueItem("uncertain", game["id"], game["url_local"], p["frame"], p["label"], p["team"],
                               float(np.mean(scores)), reasons, f"p{p['id']}", p["confidence"]))
    return items


def _missed(store: Store, workspace: Workspace, game: dict, version: str, cfg: QueueConfig,
            height: float) -> list[QueueItem]:
    path = workspace.scores_path(version, game["id"])
    if not path.is_file():
        return []
    scores = load_curves(path).scores
    infer = InferConfig(height=height)
    known: dict[str, np.ndarray] = {}
    for row in [*store.labels(game["id"]), *store.predictions(game["id"], version)]:
        known.setdefault(row["label"], [])
        known[row["label"]].append(row["frame"])
    items = []
    for c, label in enumerate(CLASSES):
        # On the curve the event picker used: a peak under its cut is what it did not report.
        peaks, props = find_peaks(smooth(scores[:, c], infer), height=(cfg.low, height), distance=cfg.near)
        frames = np.array(known.get(label, []))
        for f, h in zip(peaks, props["peak_heights"]):
            if len(frames) and np.abs(frames - f).min() <= cfg.near:
                continue
            # Ranked below a coin-toss prediction: a guess about nothing the model claimed.
            items.append(QueueItem("missed", game["id"], game["url_local"], int(f), label, None,
                                   float(0.3 + 0.5 * h / height),
                                   [f"{label} score peaks at {h:.3f}, just under the {height:.2f} at which the "
                                    "model reports an event; nothing labelled near"]))
    items.sort(key=lambda it: -it.priority)
    return items[:cfg.max_missed]


def _consistency(store: Store, game: dict, cfg: QueueConfig, version: str | None = None) -> list[QueueItem]:
    """Flags on the labels, raised only where the neighbourhood is decided: a pending prediction
    near an event may be the very restart or shot the rule misses, so nothing is flagged there
    until it is accepted or rejected."""
    labels = store.labels(game["id"])
    pending = [p for p in store.predictions(game["id"], version) if p["status"] == "pending"] if version else []

    def undecided(classes: set[str], start: float, end: float) -> bool:
        return any(p["label"] in classes and start <= p["frame"] <= end for p in pending)
    items = []
    restarts = {"THROW IN", "FREE KICK", "PASS", "HIGH PASS", "CROSS"}
    shots = {"SHOT", "HEADER"}
    for i, lab in enumerate(labels):
        after = [x for x in labels[i + 1:] if x["frame"] - lab["frame"] <= cfg.restart_s * FPS]
        if lab["label"] == "OUT" and not any(x["label"] in restarts for x in after) and \
                not undecided(restarts, lab["frame"], lab["frame"] + cfg.restart_s * FPS):
            items.append(_flag(game, lab, f"OUT with no restart (throw-in, free kick, pass) in the next "
                                          f"{cfg.restart_s:.0f} s"))
        if lab["label"] == "GOAL" and not any(x["label"] in shots and 0 <= lab["frame"] - x["frame"]
                                              <= cfg.goal_before_s * FPS for x in labels[:i]) and \
                not undecided(shots, lab["frame"] - cfg.goal_before_s * FPS, lab["frame"]):
            items.append(_flag(game, lab, f"GOAL with no SHOT or HEADER in the {cfg.goal_before_s:.0f} s before"))
        for x in labels[i + 1:]:
            if x["frame"] - lab["frame"] > cfg.duplicate_frames:
                break
            if x["label"] == lab["label"]:
                items.append(_flag(game, x, f"two {lab['label']} labels {x['frame'] - lab['frame']} frame(s) apart"))
    return items


def _flag(game: dict, lab: dict, reason: str) -> QueueItem:
    return QueueItem("consistency", game["id"], game["url_local"], lab["frame"], lab["label"], lab["team"], 0.9,
                     [reason], f"l{lab['id']}")


def review_queue(store: Store, workspace: Workspace, version: str | None, *, games: list[int] | None = None,
                 config: QueueConfig | None = None, limit: int | None = 200) -> list[QueueItem]:
    """The queue over ``games`` (default: all), most useful first."""
    cfg = config or QueueConfig()
    height = InferConfig().height
    items: list[QueueItem] = []
    for g in store.games():
        if games is not None and g["id"] not in games:
            continue
        if version:
            items += _uncertain(store, workspace, g, version, cfg)
            items += _missed(store, workspace, g, version, cfg, height)
        items += _consistency(store, g, cfg, version)
    items.sort(key=lambda it: (-it.priority, it.game_id, it.frame))
    return items[:limit] if limit else items
