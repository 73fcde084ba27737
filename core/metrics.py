"""SoccerNet's action-spotting metric, reimplemented to give exactly the official numbers.

Why our own: the official ``SoccerNet.Evaluation.ActionSpotting.evaluate`` reads folders
only, is slow (a Python loop over 200 thresholds and every prediction) and has no Team mAP.
This module follows it step for step, quirks included, and a test checks it against the
installed package to 1e-9:

* a position becomes the frame ``int(25 * (ms / 1000))`` in floating point (so some
  positions land one frame early), clamped to a 120-minute vector;
* one label and one prediction per (frame, class): a later prediction on the same frame
  overwrites an earlier one, whatever its confidence;
* per class, ground truth in time order each takes the highest-confidence unused prediction
  within ``delta / 2`` frames (``delta`` = tolerance in seconds x 25; first in time wins ties);
* precision and recall at 200 thresholds ``linspace(0, 1, 200)`` over all games, AP by
  11-point interpolation, mAP the mean over classes (a class without ground truth counts 0);
* ``tight`` averages mAP at 1..5 s and ``loose`` at 5, 10, ..., 60 s by the trapezoid rule.

Team mAP (the 2025 team task) follows sn-teamspotting's scorer (``util/eval.py``,
``mAPevaluateCodabench``, and ``util/score.py``), also checked to 1e-9: an AP per (class,
team), each class's AP their weighted mean, the mean over classes. Its weights are the sums
of the ground-truth vectors, where a "not shown" event counts -1 (a visible one +1). It scores
the vocabulary the labels use (home/away or left/right); a prediction naming another team
stops it, as the official scorer stops (a KeyError there).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core.errors import BallspotError
from core.labels import CLASSES, FPS, LABEL_FILE, PREDICTION_FILE, VISIBILITIES, common_team_vocabulary, metric_frame

#: Tolerances in seconds of each metric.
METRICS: dict[str, tuple[int, ...]] = {
    "at1": (1,), "at2": (2,), "at3": (3,), "at4": (4,), "at5": (5,),
    "tight": (1, 2, 3, 4, 5),
    "loose": tuple(range(5, 65, 5)),
}
THRESHOLDS = np.linspace(0, 1, 200)
#: The key of the validation mAP@1 in a model version's metrics and in a training record
#: (``progress.jsonl``, a checkpoint's history): one name for one number.
VALID_MAP = "valid_map@1"
RECALL_POINTS = np.arange(11) / 10


@dataclass
class GameEvents:
    """One game's ground truth and predictions, as in the JSON files (positions in ms)."""

    name: str
    labels: list[dict]
    predictions: list[dict] = field(default_factory=list)


@dataclass
class MapResult:
    metric: str
    mAP: float
    per_class: dict[str, float]
    #: Ground-truth events per class (a class with none scores 0 and still counts in the mean).
    support: dict[str, int]
    #: The two team names scored (Team mAP), None for class-only mAP.
    teams: tuple[str, str] | None = None


def _frame(position, framerate: int = FPS) -> int:
    """SoccerNet's vector index of a position: float conversion, clamped to 120 minutes, and a
    negative index wrapping to the end as numpy indexing does."""
    size = 120 * 60 * framerate
    f = min(metric_frame(int(position), framerate), size - 1)
    return f + size if f < 0 else f


def _half_of_label(a: dict) -> int:
    return int(str(a["gameTime"])[0]) if "gameTime" in a else 1


def _half_of_prediction(p: dict) -> int:
    return int(p.get("half", 1))


def _ground_truth(game: GameEvents, cls: str, team: str | None, framerate: int = FPS) -> dict[int, int]:
    """One class's ground-truth vector as SoccerNet fills it: position -> value, +1 for a
    visible event and -1 for one "not shown", a later label on the same frame overwriting.
    Halves 1 and 2 are separate vectors (BAS has only half 1); a position is
    ``half * 10**9 + frame`` so they never meet."""
    vector: dict[int, int] = {}
    for a in game.labels:
        half = _half_of_label(a)
        if a["label"] == cls and (team is None or a.get("team") == team) and half in (1, 2):
            unshown = a.get("visibility") == VISIBILITIES[1]
            vector[half * 10**9 + _frame(a["position"], framerate)] = -1 if unshown else 1
    return vector


