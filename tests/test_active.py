"""Active learning: the review queue, carrying decisions over, diffs, jobs, and the whole loop."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, annotation, make_game, stop_job, wait_for_job
from core.active import QueueConfig, review_queue
from core.infer import GameScores, save_curves
from core.ingest import import_source
from core.jobs import RetrainParams, cancel, refresh, retrain, submit
from core.progress import quiet
from core.review import edit
from core.store import Store
from core.synth import RenderOptions, SynthConfig, generate_game
from core.versions import active_version, carry_over, decisions, diff, learning_curve
from core.workspace import Workspace

TINY = ROOT / "core" / "configs" / "tiny.yaml"


@pytest.fixture
def game(workspace, tmp_path):
    labels = [annotation(100, "OUT"), annotation(400, "GOAL"), annotation(620, "PASS"), annotation(622, "PASS", "away"),
              annotation(700, "SHOT"), annotation(740, "GOAL")]
    make_game(tmp_path / "src", "l/s/g", labels, video_frames=1000)
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="valid")
        gid = store.games()[0]["id"]
        store.register_model("v1")
        store.register_model("v2", parent="v1")
        store.add_predictions("v1", gid, [(300, "SHOT", "home", 0.9), (500, "HEADER", "home", 0.3)])
        store.add_predictions("v2", gid, [(301, "SHOT", "home", 0.5), (800, "CROSS", "away", 0.95),
                                          (500, "HEADER", "home", 0.31)])
    return gid


def test_the_queue_ranks_doubt_first_and_says_why(store, game, workspace):
    scores = np.zeros((1000, 12), np.float32)
    scores[893:908, 5] = 0.15  # a CROSS bump under the 0.2 cut, nothing near: maybe missed
    scores[608:623, 0] = 0.15  # a PASS bump, but a PASS is labelled near: not missed
    gap = np.zeros_like(scores)
    gap[800, 5] = 0.6  # the views disagree on the confident CROSS
    save_curves(workspace.scores_path("v2", game), GameScores(scores, scores, gap))
    items = review_queue(store, workspace, "v2")
    by = {(it.kind, it.frame, it.label): it for it in items}
    shot = by[("uncertain", 301, "SHOT")]
    assert any("a coin toss for the model" in r for r in shot.reasons)
    assert any("v1 said 0.90" in r for r in shot.reasons)
    cross = by[("uncertain", 800, "CROSS")]
    assert any("new in v2" in r for r in cross.reasons) and any("flipped view disagrees" in r for r in cross.reasons)
    assert ("missed", 900, "CROSS") in by and ("missed", 615, "PASS") not in by
    assert any("OUT with no restart" in r for r in by[("consistency", 100, "OUT")].reasons)
    # The GOAL at 400 has v2's SHOT at 301 pending before it: not flagged until that is decided.
    assert ("consistency", 400, "GOAL") not in by
    assert ("consistency", 740, "GOAL") not in by  # a SHOT 40 frames before
    assert any("two PASS labels 2 frame(s) apart" in r for r in by[("consistency", 622, "PASS")].reasons)
    order = [it.priority for it in items]
    assert order == sorted(order, reverse=True)
    assert items.index(shot) < items.index(by[("uncertain", 500, "HEADER")])  # 0.5 beats 0.31, same as v1
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "queue", "--workspace", str(workspace.root),
                           "--model", "v2", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [(d["kind"], d["frame"], d["label"]) for d in json.loads(done.stdout)] == \
        [(it.kind, it.frame, it.label) for it in items[:50]]


def test_consistency_flags_wait_for_the_neighbouring_events_to_be_decided(store, game, workspace):
    shot = next(p for p in store.predictions(game, "v2") if p["label"] == "SHOT")
    flagged = lambda: {(it.frame, it.label) for it in review_queue(store, workspace, "v2")  # noqa: E731
                       if it.kind == "consistency"}
    assert (400, "GOAL") not in flagged()
    store.reject(shot["id"])  # not a shot after all: the GOAL at 400 now lacks one
    assert (400, "GOAL") in flagged()


def test_consistency_windows_are_whole_frames_with_their_ends_included(workspace, tmp_path):
    """1.16 s is 29 frames (1.16 * 25 is 28.999999999999996 in floating point): a throw-in 29
    frames after an OUT, or a shot 29 frames before a GOAL, is inside the window."""
    labels = [annotation(100, "OUT"), annotation(129, "THROW IN"), annotation(471, "SHOT"), annotation(500, "GOAL"),
              annotation(700, "OUT"), annotation(730, "THROW IN"), annotation(870, "SHOT"), annotation(900, "GOAL")]
    make_game(tmp_path / "src", "l/s/w", labels, video_frames=1000)
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="valid")
        flagged = {(it.frame, it.label) for it in review_queue(store, workspace, None,
                                                               config=QueueConfig(restart_s=1.16, goal_before_s=1.16))}
    assert flagged == {(700, "OUT"), (900, "GOAL")}  # 30 frames: outside


def test_missed_event_candidates_are_capped_to_the_highest_peaks(store, game, workspace):
    scores = np.zeros((1000, 12), np.float32)
    for i, f in enumerate(range(30, 990, 30)):  # 32 bumps under the cut, nothing labelled near
        scores[f - 7:f + 8, 7] = 0.05 + 0.004 * i  # SHOT lane
    save_curves(workspace.scores_path("v2", game), GameScores(scores, scores, None))
    missed = [it for it in review_queue(store, workspace, "v2", limit=None) if it.kind == "missed"]
    assert 0 < len(missed) <= QueueConfig().max_missed
    heights = sorted(float(it.reasons[0].split("peaks at ")[1].split(",")[0]) for it in missed)
    assert heights[0] >= 0.05 + 0.004 * (32 - QueueConfig().max_missed) - 0.02  # the highest ones kept
    assert "just under the 0.20 at which the model reports an event" in missed[0].reasons[0]


def test_decisions_carry_over_to_the_same_event_of_a_new_version(store, game):
    shot, header = store.predictions(game, "v1")
    store.accept(shot["id"], reviewer="ana", frame=299, team="away")  # accepted corrected
    store.reject(header["id"], reviewer="ben")
    labels_before = len(store.labels(game))
    assert carry_over(store, game, decisions(store, game, "v1"), "v2", source="v1") == 2
    after = {(p["frame"], p["label"]): p for p in store.predictions(game, "v2")}
    assert after[(301, "SHOT")]["status"] == "accepted" and after[(301, "SHOT")]["reviewer"] == "ana"
    assert after[(500, "HEADER")]["status"] == "rejected"
    assert after[(800, "CROSS")]["status"] == "pending"
    # The corrected label is reused, not duplicated; one operation, which undo does not cross.
    shots = [lab for lab in store.labels(game) if lab["label"] == "SHOT" and lab["source"] == "model"]
    assert [(lab["frame"], lab["team"]) for lab in shots] == [(299, "away")]
    assert len(store.labels(game)) == labels_before
    assert store.history(game, limit=1)[0]["kind"] == "carry"
    assert store.undo(game) is None


def test_re_inferring_the_same_version_keeps_its_review_decisions(store, game, workspace):
    """The snapshot taken before a re-run brings the decisions back onto its new predictions."""
    shot, header = store.predictions(game, "v1")
    store.accept(shot["id"], reviewer="ana")
    store.reject(header["id"], reviewer="ben")
    snapshot = decisions(store, game, "v1")
    store.add_predictions("v1", game, [(300, "SHOT", "home", 0.8), (501, "HEADER", "home", 0.35)])  # the re-run
    assert carry_over(store, game, snapshot, "v1", source="v1") == 2
    assert {(p["frame"], p["status"]) for p in store.predictions(game, "v1")} == {(300, "accepted"), (501, "rejected")}


def test_diff_between_versions(store, game):
    store.add_predictions("v1", game, [(300, "SHOT", "home", 0.9), (500, "HEADER", "home", 0.3),
                                       (650, "DRIVE", "home", 0.4), (802, "HIGH PASS", "away", 0.5)])
    changes = {(d.change, d.frame, d.label, d.old_frame, d.old_label) for d in diff(store, game, "v1", "v2")}
    assert changes == {("moved", 301, "SHOT", 300, "SHOT"), ("reclassified", 800, "CROSS", 802, "HIGH PASS"),
                       ("gone", 650, "DRIVE", 650, "DRIVE")}
    store.add_predictions("v2", game, [(1, "OUT", "home", 0.5)], replace=False)
    assert ("new", 1, "OUT") in {(d.change, d.frame, d.label) for d in diff(store, game, "v1", "v2")}


@pytest.fixture(scope="module")
def loop_ws(tmp_path_factory):
    """Game A with labels (train), game B to review (test; its true labels kept aside as the
    reviewer's truth), game C for validation."""
    root = tmp_path_factory.mktemp("loop")
    config = SynthConfig(minutes=0.5, seed=41, render=RenderOptions(320, 180, ball_scale=3), exact=False)
    folders = [generate_game(root / name, config, index=k) for k, name in enumerate("abc")]
    truth = json.loads((folders[1] / "Labels-ball.json").read_text())
    (folders[1] / "Labels-ball.json").write_text(json.dumps({**truth, "annotations": []}))
    ws = Workspace.at(root / "ws").ensure()
    with Store.open(ws) as store:
        for folder, split in zip(folders, ("train", "test", "valid")):
            import_source(store, folder, workspace=ws, split=split)
    (ws.root / "truth-b.json").write_text(json.dumps(truth))
    return ws


def _tiny(tmp_path, **changes):
    data = yaml.safe_load(TINY.read_text())
    data.update(changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_whole_loop_on_the_cpu(loop_ws, tmp_path):
    """Labels on A, predictions on B, accept and reject with the UI's edit function, retrain,
    re-infer: v2 registered with metrics, decisions carried over, two points on the curve."""
    config = _tiny(tmp_path, epochs=2, samples_per_epoch=64)
    with Store.open(loop_ws) as store:
        first = retrain(store, loop_ws, RetrainParams(config=config, infer_games=[]), quiet)
        v1 = first["version"]
        assert active_version(store) == v1
        b = store.game("synthetic/seed-41/02 - Reds - Blues")
        from core.jobs import InferParams, reinfer
        reinfer(store, loop_ws, InferParams(version=v1, games=[b["url_local"]]), quiet)
        preds = store.predictions(b["id"], v1)
        assert len(preds) >= 4, "the model predicted too little to review"
        truth = {(int(a["position"]) // 40, a["label"])
                 for a in json.loads((loop_ws.root / "truth-b.json").read_text())["annotations"]}
        decided = {}
        for p in preds[:6]:
            good = any(lab == p["label"] and abs(f - p["frame"]) <= 12 for f, lab in truth)
            op = "accept" if good or len(decided) % 2 == 0 else "reject"
            result = edit(store, b["id"], {"op": op, "id": f"p{p['id']}", "revision": p["revision"]},
                          author="ana", cursor=store.change_cursor(), version=v1)
            assert result.ok, result.message
            decided[(p["frame"], p["label"])] = "accepted" if op == "accept" else "rejected"
        second = retrain(store, loop_ws, RetrainParams(config=config, auto_activate=True), quiet)
        v2 = second["version"]
        row = store.model(v2)
        assert row["parent"] == v1 and row["metrics"]["valid_map@1"] is not None
        assert second["comparison"]["old"] == v1
        if second["activated"]:
            inference = second["inference"]
        else:  # worse on validation: the user confirms (versions.activate's job: infer, carry, activate)
            assert active_version(store) == v1
            inference = reinfer(store, loop_ws, InferParams(version=v2, games=[b["url_local"]], carry_from=v1,
                                                            activate=True), quiet)
        assert inference["activated"] and active_version(store) == v2
        new = store.predictions(b["id"], v2)
        matched = set()
        for q in new:
            for (f, label), status in decided.items():
                if label == q["label"] and abs(f - q["frame"]) <= 2 and (f, label) not in matched:
                    assert q["status"] == status, (q, status)
                    matched.add((f, label))
                    break
        assert inference["carried"] == len(matched)
        curve = learning_curve(store)
        assert [p["version"] for p in curve] == [v1, v2]
        assert [p["active"] for p in curve] == [False, True]
        assert curve[1]["labels"] > curve[0]["labels"]  # the accepted predictions on B were learnt from


@pytest.mark.parametrize("how", ["cancel", "kill"])
def test_a_stopped_job_leaves_the_previous_model_active(loop_ws, tmp_path, how):
    config = _tiny(tmp_path, epochs=50, samples_per_epoch=320)
    with Store.open(loop_ws) as store:
        if not store.models():
            retrain(store, loop_ws, RetrainParams(config=_tiny(tmp_path, epochs=1, samples_per_epoch=32)),
                    quiet)
        before = ([m["version"] for m in store.models()], active_version(store))
        # Epochs named: a retrain's short fine-tune schedule would end before the stop.
        job = submit(store, "retrain", {"config": config, "epochs": 50})
        queued = submit(store, "infer", {"version": before[1]})
        refresh(store, loop_ws)
        running = wait_for_job(store, job["id"], lambda j: j["status"] == "running" and "epoch" in j["message"])
        assert store.job(queued["id"])["status"] == "queued"  # one job at a time
        stop_job(store, loop_ws, running, how)
        cancel(store, queued["id"])
        assert ([m["version"] for m in store.models()], active_version(store)) == before
        assert store.integrity_check() == "ok"
        listed = subprocess.run([sys.executable, str(ROOT / "launch.py"), "jobs", "--workspace", str(loop_ws.root)],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
        expect = "cancelled" if how == "cancel" else "failed"
        assert f"job {job['id']:3d}  retrain  {expect}" in listed.stdout, listed.stdout


def test_jobs_refuse_unknown_options(store):
    from core.errors import BallspotError
    with pytest.raises(BallspotError):
        submit(store, "retrain", {"lr": 1})
    with pytest.raises(BallspotError, match="unknown job kind"):
        submit(store, "paint", {})


def test_classes_without_validation_events_compare_as_not_measured(store, game):
    """A class validation never saw has no AP to show: n/a, not 0 (nor its old 0 beside a new one)."""
    from core.versions import compare

    store.set_model_metrics("v1", {"valid_map@1": 0.4, "per_class": {"PASS": 0.5, "GOAL": 0.0},
                                   "support": {"PASS": 10, "GOAL": 0}})
    store.set_model_metrics("v2", {"valid_map@1": 0.5, "per_class": {"PASS": 0.6, "GOAL": 0.0},
                                   "support": {"PASS": 10, "GOAL": 0}})
    rows = {p["class"]: (p["new"], p["old"]) for p in compare(store, "v2", "v1")["per_class"]}
    assert rows == {"PASS": (0.6, 0.5), "GOAL": (None, None)}


def test_a_seeded_cpu_run_repeats_its_weights(loop_ws, tmp_path):
    """bench/active.py and bench/learn.py rest on it: the same seed, the same run, bit for bit
    (sampling, augmentation, the loader's worker, initialisation: all seeded)."""
    import hashlib
    from pathlib import Path

    from core.training import TrainConfig, train

    config = _tiny(tmp_path, epochs=1, samples_per_epoch=32, workers=1, pretrain={"steps": 0})
    digests, scores = [], []
    with Store.open(loop_ws) as store:
        for k, seed in enumerate((3, 3, 4)):
            row = train(TrainConfig.load(config, seed=seed), store, loop_ws, out=tmp_path / f"run{k}",
                        version=f"seeded-{k}")
            digests.append(hashlib.sha256((Path(row["path"]) / "model.safetensors").read_bytes()).hexdigest())
            scores.append(json.loads((Path(row["path"]) / "metrics.json").read_text())["valid_map@1"])
    assert digests[0] == digests[1] and digests[2] != digests[0]
    assert scores[0] == scores[1] is not None  # the figure a person compares: the same, to the last digit


def test_the_active_learning_bench_runs_quick(tmp_path):
    """CI's run of bench/active.py --quick: every strategy, the same budget per round, the table,
    the JSON and the plot, the analyst minutes of a new game."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "active.py"), "--quick", "--data", str(tmp_path / "d"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validation mAP@1 per round, mean +- sd over 1 seed(s)" in done.stdout
    result = json.loads((tmp_path / "out" / "active-quick.json").read_text())
    runs = result["runs"]["0"]
    assert set(runs) == {"queue", "queue-plain", "random", "confidence", "scratch"}
    budget = result["plan"]["budget"]
    for strategy, rows in runs.items():
        assert [r["round"] for r in rows] == [0, 1, 2]
        assert all(0.0 <= r["map"] <= 1.0 for r in rows)
        assert rows[0]["version"] == runs["queue"][0]["version"]  # every strategy starts from one model
        if strategy != "scratch":
            assert [r["reviews"] for r in rows] == [0, budget, 2 * budget], strategy
    queue_s = [r["analyst_s"] for r in runs["queue"]]
    for a, b, q0, q1 in zip(runs["scratch"], runs["scratch"][1:], queue_s, queue_s[1:]):
        assert b["analyst_s"] - a["analyst_s"] <= q1 - q0 + 1e-6  # scratch gets the queue's time, no more
    assert runs["scratch"][-1]["labels"] > 0
    minutes = result["summary"]["new_game_minutes"]
    assert [m["round"] for m in minutes] == [0, 1, 2]
    assert all(m["scratch"] > 0 and m["time_order"] > 0 and m["queue"] > 0 for m in minutes)
    png = (tmp_path / "out" / "active-quick.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
