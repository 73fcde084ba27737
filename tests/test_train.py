"""Training mechanics: targets, hard negatives, interruption and resume, two DDP ranks."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from core.ingest import import_source
from core.store import Store
from core.synth import RenderOptions, SynthConfig, generate_game
from core.labels import CLASSES
from core.training import TrainConfig, load_games, train
from core.training.clips import ClipDataset, sample_epoch, targets
from core.training.loss import focal_loss
from core.workspace import Workspace

TINY = ROOT / "core" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with a short synthetic train game and a shorter valid game."""
    root = tmp_path_factory.mktemp("train")
    generate_game(root / "tr",
                  SynthConfig(minutes=0.5, seed=31, render=RenderOptions(160, 90, ball_scale=4), exact=False))
    generate_game(root / "va",
                  SynthConfig(minutes=0.25, seed=32, render=RenderOptions(160, 90, ball_scale=4), exact=False), index=1)
    workspace = Workspace.at(root / "ws").ensure()
    with Store.open(workspace) as store:
        import_source(store, root / "tr", workspace=workspace, split="train")
        import_source(store, root / "va", workspace=workspace, split="valid")
    return workspace


def _config(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_game_marked_fully_reviewed_trains_as_completely_labelled(tmp_path):
    """Review work on a game outside the training splits trains only around what was reviewed
    (its unreviewed stretches may hide events); once a reviewer marks the game fully reviewed,
    it trains like a training split's game: every label a target, any other frame a negative."""
    generate_game(tmp_path / "src", SynthConfig(minutes=0.1, seed=33, render=RenderOptions(160, 90), exact=False))
    workspace = Workspace.at(tmp_path / "ws").ensure()
    config = TrainConfig.load(TINY)
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="test")
        game = store.games()[0]
        imported = len(store.labels(game["id"]))
        store.add_label(game["id"], 10, "PASS", "home", author="ana")
        [seen] = load_games(store, workspace, ["train"], config, reviewed=True)
        assert seen.partial and len(seen.events) == 1  # the review work only
        with store.transaction():
            store.conn.execute("UPDATE games SET fully_reviewed = 'ana' WHERE id = ?", (game["id"],))
        [full] = load_games(store, workspace, ["train"], config, reviewed=True)
        assert not full.partial and len(full.events) == imported + 1
        assert load_games(store, workspace, ["train"], config, reviewed=False) == []


def test_a_partly_reviewed_game_trains_only_the_classes_its_reviews_decided(tmp_path):
    """An accepted PASS says nothing of the DRIVE just after it, a rejected SHOT nothing of the
    PASS beside it: in a partly reviewed game a window's loss counts only the classes a review
    decided within it, so an event nobody has labelled yet is not taught as absent. In a fully
    labelled game every class counts."""
    generate_game(tmp_path / "src", SynthConfig(minutes=0.1, seed=34, render=RenderOptions(160, 90), exact=False))
    workspace = Workspace.at(tmp_path / "ws").ensure()
    config = TrainConfig.load(TINY)
    pass_, drive, shot = (CLASSES.index(c) for c in ("PASS", "DRIVE", "SHOT"))
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="test")
        game = store.games()[0]
        store.add_label(game["id"], 20, "PASS", "home", author="ana")
        store.register_model("v0")
        store.add_predictions("v0", game["id"], [(90, "SHOT", "away", 0.6)])
        store.reject(store.predictions(game["id"], "v0")[0]["id"], reviewer="ana")
        [partial] = load_games(store, workspace, ["train"], config, reviewed=True)
    assert partial.partial
    y, _, _, near_pass = targets(partial, 24, 7)
    assert y[pass_] == 1 and near_pass[pass_] == 1 and near_pass.sum() == 1  # DRIVE, SHOT...: not decided here
    y, _, _, known = targets(partial, 91, 7)
    assert not y.any() and known[shot] == 1 and known.sum() == 1
    _, _, _, known = targets(partial, 60, 7)  # nothing decided near: nothing trained
    assert not known.any()
    # What training reads: the clip carries the mask (its +-1 frame shake stays near the PASS),
    # and the loss gives an undecided class no gradient.
    clip = ClipDataset([partial], [(0, 24, "event")], config, seed=0)[0]
    assert clip[5].tolist() == near_pass.tolist()
    logits = torch.zeros(1, len(CLASSES), requires_grad=True)
    focal_loss(logits, clip[1][None], config.focal_gamma, clip[5][None]).backward()
    assert logits.grad[0, pass_] != 0 and logits.grad[0, drive] == 0
    full = dataclasses.replace(partial, partial=False)
    assert targets(full, 60, 7)[3].all()


def test_targets_cover_seven_frames_each_side(ws):
    with Store.open(ws) as store:
        game = load_games(store, ws, ["train"], TrainConfig.load(TINY))[0]
    frame, cls, side = (int(v) for v in game.events[0])
    y, team, mask, known = targets(game, frame + 7, 7)
    assert y[cls] == 1 and mask[cls] == 1 and team[cls] == float(side == 0) and known.all()
    y, _, mask, _ = targets(game, frame + 8, 7)
    others = game.events[np.abs(game.events[:, 0] - (frame + 8)) <= 7]
    assert y[cls] == float(cls in others[:, 1])


