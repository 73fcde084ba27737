"""The demo workspace a first run opens: synthetic games, the demo model, its predictions.

Why: a new user should see the product working within minutes, without data or a GPU. The
first game comes with its labels (what a reviewed game looks like), the second, shorter one
too (retraining is measured on it), and the third without (its true labels are kept aside as
``Labels-ball.truth.json`` so it can be scored later); the last two carry the demo model's
predictions with their score curves: the review queue of a real day.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from core.errors import BallspotError
from core.infer import InferConfig
from core.ingest import import_source
from core.labels import LABEL_FILE
from core.metrics import VALID_MAP
from core.progress import Progress, at, part, quiet
from core.runner import infer_games
from core.store import Store
from core.synth import RenderOptions, SynthConfig, generate_game
from core.versions import measure_review_cut, score_version, set_active
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "assets" / "demo-model"
DEMO_VERSION = "demo"
TRUTH_FILE = "Labels-ball.truth.json"
#: The demo games: small enough to render and score in about two minutes on 2 cores.
DEMO_SYNTH = SynthConfig(minutes=3, seed=2024, render=RenderOptions(640, 360, ball_scale=3), exact=False)

def is_empty(store: Store) -> bool:
    return not store.games()


def build_demo(store: Store, workspace: Workspace, *, model: Path = DEMO_MODEL, synth: SynthConfig = DEMO_SYNTH,
               progress: Progress | None = None) -> dict:
    """Render three games into ``sources/demo`` and import them: a labelled training game, a
    shorter labelled validation game (what retraining is measured on) and a test game without
    labels; register the demo model as the active version, store its predictions (and score
    curves) on the validation and test games, and its mAP@1 on the validation game."""
    if not (model / "config.json").is_file():
        raise BallspotError(f"{model}: the demo model is missing (rebuild it: see README, 'The demo model')")
    if not is_empty(store):
        raise BallspotError(f"{workspace.root} already has games: the demo is built into an empty workspace")
    report = progress or quiet
    out = workspace.sources_dir / "demo"
    shutil.rmtree(out, ignore_errors=True)
    plans = [("train", synth), ("valid", replace(synth, minutes=synth.minutes / 2)), ("test", synth)]
    total = sum(c.n_frames for _, c in plans)
    folders, done = [], 0
    for k, (split, config) in enumerate(plans):
        rendering = part(report, 0.6 * done / total, 0.6 * (done + config.n_frames) / total,
                         f"rendering synthetic game {k + 1}/{len(plans)} ({split})")
        folders.append(generate_game(out, config, index=k, progress=rendering))
        done += config.n_frames
    truth = folders[2] / TRUTH_FILE
    (folders[2] / LABEL_FILE).replace(truth)
    doc = json.loads(truth.read_text())
    (folders[2] / LABEL_FILE).write_text(json.dumps({**doc, "annotations": []}, indent=2))
    report(at(0.6, "importing"))
    for folder, (split, _) in zip(folders, plans):
        import_source(store, folder, workspace=workspace, split=split)
    names = [json.loads((f / LABEL_FILE).read_text())["UrlLocal"] for f in folders]
    target = workspace.models_dir / DEMO_VERSION
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model, target)
    trained = json.loads((target / "metrics.json").read_text()) if (target / "metrics.json").is_file() else {}
    store.register_model(DEMO_VERSION, path=str(target.resolve()),
                         config=json.loads((target / "config.json").read_text()), metrics=trained)
    infer_games(store, workspace, DEMO_VERSION, target, names[1:], InferConfig(tta=False),
                progress=part(report, 0.65, 0.95, "the demo model spots events"))
    valid = score_version(store, DEMO_VERSION, [names[1]])
    metrics = {VALID_MAP: valid.mAP, "per_class": valid.per_class, "support": valid.support,
               "review_cut": measure_review_cut(store, DEMO_VERSION, [names[1]]),
               "valid_games": [names[1]], "reviewed_labels": trained.get("reviewed_labels"), "trained": trained}
    store.set_model_metrics(DEMO_VERSION, metrics)  # measured here, like every retrained version
    set_active(store, DEMO_VERSION)
    report(at(1.0, "demo ready"))
    return {"games": [str(f) for f in folders], "model": DEMO_VERSION, VALID_MAP: valid.mAP,
            "predictions": len(store.predictions(names[2], DEMO_VERSION))}
