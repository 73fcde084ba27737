"""Our metric against SoccerNet's own evaluation, and the Team mAP on a hand-computed case."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from conftest import REAL_DATA, real_label_files
from core.labels import CLASSES, CLASS_INDEX, FPS, LABEL_FILE, PREDICTION_FILE
from core.metrics import GameEvents, average_map, load_folders, team_map


def _perturbed_predictions(labels: list[dict], rng: np.random.Generator) -> list[dict]:
    """Drop some events, shift the rest by 0 to 40 frames, relabel some, add spurious ones,
    and give everything random confidences (some on a shared frame: a later one overwrites)."""
    out = []
    for a in labels:
        if rng.random() < 0.2:
            continue
        shift = int(rng.integers(0, 41)) * int(rng.choice([-1, 1]))
        position = max(0, int(a["position"]) + shift * 40)
        label = a["label"] if rng.random() > 0.1 else CLASSES[int(rng.integers(len(CLASSES)))]
        out.append({"label": label, "position": str(position), "half": "1",
                    "confidence": float(np.round(rng.random(), 3)), "team": a["team"]})
    last = max(int(a["position"]) for a in labels)
    for _ in range(len(labels) // 10):
        out.append({"label": CLASSES[int(rng.integers(len(CLASSES)))],
                    "position": str(int(rng.integers(0, last)) // 40 * 40),
                    "half": "1", "confidence": float(rng.random()), "team": "home"})
    return out


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory):
    rng = np.random.default_rng(2024)
    root = tmp_path_factory.mktemp("metric")
    for path in real_label_files():
        doc = json.loads(path.read_text())
        rel = path.parent.relative_to(REAL_DATA)
        (root / "labels" / rel).mkdir(parents=True)
        (root / "labels" / rel / LABEL_FILE).write_text(path.read_text())
        (root / "preds" / rel).mkdir(parents=True)
        preds = {"UrlLocal": doc["UrlLocal"], "predictions": _perturbed_predictions(doc["annotations"], rng)}
        (root / "preds" / rel / PREDICTION_FILE).write_text(json.dumps(preds))
    return root


@pytest.mark.parametrize("metric", ["at1", "at2", "tight"])
def test_map_equals_soccernet_evaluate(perturbed, metric):
    from SoccerNet.Evaluation.ActionSpotting import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = evaluate(SoccerNet_path=str(perturbed / "labels"), Predictions_path=str(perturbed / "preds"),
                            prediction_file=PREDICTION_FILE, split="test", version=2, framerate=FPS, metric=metric,
                            label_files=LABEL_FILE, dataset=None, EVENT_DICTIONARY=dict(CLASS_INDEX))
    ours = average_map(load_folders(perturbed / "labels", perturbed / "preds"), metric)
    assert 0.05 < ours.mAP < 0.95, "the perturbation leaves a score worth comparing"
    assert abs(ours.mAP - official["a_mAP"]) < 1e-9
    for cls, theirs in zip(CLASSES, official["a_mAP_per_class"]):
        assert abs(ours.per_class[cls] - theirs) < 1e-9, cls


def _event(frame: int, label: str, team: str, confidence: float | None = None) -> dict:
    e = {"position": str(frame * 40), "label": label, "team": team}
    if confidence is not None:
        e["confidence"] = confidence
    return e


def test_team_map_by_hand():
    """PASS: home has 2 events, away 1; SHOT: away 1.
    PASS-home: predictions 0.9 (a hit) and 0.8 (a miss); the second home PASS is never found.
      Thresholds <= 0.8: p = 1/2, r = 1/2; thresholds in (0.8, 0.9]: p = 1, r = 1/2; recall never
      reaches 0.6, so AP = 6 points of precision 1 / 11 = 6/11.
    PASS-away: its one event found at 0.7 -> AP 1.
    SHOT: the away shot is predicted as home's -> SHOT-away AP 0; SHOT-home has no ground truth.
    Team AP(PASS) = (2 * 6/11 + 1 * 1) / 3, Team AP(SHOT) = 0, other classes 0 (no events).
    """
    labels = [_event(100, "PASS", "home"), _event(500, "PASS", "home"), _event(300, "PASS", "away"),
              _event(800, "SHOT", "away")]
    preds = [_event(103, "PASS", "home", 0.9), _event(700, "PASS", "home", 0.8),
             _event(298, "PASS", "away", 0.7), _event(800, "SHOT", "home", 0.95)]
    result = team_map([GameEvents("g", labels, preds)])
    pass_home = 6 / 11
    assert result.per_class["PASS"] == pytest.approx((2 * pass_home + 1 * 1.0) / 3, abs=1e-12)
    assert result.per_class["SHOT"] == 0.0
    assert result.mAP == pytest.approx(result.per_class["PASS"] / 12, abs=1e-12)
    # Without teams the same predictions find the SHOT.
    plain = average_map([GameEvents("g", labels, preds)])
    assert plain.support["PASS"] == 3 and plain.per_class["SHOT"] == 1.0


def test_halves_and_negative_positions_as_soccernet(tmp_path):
    """Halves are separate vectors, and a negative position wraps to the end of the vector."""
    from SoccerNet.Evaluation.ActionSpotting import evaluate

    labels = [{"gameTime": "1 - 00:04", "label": "PASS", "position": "4000", "team": "home", "visibility": "visible"},
              {"gameTime": "2 - 00:04", "label": "PASS", "position": "4000", "team": "home", "visibility": "visible"},
              {"gameTime": "1 - 00:00", "label": "SHOT", "position": "0", "team": "home", "visibility": "visible"}]
    preds = [{"label": "PASS", "position": "4000", "half": "1", "confidence": 0.9},
             {"label": "PASS", "position": "4040", "half": "2", "confidence": 0.4},
             {"label": "SHOT", "position": "-40", "half": "1", "confidence": 0.8}]
    game = tmp_path / "l" / "a" / "b" / "c"
    game.mkdir(parents=True)
    (game / LABEL_FILE).write_text(json.dumps({"annotations": labels}))
    pred = tmp_path / "p" / "a" / "b" / "c"
    pred.mkdir(parents=True)
    (pred / PREDICTION_FILE).write_text(json.dumps({"predictions": preds}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = evaluate(str(tmp_path / "l"), str(tmp_path / "p"), prediction_file=PREDICTION_FILE,
                            framerate=FPS, metric="at1", label_files=LABEL_FILE, dataset=None,
                            EVENT_DICTIONARY=dict(CLASS_INDEX))
    ours = average_map(load_folders(tmp_path / "l", tmp_path / "p"))
    assert ours.mAP == pytest.approx(official["a_mAP"], abs=1e-12)
    assert ours.per_class["SHOT"] == 0.0 and ours.per_class["PASS"] == pytest.approx(official["a_mAP_per_class"][0])


def test_a_missing_prediction_file_is_an_error(tmp_path):
    from core.errors import BallspotError

    game = tmp_path / "l" / "a" / "b" / "c"
    game.mkdir(parents=True)
    (game / LABEL_FILE).write_text(json.dumps({"annotations": []}))
    with pytest.raises(BallspotError, match="no results_spotting.json for 1 game"):
        load_folders(tmp_path / "l", tmp_path / "nowhere")