def test_rejected_predictions_are_sampled_as_hard_negatives(ws):
    with Store.open(ws) as store:
        game = store.game("synthetic/seed-31/01 - Reds - Blues")
        if "v0" not in [m["version"] for m in store.models()]:
            store.register_model("v0")
        store.add_predictions("v0", game["id"], [(f, "SHOT", "home", 0.7) for f in (101, 333, 555)])
        for p in store.predictions(game["id"], "v0"):
            if p["frame"] != 555:
                store.reject(p["id"], reviewer="ana")
        config = TrainConfig.load(TINY)
        games = load_games(store, ws, ["train"], config)
    assert sorted(games[0].negatives.tolist()) == [[101, CLASSES.index("SHOT")], [333, CLASSES.index("SHOT")]]
    samples = sample_epoch(games, config, np.random.default_rng(0))
    negatives = [c for _, c, why in samples if why == "negative"]
    assert negatives and set(negatives) <= {101, 333}
    config.near_event_p, config.hard_negative_p = 0.0, 1.0
    assert {c for _, c, _ in sample_epoch(games, config, np.random.default_rng(1))} == {101, 333}


def _launch(*args, **kw):
    return subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_a_killed_run_resumes_and_registers_nothing_partial(ws, tmp_path):
    config = _config(tmp_path, epochs=4, samples_per_epoch=320)
    run = tmp_path / "run"
    with Store.open(ws) as store:
        before = [m["version"] for m in store.models()]
    proc = _launch("train", "--config", str(config), "--workspace", str(ws.root), "--out", str(run))
    deadline = time.monotonic() + 240
    while not (run / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert (run / "checkpoint.pt").exists(), proc.stdout.read() if proc.poll() is not None else "no checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store.open(ws) as store:
        assert [m["version"] for m in store.models()] == before, "a killed run registered a model"
    assert not (run / "model").exists()
    done = _launch("train", "--config", str(config), "--workspace", str(ws.root), "--resume", str(run))
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    epochs = [json.loads(line)["epoch"] for line in (run / "progress.jsonl").read_text().splitlines()]
    assert epochs[-1] == 4 and sorted(set(epochs)) == [1, 2, 3, 4]
    with Store.open(ws) as store:
        new = [m for m in store.models() if m["version"] not in before]
    assert len(new) == 1 and Path(new[0]["path"]) == (run / "model").resolve()
    assert new[0]["metrics"]["epochs"] == 4


def test_two_ddp_ranks_on_gloo_end_with_the_same_weights(ws, tmp_path):
    config = _config(tmp_path, epochs=1, samples_per_epoch=32, batch=8)  # 2 steps per rank
    run = tmp_path / "ddp"
    with Store.open(ws) as store:
        before = len(store.models())
    torchrun = Path(sys.executable).with_name("torchrun")
    # What a retrain job on several GPUs runs (core.jobs._torchrun): the package's own entry.
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "core.training",
                           "--config", str(config), "--workspace", str(ws.root), "--out", str(run)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    digests = [(run / f"rank-{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    with Store.open(ws) as store:
        assert len(store.models()) == before + 1


#: One DDP rank's part of add_tracks: it saves the tracks it ends with and how many it drew.
_DRAW_TRACKS = """
import os, sys
import numpy as np, torch, torch.distributed as dist
from core.model import BallActionModel
from core.store import Store
from core.training import TrainConfig, load_games
from core.training import track
from core.workspace import Workspace
dist.init_process_group("gloo")
torch.set_num_threads(1)
drawing = track.frame_tracks
calls = []
track.frame_tracks = lambda *a, **k: calls.append(1) or drawing(*a, **k)  # counts the games drawn here
config = TrainConfig.load(sys.argv[1])
torch.manual_seed(0)
model = BallActionModel(config.model).eval()
with Store.open(Workspace.at(sys.argv[2])) as store:
    games = load_games(store, Workspace.at(sys.argv[2]), ["train", "valid"], config)
if sys.argv[4] == "apart" and dist.get_rank() == 1:
    games = games[:1]  # as when an edit lands between the ranks' reads of the store
returned = track.add_tracks(model, games, config, torch.device("cpu"))
np.savez(os.path.join(sys.argv[3], f"rank-{dist.get_rank()}.npz"), drawn=len(calls), returned=returned or -1,
         **{f"game{k}": g.track for k, g in enumerate(games)})
dist.destroy_process_group()
"""


def test_ddp_ranks_share_out_the_ball_tracks_and_all_end_with_every_game_s_track(ws, tmp_path):
    """On several GPUs each rank draws the tracks of its share of the games, not of all of them
    (a cold cache of 100-minute matches would cost every GPU the whole drawing), and every rank
    ends with the same track of every game as one process draws."""
    from core.model import BallActionModel
    from core.training.track import add_tracks

    data = yaml.safe_load(TINY.read_text())
    data["model"]["track_frames"] = 15
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(data))
    config = TrainConfig.load(config_path)
    with Store.open(ws) as store:  # the frame caches, built once before the ranks open them
        games = load_games(store, ws, ["train", "valid"], config)
    assert len(games) == 2
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks draw: the detector's argmax could break a near-tie otherwise
    try:
        assert add_tracks(BallActionModel(config.model).eval(), games, config, torch.device("cpu")) == 2
    finally:
        torch.set_num_threads(threads)
    script = tmp_path / "draw.py"
    script.write_text(_DRAW_TRACKS)
    torchrun = Path(sys.executable).with_name("torchrun")
    # Ranks that loaded other games (an edit between their reads) each draw their own instead
    # of waiting for a track no rank sends.
    for how, drawn in (("same", (1, 1)), ("apart", (2, 1))):
        done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script),
                               str(config_path), str(ws.root), str(tmp_path), how],
                              cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stdout + done.stderr
        ranks = [np.load(tmp_path / f"rank-{rank}.npz") for rank in (0, 1)]
        if how == "same":  # every rank holds exactly the same track of every game
            assert all(np.array_equal(ranks[0][f"game{k}"], ranks[1][f"game{k}"]) for k in range(len(games)))
        for rank, got in enumerate(ranks):
            assert int(got["drawn"]) == drawn[rank], how  # its own share only, when the games agree
            assert int(got["returned"]) == drawn[rank], how  # and says so
            for k, g in enumerate(games[:2 - rank] if how == "apart" else games):
                assert got[f"game{k}"].shape == g.track.shape and np.allclose(got[f"game{k}"], g.track, atol=1e-5)


