"""Inference shared out over worker processes (``--gpus N``; here CPU processes) stores exactly
what one process stores, through the CLI's path and the re-infer job's, and a worker's failure
is reported by game without storing that game."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from core.errors import BallspotError
from core.infer import InferConfig, load_curves
from core.ingest import import_source
from core.jobs import InferParams, reinfer
from core.model import BallActionModel, ModelConfig, save
from core.runner import infer_games
from core.store import Store
from core.synth import RenderOptions, SynthConfig, generate_game
from core.workspace import Workspace

#: A light model with a track (the shard tests time processes, not the encoder).
TINY = dict(encoder="mobilenetv3_small_050", frames=9, input_size=(64, 112), feature_stage=-2, proj_channels=16,
            blocks_3d=1, stack_channels=16, track_frames=15)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Three short synthetic games of different lengths, imported, and a model with a track."""
    root = tmp_path_factory.mktemp("shard")
    for seed, minutes in ((11, 0.04), (12, 0.06), (13, 0.03)):
        generate_game(root / "src", SynthConfig(minutes=minutes, seed=seed, render=RenderOptions(160, 90)))
    ws = Workspace.at(root / "ws").ensure()
    with Store.open(ws) as store:
        import_source(store, root / "src", workspace=ws, split="test")
        games = [g["url_local"] for g in store.games()]
    torch.manual_seed(3)
    model = BallActionModel(ModelConfig(**TINY)).eval()
    with torch.no_grad():
        model.ball.net[-1].weight.mul_(20)  # a track that moves, so its windows matter
    save(model, root / "m")
    return {"root": root, "ws": ws, "games": games, "model": root / "m"}


def _copy(template, name: str) -> Workspace:
    return Workspace.at(shutil.copytree(template["ws"].root, template["root"] / name))


def _stored(ws: Workspace, version: str, games: list[str]) -> dict:
    """What a run leaves: each game's predictions as values (not ids) and its score curves."""
    out = {}
    with Store.open(ws) as store:
        for name in games:
            g = store.game(name)
            preds = [(p["frame"], p["label"], p["team"], p["confidence"], p["status"])
                     for p in store.predictions(g["id"], version)]
            curves = load_curves(ws.scores_path(version, g["id"]))
            out[name] = (preds, curves.scores, curves.team, curves.flip_gap)
    return out


def test_two_processes_store_what_one_process_stores(template):
    """One process (``launch.py infer``, a fresh process like each worker: oneDNN's kernels, once
    made for a shape, keep the thread layout they were made with, so a process that ran the same
    shapes at other thread counts can differ in the last bits) against the re-infer job's path,
    as the app runs it, on two worker processes."""
    games = template["games"]
    one, two = _copy(template, "one"), _copy(template, "two")
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "infer", "--model", str(template["model"]),
                           "--workspace", str(one.root), "--out", str(template["root"] / "P")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    version = template["model"].name
    steps = []
    with Store.open(two) as store:
        store.register_model(version, path=str(template["model"]))
        result = reinfer(store, two, InferParams(version=version, games=games, gpus=2), steps.append)
    assert result["games"] == games
    assert any("on 2 CPU processes" in s.text for s in steps), [s.text for s in steps]
    a, b = _stored(one, version, games), _stored(two, version, games)
    assert sum(len(a[g][0]) for g in games) > 0, "the model found events to compare"
    for g in games:
        assert a[g][0] == b[g][0], g
        for x, y in zip(a[g][1:], b[g][1:]):
            assert np.array_equal(x, y), g
    assert f"{version}: {sum(len(a[g][0]) for g in games)} predictions on 3 game(s)" in result["summary"]


def test_a_worker_that_fails_names_the_game_and_stores_nothing_of_it(template):
    ws = _copy(template, "broken")
    with Store.open(ws) as store:
        store.register_model("m", path=str(template["model"]))
        broken = store.game(template["games"][1])
        video = broken["video_path"]
        shutil.move(video, video + ".moved")
        shutil.copy(video + ".moved", video)  # the same bytes, but not the file imported
        with pytest.raises(BallspotError, match=f"{broken['url_local']}.*re-import"):
            infer_games(store, ws, "m", template["model"], template["games"], InferConfig(batch=8, tta=False),
                        gpus=2)
        assert store.predictions(broken["id"], "m") == []
        assert not ws.scores_path("m", broken["id"]).exists()


def test_more_gpus_than_the_machine_has_are_refused_before_any_work(template):
    ws = _copy(template, "refused")
    with Store.open(ws) as store:
        store.register_model("m", path=str(template["model"]))
        with pytest.raises(BallspotError, match="--gpus 0"):
            infer_games(store, ws, "m", template["model"], template["games"], InferConfig(), gpus=0)
        if not torch.cuda.is_available():
            with pytest.raises(BallspotError, match="CUDA device"):
                infer_games(store, ws, "m", template["model"], template["games"], InferConfig(device="cuda"),
                            gpus=2)
        assert all(store.predictions(g, "m") == [] for g in template["games"])
