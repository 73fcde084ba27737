"""Model versions: which one is active, how a new one compares, how review decisions carry
over to its predictions, what changed between two versions' predictions, and the learning
curve of the whole history.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import BallspotError
from core.formats import annotation_dict, prediction_dict
from core.labels import REVIEW_SOURCES, TARGET_SOURCES
from core.metrics import VALID_MAP, GameEvents, MapResult, average_map
from core.nearby import FrameIndex
from core.store import Store
from core.workspace import Workspace

ACTIVE_SETTING = "active_model"


def active_version(store: Store) -> str | None:
    """The model version whose predictions are reviewed: the setting; where it was never set,
    the newest model (a workspace whose models were all registered by hand, e.g. a single one).
    ``register_version`` pins the setting before it registers, so a new version never becomes
    active by merely being the newest: only ``activate`` (or ``hand_over``) makes it active."""
    chosen = store.setting(ACTIVE_SETTING)
    models = [m["version"] for m in store.models()]
    if chosen in models:
        return chosen
    return models[-1] if models else None


def review_progress(store: Store, version: str | None = None) -> dict[int, tuple[int, int]]:
    """(reviewed, total) per game id, of the active version (or ``version``): the one definition
    of review progress, for the picker, the Games tab and ``launch.py games``.

    The items are the version's predictions and, on the games it predicted, the review decisions
    made on other versions' predictions of events it no longer predicts (``remembered``, matched
    one to one as ``carry_over`` matches them): those decisions stand, so activating a version
    never lowers the count of reviewed items (``hand_over`` carries the rest)."""
    version = version or active_version(store)
    if version is None:
        return {}
    out: dict[int, list[int]] = {}
    for r in store.prediction_counts(version):
        done_total = out.setdefault(r["game_id"], [0, 0])
        done_total[1] += r["n"]
        if r["status"] != "pending":
            done_total[0] += r["n"]
    decided = {r["game_id"] for r in store.prediction_counts() if r["status"] != "pending"}
    for gid in decided & out.keys():
        memory = remembered(store, gid)
        if any(e["model_version"] not in (None, version) for e in memory):
            _, unmatched = same_events(memory, store.predictions(gid, version))
            kept = sum(1 for e in unmatched if e["id"] is not None)  # decisions on predictions
            out[gid][0] += kept
            out[gid][1] += kept
    return {gid: (done, total) for gid, (done, total) in out.items()}


def set_active(store: Store, version: str) -> None:
    """Write the setting. Low level: switching the reviewed version goes through ``activate``
    (which carries the review decisions over and re-infers first where needed)."""
    store.model(version)  # must exist
    store.set_setting(ACTIVE_SETTING, version)


def register_version(store: Store, version: str, **fields) -> dict:
    """Register a model version (``Store.register_model``'s fields) without making it active.

    In the same transaction the active setting is pinned to the version active now: where the
    setting was unset, the newest-model fallback would otherwise pick the new one the moment it
    exists, with no predictions yet (a cancelled retrain would leave it active). The first
    version of a workspace has nothing to pin and is active, being the only one."""
    with store.transaction():
        current = active_version(store)
        if current is not None and store.setting(ACTIVE_SETTING) != current:
            set_active(store, current)
        return store.register_model(version, **fields)


def unscored_games(store: Store, previous: str | None, version: str) -> list[str]:
    """Games ``previous`` has predictions on and ``version`` has not: what to re-infer when
    ``version`` takes over, so the review screen always shows the active model."""
    if not previous:
        return []
    todo = store.predicted_games(previous) - store.predicted_games(version)
    return [g["url_local"] for g in store.games() if g["id"] in todo]


def valid_map(row: dict) -> float | None:
    return row["metrics"].get(VALID_MAP)


def measure_review_cut(store: Store, version: str, games: list[str]) -> float | None:
    """The review cut of ``version`` from its stored predictions on ``games`` and their labels
    (``core.effort.best_cut``; None when none is labelled): for the demo model, and after an
    inference, whose confidences (with flip TTA) are not validation's."""
    from core.effort import best_cut

    rows = [store.game(name) for name in games]
    return best_cut([(store.predictions(g["id"], version), store.labels(g["id"]), int(g["frame_count"] or 0))
                     for g in rows])


def review_cut(store: Store, version: str | None) -> float | None:
    """The confidence at or above which reviewing ``version``'s predictions cost an analyst
    least on its validation games (training measures it: ``core.effort.best_cut``); None
    without a version, or for one trained before it was measured."""
    value = store.model(version)["metrics"].get("review_cut") if version else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare(store: Store, new: str, old: str | None) -> dict:
    """Validation mAP@1, overall and per class, of a new version beside the one it replaces."""
    a = store.model(new)["metrics"]
    b = store.model(old)["metrics"] if old else {}
    classes = sorted(set(a.get("per_class", {})) | set(b.get("per_class", {})))

    def measured(metrics: dict, c: str) -> float | None:
        """A class's AP, or None where validation had no event of it (nothing was measured;
        metrics from before support was recorded count every class as measured)."""
        if metrics.get("support", {}).get(c, 1) == 0:
            return None
        return metrics.get("per_class", {}).get(c)
    return {"new": new, "old": old, "map_new": a.get(VALID_MAP), "map_old": b.get(VALID_MAP),
            "per_class": [{"class": c, "new": measured(a, c), "old": measured(b, c)} for c in classes]}


def not_worse(store: Store, new: str, old: str | None) -> bool:
    """Whether a new version may replace the active one without asking."""
    if old is None:
        return True
    m_new, m_old = valid_map(store.model(new)), valid_map(store.model(old))
    return m_new is not None and (m_old is None or m_new >= m_old)


def decisions(store: Store, game: int | str, version: str) -> list[dict]:
    """A version's decided predictions on a game, each with the label its acceptance made
    (so a corrected frame, class or team carries over too)."""
    labels = {lab["prediction_id"]: lab for lab in store.labels(game) if lab["prediction_id"]}
    return [{**p, "made": labels.get(p["id"])} for p in store.predictions(game, version) if p["status"] != "pending"]


def remembered(store: Store, game: int | str, window: int = 2) -> list[dict]:
    """Every review decision on a game, whichever version's prediction it was made on: one entry
    per event, accepted ones first, each kind newest first (the order ``carry_over`` applies them).

    Accepted events are the reviewed labels (``REVIEW_SOURCES``: added by hand, or made by an
    accept), each with the frames where a prediction of it may stand (``keys``: the label's own,
    then those of the predictions accepted into it, which may lie a few frames off where the
    analyst moved them). Rejected events are the rejected predictions, the newest decision of
    each event (same class within ``window`` frames), left out where a reviewed label of the
    class stands within ``window`` (the event happened: the label is the answer). Entries carry
    what ``carry_over`` reads (id, frame, label, team, status, reviewer, made) and the version
    decided on (``model_version``; None for a label added by hand)."""
    labels = store.labels(game, sources=REVIEW_SOURCES)
    by_label = FrameIndex(labels)
    made_by: dict[int, dict] = {}  # a prediction's id -> the first label its accept made
    for lab in labels:
        if lab["prediction_id"]:
            made_by.setdefault(lab["prediction_id"], lab)
    decided = [p for p in store.predictions(game) if p["status"] != "pending"]
    newest = sorted(decided, key=lambda p: (p["reviewed"] or "", p["id"]), reverse=True)
    makers: dict[int, list[dict]] = {}
    for p in newest:
        if p["status"] != "accepted":
            continue
        # Its label: the one it made, else (a re-run unlinks labels from replaced predictions)
        # the reviewed label of its class nearest to it; none means the accept was undone.
        made = made_by.get(p["id"]) or by_label.nearest(p["frame"], window, p["label"])
        if made is not None:
            makers.setdefault(made["id"], []).append(p)
    accepted = []
    for lab in sorted(labels, key=lambda r: (r["updated"] or "", r["id"]), reverse=True):
        preds = makers.get(lab["id"], [])
        first = preds[0] if preds else None
        accepted.append({"id": first["id"] if first else None, "frame": lab["frame"], "label": lab["label"],
                         "team": lab["team"], "status": "accepted",
                         "reviewer": (first["reviewer"] if first else None) or lab["author"], "made": lab,
                         "model_version": first["model_version"] if first else None,
                         "keys": [(lab["frame"], lab["label"])] + [(p["frame"], p["label"]) for p in preds]})
    rejected: list[dict] = []
    rejected_by = FrameIndex()
    for p in newest:
        if p["status"] != "rejected" or by_label.nearest(p["frame"], window, p["label"]) or \
                rejected_by.nearest(p["frame"], window, p["label"]):
            continue
        rejected.append({**p, "made": None, "keys": [(p["frame"], p["label"])]})
        rejected_by.add(rejected[-1])
    return accepted + rejected


def same_events(decided: list[dict], predictions: list[dict], window: int = 2,
                ) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """Pair decisions with predictions of the same event (same class, within ``window`` frames
    of one of the decision's ``keys``), one to one, in the decisions' order; returns the pairs
    and the decisions no prediction is the event of."""
    taken: set[int] = set()
    pairs, unmatched = [], []
    index = FrameIndex(predictions)
    for d in decided:
        match = None
        for frame, label in d.get("keys") or [(d["frame"], d["label"])]:
            match = index.nearest(frame, window, label, taken)
            if match is not None:
                break
        if match is None:
            unmatched.append(d)
        else:
            taken.add(match["id"])
            pairs.append((d, match))
    return pairs, unmatched


def carry_over(store: Store, game: int | str, decided: list[dict], new: str, window: int = 2,
               reviewer: str | None = None, source: str = "") -> int:
    """Review decisions (``decisions(...)`` of an earlier run, or ``remembered``) apply to
    ``new``'s predictions of the same event (``same_events``): accepted stays accepted (with its
    corrections), rejected stays rejected. A prediction ``new`` has already decided keeps its own
    decision. One store operation; returns how many carried."""
    if not decided:
        return 0
    pairs, _ = same_events(decided, store.predictions(game, new), window)
    plan = []
    for p, match in pairs:
        if match["status"] != "pending":
            continue
        made = p.get("made")
        fix = {k: made[k] for k in ("frame", "label", "team")} if p["status"] == "accepted" and made else {}
        plan.append((match["id"], p["status"], p["reviewer"] or reviewer, fix))
    if plan:
        store.carry_decisions(game, plan, f"{len(plan)} review decisions carried over to {new}"
                              + (f" from {source}" if source else ""))
    return len(plan)


def carry_all(store: Store, version: str, source: str | None, games: list[int | str],
              author: str | None = None) -> int:
    """The review decisions on ``games``, read now, carried over to ``version``'s pending
    predictions (``carry_over``): every decision ``remembered``, whichever version it was made on,
    so one that ``source`` (the active version) no longer predicted is not lost to the next. Nothing
    when there is no other version to carry from (a version's own decisions survive its re-run in
    ``runner.store_run``)."""
    if not source or source == version:
        return 0
    return sum(carry_over(store, g, remembered(store, g), version, reviewer=author,
                          source="the review history") for g in games)


@dataclass
class Handover:
    """What ``hand_over`` did."""

    carried: int
    activated: bool
    #: The active version afterwards.
    active: str | None


def hand_over(store: Store, version: str, source: str | None, games: list[int | str], *, activate: bool,
              author: str | None = None) -> Handover:
    """Carry ``source``'s review decisions on ``games`` over to ``version`` and, with
    ``activate``, make ``version`` the active model: ONE store transaction, so both happen or
    neither (a cancel or a kill before the commit leaves ``source`` active, its predictions and
    decisions as they were).

    The decisions are read inside the transaction: one an analyst made on ``source`` while
    ``version`` was inferring is carried too. Activating carries them on every game both
    versions have predictions on, not only ``games`` (a version whose inference was cancelled
    half-way keeps the games it had scored). ``version`` is activated only while ``source`` (or
    ``version`` itself) is still the active model: another version activated meanwhile stays."""
    with store.transaction():
        ids = {store.game(g)["id"] for g in games}
        if activate and source:
            ids |= store.predicted_games(source) & store.predicted_games(version)
        carried = carry_all(store, version, source, sorted(ids), author)
        current = active_version(store)
        activated = activate and current in (source, version)
        if activated:
            set_active(store, version)  # also pins a version active only by the fallback
        return Handover(carried, activated, version if activated else current)


@dataclass
class Activation:
    """What ``activate`` did, for the screen that asked."""

    version: str
    previous: str | None
    #: Whether ``version`` is the active model now.
    activated: bool
    #: The inference job that makes ``version`` active when it finishes (None: no job needed).
    job: dict | None
    carried: int
    message: str


def activate(store: Store, workspace: Workspace, version: str, author: str | None = None) -> Activation:
    """Make ``version`` the active model: the one way a user does it (the Models tab).

    The review screen must never show an active version without predictions, nor lose a review
    decision: when ``version`` has predictions on every game the active one has, it becomes
    active at once, the decisions carried over in the same transaction; otherwise an inference
    job on the missing games is queued that activates it when it finishes (``InferParams.
    activate``), and the active version stays until then."""
    from core.jobs import refresh, submit  # jobs imports this module

    store.model(version)  # must exist
    previous = active_version(store)
    if previous == version:
        return Activation(version, previous, True, None, 0, f"{version} is already the active model.")
    missing = unscored_games(store, previous, version)
    if not missing:
        done = hand_over(store, version, previous, [], activate=True, author=author)
        if not done.activated:
            raise BallspotError(f"{done.active} became the active model meanwhile; {version} was not activated")
        carried = f" {done.carried} review decision(s) carried over from {previous}." if done.carried else ""
        return Activation(version, previous, True, None, done.carried, f"{version} is now the active model.{carried}")
    job = pending_activation(store, version) or submit(store, "infer", {
        "version": version, "games": missing, "carry_from": previous, "activate": True, "author": author})
    refresh(store, workspace)
    return Activation(version, previous, False, job, 0,
                      f"{version} is now queued for inference on {len(missing)} game(s) {previous} predicted "
                      f"(job {job['id']}); it becomes the active model when that job finishes, with the review "
                      f"decisions carried over. Until then {previous} stays active.")


def pending_activations(store: Store) -> dict[str, dict]:
    """Version -> the queued or running inference job that will make it active at its end."""
    pending = {}
    for job in reversed(store.jobs(limit=200)):  # oldest first: the first one queued wins
        params = job["params"]
        if job["kind"] == "infer" and job["status"] in ("queued", "running") and params.get("activate"):
            pending.setdefault(params.get("version"), job)
    return pending


def pending_activation(store: Store, version: str) -> dict | None:
    """The job that will activate ``version``, if any (so a second click queues none)."""
    return pending_activations(store).get(version)


@dataclass
class DiffEntry:
    change: str  # new | gone | moved | reclassified
    frame: int
    label: str
    old_frame: int | None = None
    old_label: str | None = None
    confidence: float | None = None


def diff(store: Store, game: int | str, old: str, new: str, window: int = 12) -> list[DiffEntry]:
    """What changed between two versions' predictions on a game: predictions of the same class
    at the same frame are unchanged; within ``window`` frames, moved; another class within 2
    frames, reclassified; otherwise new (only in ``new``) or gone (only in ``old``)."""
    if old == new:
        raise BallspotError("compare two different versions")
    a, b = store.predictions(game, old), store.predictions(game, new)
    left, right = {p["id"]: p for p in a}, {p["id"]: p for p in b}
    old_index, paired = FrameIndex(a), set()  # paired: ids of ``old``'s predictions no longer in ``left``
    out: list[DiffEntry] = []
    for rule in ("same", "moved", "reclassified"):
        for q in list(right.values()):
            if rule == "reclassified":
                cands = [p for p in old_index.within(q["frame"], 2)
                         if p["label"] != q["label"] and p["id"] not in paired]
                p = min(cands, key=lambda p: abs(p["frame"] - q["frame"]), default=None)
            else:
                p = old_index.nearest(q["frame"], 0 if rule == "same" else window, q["label"], paired)
            if p is None:
                continue
            del left[p["id"]], right[q["id"]]
            paired.add(p["id"])
            if rule != "same":
                out.append(DiffEntry(rule, q["frame"], q["label"], p["frame"], p["label"], q["confidence"]))
    out += [DiffEntry("new", q["frame"], q["label"], confidence=q["confidence"]) for q in right.values()]
    out += [DiffEntry("gone", p["frame"], p["label"], p["frame"], p["label"], p["confidence"]) for p in left.values()]
    out.sort(key=lambda d: (d.frame, d.label))
    return out


def learning_curve(store: Store) -> list[dict]:
    """Every version with a validation score, oldest first: validation mAP@1 against the number of
    labels it learnt from (imported, added and accepted; ``reviewed_labels`` in its metrics), and
    whether it is the active one. A version registered from a folder without that count (trained
    elsewhere) has no place on the axis and is left out."""
    active = active_version(store)
    points = []
    for m in store.models():
        metrics = m["metrics"]
        if metrics.get(VALID_MAP) is None or metrics.get("reviewed_labels") is None:
            continue
        points.append({"version": m["version"], "labels": metrics["reviewed_labels"],
                       "valid_map": metrics[VALID_MAP], "parent": m["parent"], "created": m["created"],
                       "active": m["version"] == active})
    return points


def score_version(store: Store, version: str, games: list[int | str], metric: str = "at1") -> MapResult:
    """SoccerNet mAP of a version's stored predictions against the games' labels."""
    entries = []
    for game in games:
        g = store.game(game)
        labels = [annotation_dict(r["frame"], r["label"], r["team"], r["visibility"])
                  for r in store.labels(g["id"]) if r["source"] in TARGET_SOURCES]
        preds = [prediction_dict(p["frame"], p["label"], p["team"], p["confidence"])
                 for p in store.predictions(g["id"], version)]
        entries.append(GameEvents(g["url_local"], labels, preds))
    return average_map(entries, metric)