def test_pretraining_learns_where_the_ball_is_and_feeds_the_encoder(ws, tmp_path):
    from safetensors.torch import load_file

    from core.model import BallActionModel
    from core.training import PretrainConfig, pretrain

    config = TrainConfig.load(TINY)
    records = []
    with Store.open(ws) as store:
        path = pretrain(config.model, PretrainConfig(steps=150, batch=16, lr=3e-3), store, ws, ["train"],
                        tmp_path / "encoder.safetensors", progress=records.append)
    first = records[0]["ball_cell_accuracy"]  # after one step: chance (it learns within 20 now)
    last = np.mean([r["ball_cell_accuracy"] for r in records[-2:]])
    assert last >= 0.5 and last > first + 0.3, records
    state = load_file(str(path))
    config.model.pretrained = str(path)
    config.model.track_frames = 15
    model = BallActionModel(config.model)
    encoder, ball = model.encoder.state_dict(), model.ball.state_dict()
    assert all(np.array_equal(encoder[k].numpy(), v.numpy()) for k, v in state.items() if not k.startswith("ball."))
    assert set(ball) == {k[5:] for k in state if k.startswith("ball.")}, "the ball detector is saved with the encoder"
    assert all(np.array_equal(ball[k[5:]].numpy(), v.numpy()) for k, v in state.items() if k.startswith("ball."))


def test_pretraining_touch_target_marks_the_kicks_of_labelled_events(ws):
    """The sidecar's touch signal (velocity jumps) is on the events that are touches (not OUT
    or GOAL, where nobody touches the ball) and rare elsewhere, so it teaches the encoder what
    a ball action looks like rather than 'the ball moves'."""
    from core.training.pretrain import TOUCH_MS
    from core.synth.sidecar import SIDECAR, load_sidecar

    config = TrainConfig.load(TINY)
    with Store.open(ws) as store:
        game = load_games(store, ws, ["train"], config)[0]
    side = load_sidecar(Path(game.video["video_path"]).parent / SIDECAR, tuple(config.model.input_size))
    touched = side.touch > TOUCH_MS
    kicks = [f for f, cls, _ in game.events if CLASSES[cls] not in ("OUT", "GOAL")]
    assert len(kicks) >= 5
    hit = np.mean([touched[max(0, f - 2):f + 3].any() for f in kicks])
    assert hit >= 0.8, hit
    assert touched.mean() < 0.1, touched.mean()


@pytest.mark.parametrize("src", [(360, 640), (180, 320), (128, 224)])
def test_a_drawn_ball_lands_where_the_sidecar_mapping_puts_it_in_the_model_input(src):
    """The renderer draws the ball at pixel-index coordinates; the frames the model sees are
    resized and padded (``fit``). The pretraining targets must be where the ball shows."""
    import cv2

    from core.video import fit, fit_points

    size = (96, 160)
    for u, v in ((100.3, 50.6), (src[1] / 2 + 0.25, src[0] / 2 - 0.4), (src[1] - 60.8, src[0] - 30.1)):
        img = np.full(src, 40, np.uint8)
        cv2.circle(img, (int(u * 16), int(v * 16)), 5 * 16, 255, -1, cv2.LINE_AA, shift=4)
        small = fit(img, size).astype(float) - 40
        ys, xs = np.nonzero(small > 0)
        found = np.average(xs, weights=small[ys, xs]), np.average(ys, weights=small[ys, xs])
        assert np.allclose(fit_points(np.array([u, v]), src, size), found, atol=0.06), (u, v, found)