def _class_vectors(game: GameEvents, cls: str, team: str | None, framerate: int = FPS
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground-truth positions, and prediction positions with their confidences, of one class,
    sorted, duplicates resolved as SoccerNet's vectors do (see :func:`_ground_truth`)."""
    gt = sorted(_ground_truth(game, cls, team, framerate))
    last: dict[int, float] = {}
    for p in game.predictions:
        half = _half_of_prediction(p)
        if p["label"] == cls and (team is None or p.get("team") == team) and half in (1, 2):
            last[half * 10**9 + _frame(p["position"], framerate)] = float(p["confidence"])  # later overwrites
    # SoccerNet keeps predictions with confidence >= 0 (the vector's empty value is -1).
    frames = np.array(sorted(f for f, c in last.items() if c >= 0), dtype=np.int64)
    scores = np.array([last[f] for f in frames], dtype=np.float64)
    return np.array(gt, dtype=np.int64), frames, scores


def _match(gt: np.ndarray, frames: np.ndarray, scores: np.ndarray, delta: float) -> np.ndarray:
    """Which predictions are true positives: each ground truth, in time order, takes the best
    unused prediction within delta / 2 (strictly higher confidence to replace; time breaks ties)."""
    hit = np.zeros(len(frames), dtype=np.float64)
    used = np.zeros(len(frames), dtype=bool)
    lo_all = np.searchsorted(frames, gt - delta / 2, side="left")
    hi_all = np.searchsorted(frames, gt + delta / 2, side="right")
    for lo, hi in zip(lo_all, hi_all):
        best, best_score = -1, -1.0
        for k in range(lo, hi):
            if scores[k] > best_score and not used[k]:
                best, best_score = k, scores[k]
        if best >= 0:
            hit[best] = 1.0
            used[best] = True
    return hit


def _average_precision(scores: np.ndarray, hits: np.ndarray, n_gt: int) -> float:
    """11-point interpolated AP from the 200-threshold precision/recall curve."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    tp_from = np.concatenate([np.cumsum(hits[order][::-1])[::-1], [0.0]])
    starts = np.searchsorted(sorted_scores, THRESHOLDS, side="left")
    count = len(scores) - starts
    tp = tp_from[starts]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / count)
        recall = np.nan_to_num(tp / n_gt) if n_gt else np.zeros_like(tp)
    ap = 0.0
    for j in RECALL_POINTS:
        reach = precision[recall >= j]
        ap += float(np.max(reach)) if reach.size else 0.0
    return ap / 11


def _ap_at(games: Sequence[GameEvents], cls: str, team: str | None, delta: float,
           framerate: int = FPS) -> tuple[float, int]:
    scores, hits, n_gt = [], [], 0
    for game in games:
        gt, frames, conf = _class_vectors(game, cls, team, framerate)
        scores.append(conf)
        hits.append(_match(gt, frames, conf, delta))
        n_gt += len(gt)
    return _average_precision(np.concatenate(scores), np.concatenate(hits), n_gt), n_gt


def _integrate(values: list[float]) -> float:
    """SoccerNet's average over tolerances: the trapezoid rule, or the value itself for one."""
    if len(values) == 1:
        return values[0]
    return sum((values[i] + values[i + 1]) / 2 for i in range(len(values) - 1)) / (len(values) - 1)


def average_map(games: Sequence[GameEvents], metric: str = "at1", classes: Sequence[str] = CLASSES,
                framerate: int = FPS) -> MapResult:
    """mAP of predictions against labels over ``games``, as SoccerNet's ``evaluate`` computes it."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    per_class, support = {}, {}
    for cls in classes:
        aps = []
        for tolerance in METRICS[metric]:
            ap, n = _ap_at(games, cls, None, tolerance * framerate, framerate)
            aps.append(ap)
        per_class[cls] = _integrate(aps)
        support[cls] = n
    mAPs = [float(np.mean([per_class[c] for c in classes]))] if classes else [0.0]
    return MapResult(metric, mAPs[0], per_class, support)


def label_teams(games: Sequence[GameEvents]) -> tuple[str, str] | None:
    """The team vocabulary the games' labels use (``core.labels.team_vocabulary``): one per
    game and the same in every game, else :class:`BallspotError` naming the games."""
    return common_team_vocabulary({f"{game.name}/{LABEL_FILE}": (a.get("team") for a in game.labels)
                                   for game in games})


def _check_prediction_teams(games: Sequence[GameEvents], teams: tuple[str, str]) -> None:
    """Every prediction of a scored class names one of ``teams``: sn-teamspotting's scorer
    looks up ``label-team`` in its table of 24 and stops on any other (KeyError); so do we,
    naming the predictions."""
    bad = [(game.name, i, p.get("team")) for game in games for i, p in enumerate(game.predictions)
           if p.get("label") in CLASSES and p.get("team") not in teams]
    if bad:
        listed = "; ".join(f"{name}/{PREDICTION_FILE}: predictions[{i}] team {team!r}" for name, i, team in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise BallspotError(f"{len(bad)} prediction(s) name a team the labels do not use ({'/'.join(teams)}): "
                            f"{listed}{more}")


def team_map(games: Sequence[GameEvents], teams: tuple[str, str] | None = None, metric: str = "at1",
             classes: Sequence[str] = CLASSES, framerate: int = FPS) -> MapResult:
    """Team mAP (the 2025 task), as sn-teamspotting scores it: AP per (class, team), each
    class's AP the mean of its two teams' weighted by their ground truth (visible events +1,
    "not shown" -1, the sum of SoccerNet's label vector), the mean over classes.

    ``teams``: the two team names to score; None scores the vocabulary the labels use
    (:func:`label_teams`; no labels: home/away). A prediction naming another team is an error.
    A class whose weights sum to 0 (no ground truth) scores 0, as in :func:`average_map`, where
    the official script divides by zero (NaN).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    teams = teams or label_teams(games) or ("home", "away")
    _check_prediction_teams(games, teams)
    per_class, support = {}, {}
    for cls in classes:
        weighted, total, count = 0.0, 0, 0
        for team in teams:
            aps, n = [], 0
            for tolerance in METRICS[metric]:
                ap, n = _ap_at(games, cls, team, tolerance * framerate, framerate)
                aps.append(ap)
            weight = sum(sum(_ground_truth(g, cls, team, framerate).values()) for g in games)
            weighted += _integrate(aps) * weight
            total += weight
            count += n
        per_class[cls] = weighted / total if total else 0.0
        support[cls] = count
    return MapResult(f"team-{metric}", float(np.mean(list(per_class.values()))), per_class, support, tuple(teams))


def _read_list(path: Path, key: str) -> list[dict]:
    try:
        return list(json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BallspotError(f"{path}: not a SoccerNet file ({type(exc).__name__}: {exc})") from None


def load_folders(labels_dir: str | Path, predictions_dir: str | Path,
                 label_file: str = LABEL_FILE, prediction_file: str = PREDICTION_FILE) -> list[GameEvents]:
    """Every game under ``labels_dir`` (a folder with a label file) with its predictions from
    the same relative folder under ``predictions_dir`` (none if that file is missing)."""
    labels_dir, predictions_dir = Path(labels_dir), Path(predictions_dir)
    games, missing = [], []
    for path in sorted(labels_dir.rglob(label_file)):
        rel = path.parent.relative_to(labels_dir)
        pred_path = predictions_dir / rel / prediction_file
        if not pred_path.is_file():
            missing.append(str(rel))
            continue
        games.append(GameEvents(str(rel), _read_list(path, "annotations"), _read_list(pred_path, "predictions")))
    if missing:
        # SoccerNet's evaluate stops on a missing file too: a silent zero would mislead.
        raise BallspotError(f"{predictions_dir}: no {prediction_file} for {len(missing)} game(s): "
                            + ", ".join(missing[:10]))
    return games
