"""SoccerNet's own evaluation scores our exports: the formats are what the challenge reads."""
from __future__ import annotations

import json
import warnings

from conftest import REAL_DATA
from core.export import export
from core.ingest import import_source
from core.labels import CLASS_INDEX, FPS, LABEL_FILE, PREDICTION_FILE


def _evaluate(labels_dir, predictions_dir) -> dict:
    from SoccerNet.Evaluation.ActionSpotting import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(
            SoccerNet_path=str(labels_dir), Predictions_path=str(predictions_dir),
            prediction_file=PREDICTION_FILE, split="test", version=2, framerate=FPS, metric="at1",
            label_files=LABEL_FILE, dataset=None, EVENT_DICTIONARY=dict(CLASS_INDEX),
        )


def test_exported_labels_as_predictions_score_one(store, workspace, tmp_path):
    import_source(store, REAL_DATA, workspace=workspace)
    export(store, tmp_path / "labels")
    # Exported labels used as predictions: each annotation, confidence 1, half 1.
    for path in (tmp_path / "labels").rglob(LABEL_FILE):
        doc = json.loads(path.read_text())
        preds = [{**a, "half": "1", "confidence": 1.0} for a in doc["annotations"]]
        out = tmp_path / "preds" / path.parent.relative_to(tmp_path / "labels") / PREDICTION_FILE
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps({"UrlLocal": doc["UrlLocal"], "predictions": preds}))
    result = _evaluate(tmp_path / "labels", tmp_path / "preds")
    assert result["a_mAP"] == 1.0
    assert list(result["a_mAP_per_class"]) == [1.0] * 12


def test_stored_predictions_export_is_scored_by_soccernet(store, workspace, tmp_path):
    """Labels stored as a model version's predictions: our results_spotting.json scores 1.0,
    and dropping every SHOT lowers exactly that class to 0."""
    import_source(store, REAL_DATA, workspace=workspace)
    store.register_model("v1")
    store.register_model("v2", parent="v1")
    for g in store.games():
        labels = store.labels(g["id"])
        store.add_predictions("v1", g["id"], [(r["frame"], r["label"], r["team"], 1.0) for r in labels])
        store.add_predictions("v2", g["id"], [(r["frame"], r["label"], r["team"], 1.0)
                                              for r in labels if r["label"] != "SHOT"])
    export(store, tmp_path / "labels")
    export(store, tmp_path / "v1", predictions="v1")
    export(store, tmp_path / "v2", predictions="v2")
    assert _evaluate(tmp_path / "labels", tmp_path / "v1")["a_mAP"] == 1.0
    per_class = _evaluate(tmp_path / "labels", tmp_path / "v2")["a_mAP_per_class"]
    assert per_class[CLASS_INDEX["SHOT"]] == 0.0
    assert [c for i, c in enumerate(per_class) if i != CLASS_INDEX["SHOT"]] == [1.0] * 11