def test_pretraining_targets_follow_the_ball_through_the_stack_and_its_mirror_image():
    """One possible stack (frames 0, s, 2s): the ball rolls slowly, is kicked at frame s and
    flies on. The targets are the motion of each half of the stack in cells (u mirrored with
    the picture), the touch inside the stack, and the ball's cell (mirrored too)."""
    from core.training.pretrain import _batch
    from core.synth.sidecar import Sidecar

    mc = TrainConfig.load(TINY).model
    h, w = mc.input_size
    step = mc.frame_step
    n = 2 * step + 1  # exactly one centre frame fits
    grid = (4, 7)
    sy, sx = h / grid[0], w / grid[1]
    ball = np.zeros((n, 2), np.float32)
    ball[:, 1] = 1.5 * sy  # row 1
    ball[:, 0] = 1.2 * sx + np.where(np.arange(n) <= step, np.arange(n) * 0.5, step * 0.5 + (np.arange(n) - step) * 3.0)
    touch = np.zeros(n, np.float32)
    touch[step] = 20.0  # the kick, at the centre frame
    side = Sidecar(ball, np.zeros(n, np.float32), touch, np.full((n, 22, 2), -100.0, np.float32),
                   np.zeros(22, np.int64))
    frames = np.zeros((n, h, w), np.uint8)
    x, cell, motion, offset, touched, presence = _batch([(frames, side)], mc, 64, grid, np.random.default_rng(0))
    d1, d2 = step * 0.5 / sx, step * 3.0 / sx
    centre = ball[step, 0] + 0.5  # pixel i's centre is at i + 0.5
    straight = int(centre // sx)
    mirrored = int((w - centre) // sx)
    assert straight != mirrored
    flipped = cell.numpy() % grid[1] == mirrored
    assert 0 < flipped.sum() < 64  # both kinds drawn
    assert set(cell.numpy() % grid[1]) == {straight, mirrored} and set(cell.numpy() // grid[1]) == {1}
    sign = np.where(flipped, -1.0, 1.0)
    assert np.allclose(motion[:, 1].numpy(), sign * d1, atol=1e-5)
    assert np.allclose(motion[:, 3].numpy(), sign * d2, atol=1e-5)
    assert np.allclose(motion[:, [0, 2, 4]].numpy(), 0.0, atol=1e-5)
    # The ball's place inside its cell, from the cell's centre; mirrored with the picture.
    inside = np.where(flipped, (w - centre) / sx - mirrored, centre / sx - straight) - 0.5
    assert np.allclose(offset[:, 0].numpy(), inside, atol=1e-5)
    assert np.allclose(offset[:, 1].numpy(), (1.5 * sy + 0.5) / sy - 1.5, atol=1e-5)
    assert touched.numpy().tolist() == [1.0] * 64
    assert presence.sum() == 0

    touch[:] = 0.0
    touch[0] = 20.0  # a touch on the stack's first frame cannot be seen inside it
    _, _, _, _, touched, _ = _batch([(frames, side)], mc, 8, grid, np.random.default_rng(1))
    assert touched.sum() == 0


def test_pretraining_without_sidecars_is_skipped_with_a_message(tmp_path):
    from core.training import NoSidecarError, PretrainConfig, pretrain

    from conftest import annotation, make_game
    workspace = Workspace.at(tmp_path / "ws").ensure()
    make_game(tmp_path / "src", "league/game", [annotation(10)], video_frames=60)
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="train")
        with pytest.raises(NoSidecarError, match="positions.npz"):
            pretrain(TrainConfig.load(TINY).model, PretrainConfig(steps=2), store, workspace, ["train"],
                     tmp_path / "e.safetensors")
    assert not (tmp_path / "e.safetensors").exists()


def test_without_a_trained_ball_detector_a_track_config_fails_with_the_remedy(tmp_path):
    """Real games have no sidecar to pretrain the ball detector on; a model whose heads read
    the ball's track would then learn from noise. The run fails before training and says what
    to do, rather than silently training another architecture."""
    from conftest import annotation, make_game
    from core.errors import BallspotError

    workspace = Workspace.at(tmp_path / "ws").ensure()
    make_game(tmp_path / "src", "league/game", [annotation(10), annotation(40)], video_frames=60)
    config = TrainConfig.load(TINY, epochs=1, samples_per_epoch=16)
    config.model.track_frames = 15
    records = []
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="train")
        with pytest.raises(BallspotError, match="no trained ball detector") as failed:
            train(config, store, workspace, out=tmp_path / "run", progress=records.append)
        assert not store.models()
    assert "pretrain steps" in str(failed.value) and "without model.track_frames" in str(failed.value)
    assert [r for r in records if r.get("phase") == "pretrain" and "skipped" in r], "pretraining found no sidecar"
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_tiny_training_fits_a_short_game_well_above_the_untrained_model(tmp_path):
    """The loop learns: pretraining + tiny.yaml on a 1-minute game, scored (mAP@1) on that
    same game against the untrained model. Held-out learnability is bench/learn.py's job."""
    from core.model import BallActionModel
    from core.training import validate

    generate_game(tmp_path / "g",
                  SynthConfig(minutes=1, seed=7, render=RenderOptions(320, 180, ball_scale=3), exact=False))
    workspace = Workspace.at(tmp_path / "ws").ensure()
    config = TrainConfig.load(TINY, valid_splits=["train"])
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "g", workspace=workspace, split="train")
        games = load_games(store, workspace, ["train"], config)
        untrained = validate(BallActionModel(config.model), games, config, __import__("torch").device("cpu"))
        row = train(config, store, workspace, out=tmp_path / "run")
    trained = row["metrics"]["valid_map@1"]
    assert trained >= 0.25 and trained >= 2 * untrained["mAP@1"], (trained, untrained["mAP@1"])
    # The version carries its review cut: where reviewing its validation predictions cost least.
    from core.effort import CUT_GRID
    from core.versions import review_cut
    with Store.open(workspace) as store:
        assert row["metrics"]["review_cut"] in CUT_GRID and review_cut(store, row["version"]) == \
            row["metrics"]["review_cut"]


