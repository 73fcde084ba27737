"""Active learning: what a reviewer should look at next, and why.

Three kinds of items, each with its reasons, ranked by one priority in 0..1:

* uncertain predictions (pending): confidence close to the decision threshold, the flipped
  and unflipped views disagreeing (TTA), or the previous model version disagreeing (no
  prediction of the class within +-2 frames, or a very different confidence);
* candidate missed events: peaks of a class's score curve just under the prediction height,
  with no label or prediction of that class near;
* consistency flags on the labels: an OUT with no restart after it, a GOAL with no SHOT or
  HEADER before it, two labels of one class within 3 frames.

What was decided is not asked again: a missed-event candidate near a rejected prediction of its
class (of any version: ``versions.remembered``) is left out, and one the reviewer dismissed is
stored as the model's rejected sub-threshold prediction (``dismiss_missed``), a hard negative.
Two refinements spread the reviewer's time (``bench/active.py`` measures them against the plain
ranking): items of rarer classes rank higher (``rare_boost``), and an item within
``spacing_s`` of a higher one in the same game waits until the items elsewhere were offered
(one decision already shows what happens there).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.signal import find_peaks

from core.errors import BallspotError
from core.infer import InferConfig, load_curves, smooth
from core.labels import CLASSES, FPS, TARGET_SOURCES, clock
from core.nearby import FrameIndex
from core.store import Store
from core.versions import remembered
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
    #: Rare classes first: an item's priority is scaled by ``(1 + rare_boost * rarity) / (1 +
    #: rare_boost)``, rarity 0 for the most labelled class up to 1 for one never labelled. The
    #: rare classes are the weakest (fewest examples); 0 turns it off.
    rare_boost: float = 1.0
    #: Seconds: an item this close to a higher-ranked item of the same game comes after the items
    #: elsewhere (the same play seldom teaches twice); 0 turns it off.
    spacing_s: float = 4.0


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
    earlier = FrameIndex(prev_preds)
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
            same = earlier.nearest(p["frame"], cfg.carry, p["label"])
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
    known: dict[str, list[int]] = {}
    # Labelled, predicted, or rejected before on any version (a decided event is not asked again).
    rejected = [d for d in remembered(store, game["id"]) if d["status"] == "rejected"]
    for row in [*store.labels(game["id"]), *store.predictions(game["id"], version), *rejected]:
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
                                    "model reports an event; nothing labelled near"], confidence=float(h)))
    items.sort(key=lambda it: -it.priority)
    return items[:cfg.max_missed]


def _consistency(store: Store, game: dict, cfg: QueueConfig, version: str | None = None) -> list[QueueItem]:
    """Flags on the labels, raised only where the neighbourhood is decided: a pending prediction
    near an event may be the very restart or shot the rule misses, so nothing is flagged there
    until it is accepted or rejected."""
    labels = store.labels(game["id"])  # by frame
    frames = [lab["frame"] for lab in labels]
    pending = FrameIndex(p for p in store.predictions(game["id"], version) if p["status"] == "pending") \
        if version else FrameIndex()

    def undecided(classes: set[str], start: int, end: int) -> bool:
        return any(p["label"] in classes for p in pending.between(start, end))
    items = []
    restarts = {"THROW IN", "FREE KICK", "PASS", "HIGH PASS", "CROSS"}
    shots = {"SHOT", "HEADER"}
    # Whole frames, ends included: 1.16 s is 29 frames, though 1.16 * 25 is 28.999999999999996.
    restart, goal_before = round(cfg.restart_s * FPS), round(cfg.goal_before_s * FPS)
    for i, lab in enumerate(labels):
        after = labels[i + 1:bisect_right(frames, lab["frame"] + restart)]
        if lab["label"] == "OUT" and not any(x["label"] in restarts for x in after) and \
                not undecided(restarts, lab["frame"], lab["frame"] + restart):
            items.append(_flag(game, lab, f"OUT with no restart (throw-in, free kick, pass) in the next "
                                          f"{cfg.restart_s:.0f} s"))
        before = labels[bisect_left(frames, lab["frame"] - goal_before):i]
        if lab["label"] == "GOAL" and not any(x["label"] in shots for x in before) and \
                not undecided(shots, lab["frame"] - goal_before, lab["frame"]):
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


def rarity(store: Store) -> dict[str, float]:
    """Per class, 0 for the most labelled class up to 1 for a class with no label (training's
    labels over every game: what the model has seen least)."""
    counts = dict.fromkeys(CLASSES, 0)
    for g in store.games():
        for lab in store.labels(g["id"], sources=TARGET_SOURCES):
            counts[lab["label"]] += 1
    top = max(counts.values()) or 1
    return {c: 1 - n / top for c, n in counts.items()}


def _boost_rare(items: list[QueueItem], rare: dict[str, float], boost: float) -> None:
    if boost <= 0:
        return
    for it in items:
        if it.kind == "consistency":
            continue
        r = rare.get(it.label, 0.0)
        it.priority = float(it.priority * (1 + boost * r) / (1 + boost))
        if r >= 0.8:
            it.reasons.append(f"{it.label} is rare in the labels (the model has seen few)")


def _spread(items: list[QueueItem], spacing: int) -> list[QueueItem]:
    """Items in priority order, each one within ``spacing`` frames of an earlier one of its game
    moved after the items elsewhere (their order kept)."""
    if spacing <= 0:
        return items
    first, later = [], []
    taken: dict[int, list[int]] = {}  # per game, the frames of the items kept first, sorted
    for it in items:
        frames = taken.setdefault(it.game_id, [])
        at = bisect_right(frames, it.frame - spacing)  # the first frame after frame - spacing
        if at < len(frames) and frames[at] < it.frame + spacing and it.kind != "consistency":
            later.append(it)
        else:
            first.append(it)
            insort(frames, it.frame)
    return first + later


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
    _boost_rare(items, rarity(store) if cfg.rare_boost > 0 else {}, cfg.rare_boost)
    items.sort(key=lambda it: (-it.priority, it.game_id, it.frame))
    items = _spread(items, int(round(cfg.spacing_s * FPS)))
    return items[:limit] if limit else items


def dismiss_missed(store: Store, version: str, item: QueueItem, *, reviewer: str | None = None,
                   team: str | None = None) -> dict:
    """The reviewer looked at a missed-event candidate and nothing of its class happened there:
    keep that as ``version``'s prediction of the peak (its height as confidence, under the cut),
    rejected, in one transaction. So the queue does not offer it again (a rejected event is
    remembered), training takes it as a hard negative, and a later version predicting it again
    gets it rejected (``versions.carry_over``). Returns the rejected prediction."""
    if item.kind != "missed":
        raise BallspotError(f"only a missed-event candidate is dismissed (this item is {item.kind!r})")
    with store.transaction():
        side = team or next((p["team"] for p in store.predictions(item.game_id, version)), "home")
        store.add_predictions(version, item.game_id, [(item.frame, item.label, side, item.confidence or 0.0)],
                              replace=False)
        row = next(p for p in reversed(store.predictions(item.game_id, version))
                   if p["frame"] == item.frame and p["label"] == item.label and p["status"] == "pending")
        return store.reject(row["id"], reviewer=reviewer)