def test_augmentation_moves_the_ball_track_with_the_picture():
    """Flip, zoom, rotation and the camera pan move the track points where the pictures move the
    ball: a bright dot drawn at a track point is found at the augmented point, frame by frame."""
    from core.training.clips import augment, track_times

    mc = TrainConfig.load(TINY).model
    mc.track_frames = 15
    h, w = mc.input_size
    t = mc.frames
    rng = np.random.default_rng(3)
    xy = np.column_stack([30 + 4 * np.arange(t), 20 + 2 * np.arange(t)]).astype(float)  # a moving dot
    frames = np.zeros((t, h, w), np.uint8)
    for k, (x, y) in enumerate(xy):
        frames[k, int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 255
    # The track's entries at the clip's frames (offsets shared) carry the dot; the others zero.
    offsets = mc.track_offsets()
    clip_offsets = mc.frame_offsets()
    track = np.zeros((mc.track_frames, 3), np.float32)
    at = {int(o): j for j, o in enumerate(offsets)}
    for k, o in enumerate(clip_offsets):
        track[at[int(o)], :2] = ((xy[k] + 0.5) / (w, h)) - 0.5
    times = track_times(mc)
    assert np.allclose(times[[at[int(o)] for o in clip_offsets]], np.linspace(-0.5, 0.5, t))
    flips = 0
    for _ in range(6):
        out, _, moved = augment(frames, np.zeros(12, np.float32), np.zeros(12, np.float32), "role", rng, track, times)
        for k, o in enumerate(clip_offsets):
            img = out[k].astype(float)
            img = np.where(img > img.max() * 0.5, img, 0)
            ys, xs = np.nonzero(img)
            found = np.array([np.average(xs, weights=img[ys, xs]), np.average(ys, weights=img[ys, xs])])
            expected = (moved[at[int(o)], :2] + 0.5) * (w, h) - 0.5
            assert np.abs(found - expected).max() < 0.6, (k, found, expected)
        flips += moved[at[0], 0] * track[at[0], 0] < 0
    assert 0 < flips < 6, "both the flipped and the straight picture were checked"


def test_a_resumed_run_computes_the_track_with_its_trained_ball_detector(ws, tmp_path, monkeypatch):
    """Resuming, every training frame's track comes from the checkpoint's ball detector (what
    the run trained with), not from a model whose weights are still being set up."""
    import torch
    from safetensors.torch import load_file

    import core.training.track as track

    data = yaml.safe_load(TINY.read_text())
    data["model"]["track_frames"] = 15
    data.update(epochs=1, samples_per_epoch=32, track_steps=5, track_points=64)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    seen = []
    real = track.add_tracks

    def add_tracks(model, *args, **kwargs):
        seen.append({k: v.detach().clone() for k, v in model.ball.state_dict().items()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(track, "add_tracks", add_tracks)
    with Store.open(ws) as store:
        train(TrainConfig.load(path), store, ws, out=tmp_path / "run")
        row = train(TrainConfig.load(path, epochs=2), store, ws, out=tmp_path / "run", resume=True)
    assert row["metrics"]["epochs"] == 2 and len(seen) == 2
    detector = {k[len("ball."):]: v for k, v in load_file(str(tmp_path / "run" / "encoder.safetensors")).items()
                if k.startswith("ball.")}
    for state in seen:  # the first run's and the resumed run's: both the pretrained detector
        assert detector and all(torch.allclose(state[k].float(), v.float()) for k, v in detector.items())


def test_training_with_the_ball_track_keeps_the_detector_and_feeds_each_sample_its_track(ws, tmp_path):
    """``track_frames``: pretraining's ball detector comes into the model and stays as it is
    (the encoder too: the track of every frame is computed once, from them); each sample
    carries the track points of the frames around its centre; the saved model scores a game."""
    import torch
    from safetensors.torch import load_file

    from core.infer import InferConfig, frame_scores
    from core.model import load, normalise
    from core.training.clips import ClipDataset
    from core.training.track import add_tracks

    data = yaml.safe_load(TINY.read_text())
    data["model"]["track_frames"] = 15
    data.update(epochs=1, samples_per_epoch=64, encoder_lr_scale=1.0,  # the track freezes the encoder anyway
                track_steps=20, track_points=64)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = TrainConfig.load(path)
    records = []
    with Store.open(ws) as store:
        row = train(config, store, ws, out=tmp_path / "run", progress=records.append)
        games = load_games(store, ws, ["train"], config)
        valid = load_games(store, ws, ["valid"], config)
    model = load(row["path"])
    pretrained = load_file(str(tmp_path / "run" / "encoder.safetensors"))
    for name, module in (("ball.", model.ball), ("", model.encoder)):
        state = module.state_dict()
        for k, v in pretrained.items():
            if k.startswith(name) and (name or not k.startswith("ball.")):
                assert torch.allclose(state[k[len(name):]].float(), v.float(), atol=1e-6), k

    # The track's branch trained on every frame first, then stayed as trained: the clips'
    # weights and their moving average (the saved model) hold the same branch.
    assert [r["step"] for r in records if r.get("phase") == "track" and "step" in r][-1] == 20
    clips = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    saved = model.state_dict()
    branch = [k for k in saved if k.startswith(("track_net.", "track_head."))]
    assert branch and all(torch.equal(saved[k], clips[k]) for k in branch)

    # The run kept each training game's track under the saved model's own weights: a retrain
    # from this model (a fine-tune keeps them) reads the tracks back rather than drawing them.
    from core.training.track import detector_digest, read_track
    kept = read_track(ws.cache_dir / "tracks" / f"{games[0].track_key}-{detector_digest(model, 'cpu')}.npy")
    add_tracks(model, games, config, torch.device("cpu"))  # no cache: drawn here
    assert kept is not None and np.allclose(kept, games[0].track, atol=1e-6)
    config.augment = False
    centre = 30
    track = ClipDataset(games, [(0, centre, "random")], config, seed=0)[0][4].numpy()
    assert track.shape == (15, 3)
    lead = config.model.frame_step
    for j, offset in ((7, 0), (0, -14), (14, 14)):
        f = centre + offset
        stack = torch.from_numpy(np.asarray(games[0].frames[[f - lead, f, f + lead]])[None])
        with torch.no_grad():
            _, point = model.forward_stacks(normalise(stack), track=True)
        assert np.allclose(track[j], point[0].numpy(), atol=1e-5), (j, track[j], point)
    scores = frame_scores(model, iter(valid[0].frames), InferConfig(tta=True, batch=8))
    assert scores.scores.shape == (valid[0].n_frames, 12) and np.isfinite(scores.scores).all()


def test_a_ball_track_is_read_back_only_for_the_same_frames_and_the_same_detector(tmp_path, monkeypatch):
    """``add_tracks`` with a cache: the second run on the same frames with the same encoder and
    detector draws nothing and gets the same track; other detector weights, other encoder
    weights, other frames or a damaged file are drawn again, never read."""
    import core.training.track as track
    from core.model import BallActionModel
    from core.training import GameData

    config = TrainConfig.load(TINY)
    config.model.track_frames = 15
    torch.manual_seed(0)
    model = BallActionModel(config.model).eval()
    h, w = config.model.input_size
    videos = {key: np.random.default_rng(k).integers(0, 255, (40, h, w), np.uint8)
              for k, key in enumerate(("game-1-a", "game-1-b"))}
    drawn = []
    real = track.frame_tracks
    monkeypatch.setattr(track, "frame_tracks", lambda *a, **k: drawn.append(1) or real(*a, **k))
    cache = tmp_path / "tracks"

    def run(key: str = "game-1-a") -> np.ndarray:
        game = GameData(1, "g", 40, videos[key], {}, np.zeros((0, 3), np.int64), np.zeros((0, 2), np.int64), [],
                        track_key=key)
        track.add_tracks(model, [game], config, torch.device("cpu"), cache=cache)
        return game.track

    first = run()
    assert len(drawn) == 1 and len(list(cache.glob("*.npy"))) == 1 and first.shape == (40, 3)
    assert np.array_equal(run(), first) and len(drawn) == 1  # read back
    assert len(drawn) == 1 and not np.array_equal(run("game-1-b"), first) and len(drawn) == 2
    with torch.no_grad():
        next(model.ball.parameters()).add_(0.5)
    moved = run()
    assert len(drawn) == 3 and not np.array_equal(moved, first)
    with torch.no_grad():
        next(model.encoder.parameters()).add_(0.5)
    again = run()
    assert len(drawn) == 4 and not np.array_equal(again, moved)
    path = cache / f"game-1-a-{track.detector_digest(model, 'cpu')}.npy"
    path.write_bytes(path.read_bytes()[:100])  # a file cut short
    assert np.array_equal(run(), again) and len(drawn) == 5
    assert np.array_equal(run(), again) and len(drawn) == 5  # and kept whole again
    np.save(path, again[:30])  # a whole file, but the track of fewer frames than the game has
    assert np.array_equal(run(), again) and len(drawn) == 6
    assert not list(cache.glob(".*"))  # no partial file left behind
    # A cache that cannot be written costs time, not the run.
    cache = tmp_path / "a-file"
    cache.write_text("")
    assert np.array_equal(run(), again) and len(drawn) == 7


def _kicked_game(seed: int, n: int = 3000):
    """A game whose ball (its track) rolls straight and changes course only at its PASS events."""
    from core.training import GameData

    rng = np.random.default_rng(seed)
    kicks = np.cumsum(rng.integers(30, 90, n // 30))
    kicks = set(kicks[kicks < n - 1].tolist())
    uv = np.zeros((n, 2))
    velocity = np.zeros(2)
    for f in range(1, n):
        if f in kicks:
            velocity = rng.normal(0, 0.004, 2) - 0.01 * uv[f - 1]  # back towards the middle, on average
        uv[f] = uv[f - 1] + velocity
    track = np.concatenate([uv, np.ones((n, 1))], 1).astype(np.float32)
    frames = np.array(sorted(kicks))
    events = np.stack([frames, np.zeros_like(frames), np.zeros_like(frames)], 1).astype(np.int64)
    return GameData(seed, f"fake-{seed}", n, None, {}, events, np.zeros((0, 2), np.int64), [], track=track), frames


def test_the_track_classifier_learns_the_kicks_from_every_frame_of_a_game():
    """``train_track``: trained on every frame of the training games' tracks, the track's own
    logits rank frames at a held-out game's kicks above the others; untrained, they do not."""
    import torch
    from core.model import BallActionModel
    from core.training.track import train_track

    config = TrainConfig.load(TINY)
    config.model.track_frames = 15
    config.track_steps, config.track_batch, config.track_points = 600, 8, 128
    torch.manual_seed(0)
    model = BallActionModel(config.model)
    games = [_kicked_game(s)[0] for s in (1, 2)]
    held_out, kicks = _kicked_game(3)

    def kick_auc() -> float:
        model.eval()
        with torch.no_grad():
            pad = np.concatenate([held_out.track[:1].repeat(14, 0), held_out.track, held_out.track[-1:].repeat(14, 0)])
            x = torch.from_numpy(pad[::2][None]), torch.from_numpy(pad[1::2][None])  # both frame parities
            logits = [model.track_head(model.track_net(t).transpose(1, 2))[0, :, 0].numpy() for t in x]
        score = np.empty(held_out.n_frames)
        score[0::2], score[1::2] = logits[0][:len(score[0::2])], logits[1][:len(score[1::2])]
        near = np.zeros(held_out.n_frames, bool)
        for k in kicks:
            near[max(0, k - 2):k + 3] = True
        far = np.ones(held_out.n_frames, bool)
        for k in kicks:
            far[max(0, k - 10):k + 11] = False
        return float((score[near][:, None] > score[far][None]).mean())

    before = kick_auc()
    records = []
    losses = train_track(model, games, config, torch.device("cpu"), records.append)
    after = kick_auc()
    assert len(losses) == 600 and np.mean(losses[-30:]) < 0.5 * np.mean(losses[:30])
    assert [r["step"] for r in records][-1] == 600 and all(r["phase"] == "track" for r in records)
    assert before < 0.7 and after > 0.9, (before, after)


def test_each_window_of_a_games_track_sequence_is_the_track_a_clip_on_its_centre_sees():
    """``train_track`` learns window i of a sequence with the targets of its centre frame: that
    window must be the track a clip centred there sees (``track_windows``), also where the
    sequence runs past the game's ends, from the first centre (frame 0) to the last."""
    from core.errors import BallspotError
    from core.infer import track_windows
    from core.model import ModelConfig
    from core.training.clips import class_targets
    from core.training.track import track_sequence

    mc = TrainConfig.load(TINY).model
    mc.track_frames = 15
    game, _ = _kicked_game(4, n=200)
    step, half, length = mc.frame_step, 7, 40
    lowest, highest = -step * half, game.n_frames - step * (length - 1 - half) - 1  # what train_track draws
    positives = 0
    for first in (lowest, -3, 0, 17, highest):
        track, centres = track_sequence(game, first, length, mc)
        assert len(centres) == length - 15 + 1 and np.all(np.diff(centres) == step)
        windows = np.stack([track[i:i + 15] for i in range(len(centres))])
        assert np.array_equal(windows, track_windows(game.track, centres, mc)), first
        # ... and is learnt with the class targets a clip centred there gets.
        y = class_targets(game, centres, 7)
        assert np.array_equal(y, np.stack([targets(game, c, 7)[0] for c in centres]))
        positives += int(y.sum())
    assert positives > 0
    assert track_sequence(game, lowest, length, mc)[1][0] == 0
    assert track_sequence(game, highest, length, mc)[1][-1] == game.n_frames - 1
    with pytest.raises(BallspotError, match="track_points"):
        TrainConfig(model=ModelConfig(track_frames=15), track_points=9)


class _RunsCode:
    """Unpickled, it would run a command: what a tampered checkpoint could carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_resume_refuses_a_checkpoint_that_holds_more_than_weights(ws, tmp_path):
    """Checkpoints are read with ``weights_only=True``: one holding a pickled object is refused
    with a BallspotError before anything in it runs (a normal resume: the killed-run test)."""
    from core.errors import BallspotError

    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "ran"
    import torch
    torch.save({"model": {}, "epoch": 1, "payload": _RunsCode(marker)}, run / "checkpoint.pt")
    config = TrainConfig.load(_config(tmp_path, epochs=2, samples_per_epoch=32, pretrain={"steps": 0}))
    with Store.open(ws) as store, pytest.raises(BallspotError, match="refused: it holds more than weights"):
        train(config, store, ws, out=run, resume=True)
    assert not marker.exists()


def test_a_checkpoint_holds_only_tensors_and_plain_values(tmp_path):
    """What training writes (numpy scalars in its history included) loads with weights_only."""
    import torch

    from core.model import load_torch_file
    from core.training.train import save_checkpoint

    history = [{"epoch": 1, "loss": np.float64(0.5), "valid_map": None, "per_class": {"PASS": np.float64(0.25)}}]
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": {"w": torch.ones(2)}, "epoch": np.int64(1),
                                                 "best": np.float64(-np.inf), "history": history})
    state = load_torch_file(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1 and state["best"] == -np.inf and type(state["history"][0]["loss"]) is float
    assert state["history"][0]["per_class"] == {"PASS": 0.25} and torch.equal(state["model"]["w"], torch.ones(2))
    assert not (tmp_path / ".checkpoint.partial").exists()


def test_one_reading_of_training_records_for_the_command_line_and_the_jobs():
    """The CLI bar and a job's log read training's records through one formatter: the run's
    fraction only grows, and each kind of record says what it is."""
    from core.training.progress import describe

    records = [{"phase": "pretrain", "skipped": "no sidecar"},
               {"phase": "pretrain", "step": 5, "steps": 10, "ball_cell_accuracy": 0.5},
               {"phase": "track", "game": 1, "games": 2}, {"phase": "track", "step": 3, "steps": 6, "loss": 0.1},
               {"epoch": 1, "step": 2, "steps": 4, "loss": 0.5},
               {"epoch": 1, "loss": 0.4, "valid_map@1": 0.25, "samples_per_s": 12.0},
               # a record of a run from before the key was unified: still an epoch, still its score
               {"epoch": 2, "step": 4, "steps": 4, "loss": 0.3}, {"epoch": 2, "loss": 0.2, "valid_map": None}]
    updates = [describe(r, epochs=2) for r in records]
    assert [u.kind for u in updates] == ["note"] + ["progress"] * 4 + ["milestone", "progress", "milestone"]
    fractions = [u.fraction for u in updates[1:]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] == 0.05
    assert updates[0].text == "pretraining skipped: no sidecar"
    assert updates[5].text == "epoch 1/2: loss 0.4000, valid mAP@1 0.2500, 12.0 samples/s"
    assert updates[7].text.endswith("valid mAP@1 -")
    old = {"epoch": 3, "loss": 0.1, "valid_map": 0.5}
    assert describe(old, epochs=3).text == "epoch 3/3: loss 0.1000, valid mAP@1 0.5000"
    assert describe(old, epochs=3).fraction == 1


def test_the_models_tab_plots_every_epoch_of_a_run_old_key_or_new(tmp_path):
    """``run_curve`` reads a run's progress.jsonl for the loss and validation chart: epochs
    written with the unified key and ones from runs before it; a run without epochs: no rows."""
    import json

    from core.training.progress import run_curve

    assert run_curve(tmp_path) == []
    lines = [{"epoch": 1, "loss": 0.5, "valid_map": 0.25}, {"epoch": 2, "loss": 0.4, "valid_map@1": None},
             {"epoch": 3, "loss": 0.3, "valid_map@1": 0.5}]
    (tmp_path / "progress.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert [(r["epoch"], r["series"], r["value"]) for r in run_curve(tmp_path)] == [
        (1, "loss", 0.5), (1, "valid mAP@1", 0.25), (2, "loss", 0.4), (3, "loss", 0.3), (3, "valid mAP@1", 0.5)]


def test_long_work_reports_one_kind_of_step_drawn_by_one_bar(tmp_path, capsys):
    """Rendering, import, inference and training all report ``core.progress.Step``s; shares of
    a bigger task (``part``) and work counted on (``after``) keep the whole's fraction growing."""
    from core.progress import Step, after, bar, part
    from core.synth import RenderOptions, SynthConfig, generate

    steps: list[Step] = []
    config = SynthConfig(minutes=0.05, seed=3, render=RenderOptions(160, 90))
    generate(tmp_path, config, games=2, progress=steps.append)
    assert all(isinstance(s, Step) for s in steps) and steps[-1].fraction == 1.0
    assert [s.done for s in steps] == sorted(s.done for s in steps) and steps[-1].text == "game 2/2"
    whole: list[Step] = []
    part(whole.append, 0.5, 0.9, "second half")(Step(3, 4, "inner"))
    after(whole.append, 10, 20, "game 2")(Step(5, 10))
    assert whole == [Step(80.0, 100, "second half"), Step(15, 20, "game 2")]
    assert whole[0].fraction == 0.8 and whole[1].fraction == 0.75
    with bar("demo", "%") as progress:
        progress(Step(50, 100, "halfway"))
        progress(Step(60, 100, "epoch 1/2: done", "milestone"))
    assert "epoch 1/2: done" in capsys.readouterr().err
