"""Inference: feature caching changes nothing, TTA is the mean of both views, events come out
of the score curves as configured, and the CLI stores and exports what it found."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, make_video
from core.infer import GameScores, InferConfig, events_from_scores, frame_scores, frame_scores_uncached
from core.model import BallActionModel, ModelConfig, load, save
from core.synth import RenderOptions, SynthConfig, generate_game
from core.video import FrameReader, read_frames

TINY = dict(input_size=(64, 112), proj_channels=32, blocks_3d=2, stack_channels=32)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A synthetic match clip, read as the model reads it."""
    folder = generate_game(tmp_path_factory.mktemp("clip"),
                           SynthConfig(minutes=0.04, seed=2, render=RenderOptions(224, 128)))
    with FrameReader(folder / "128p.mp4", TINY["input_size"]) as reader:
        return np.stack(list(reader))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BallActionModel(ModelConfig(**TINY)).eval()


@pytest.fixture(scope="module")
def tracked():
    """A model whose heads also see the ball's track over 15 frames (wider than its clip)."""
    torch.manual_seed(1)
    m = BallActionModel(ModelConfig(**TINY, track_frames=15)).eval()
    with torch.no_grad():
        m.ball.net[-1].weight.mul_(20)
    return m


@pytest.fixture(scope="module")
def noise(clip):
    """Frames of noise: an untrained ball detector points somewhere else on each (on a real
    clip its features hardly change), so a track point taken from the wrong frame shows."""
    return np.random.default_rng(0).integers(0, 256, clip.shape, dtype=np.uint8)


@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize("kind", ["model", "tracked"])
def test_cached_inference_equals_uncached(request, clip, noise, tta, kind):
    model = request.getfixturevalue(kind)
    clip = noise if kind == "tracked" else clip
    config = InferConfig(batch=7, tta=tta)
    cached = frame_scores(model, iter(clip), config)
    full = frame_scores_uncached(model, clip, config)
    assert cached.scores.shape == (len(clip), 12)
    assert np.abs(cached.scores - full.scores).max() < 1e-4
    assert np.abs(cached.team - full.team).max() < 1e-4


def test_flip_tta_is_the_mean_of_both_views(model, clip):
    plain = frame_scores_uncached(model, clip, InferConfig(tta=False))
    flipped = frame_scores_uncached(model, clip[..., ::-1].copy(), InferConfig(tta=False))
    both = frame_scores(model, iter(clip), InferConfig(tta=True))
    assert np.abs(both.scores - (plain.scores + flipped.scores) / 2).max() < 1e-5
    side = BallActionModel(ModelConfig(**TINY, team_mode="side")).eval()
    side.load_state_dict(model.state_dict())
    p = frame_scores_uncached(side, clip, InferConfig(tta=False)).team
    f = frame_scores_uncached(side, clip[..., ::-1].copy(), InferConfig(tta=False)).team
    both = frame_scores(side, iter(clip), InferConfig(tta=True)).team
    assert np.abs(both - (p + (1 - f)) / 2).max() < 1e-5, "a flip swaps left and right"


def test_the_track_is_where_the_ball_detector_points(tracked, noise):
    """Each frame's track point is the detector's most likely cell plus its offset there, as a
    fraction of the picture around its centre, and the detector's confidence."""
    from core.infer import frame_tracks
    from core.model import normalise

    clip = noise
    track = frame_tracks(tracked, iter(clip), batch=8)
    assert track.shape == (len(clip), 3)
    assert len(np.unique(track[:, :2].round(3), axis=0)) > 3, "the point moves from frame to frame"
    f, lead = 20, tracked.config.stack_lead
    stack = torch.from_numpy(clip[[f - lead, f, f + lead]][None])
    with torch.no_grad():
        maps = tracked.ball(tracked.encode(normalise(stack)))[0]
    h, w = maps.shape[1:]
    cell = int(maps[0].argmax())
    u = (cell % w + 0.5 + float(maps[1].flatten()[cell])) / w - 0.5
    v = (cell // w + 0.5 + float(maps[2].flatten()[cell])) / h - 0.5
    assert np.allclose(track[f, :2], (u, v), atol=1e-5)
    assert np.isclose(track[f, 2], float(maps[0].flatten().softmax(0).max()), atol=1e-5)
    # The ends repeat the first and last frames, as inference's windows do.
    first = torch.from_numpy(clip[[0, 0, lead]][None])
    with torch.no_grad():
        _, point = tracked.forward_stacks(normalise(first), track=True)
    assert np.allclose(track[0], point[0].numpy(), atol=1e-5)


def test_events_from_score_curves():
    n = 400
    t = np.arange(n)
    scores = np.zeros((n, 12), np.float32)
    scores[:, 0] = 0.9 * np.exp(-((t - 100) / 2.0) ** 2) + 0.5 * np.exp(-((t - 108) / 2.0) ** 2)
    scores[:, 7] = 0.15 * np.exp(-((t - 300) / 2.0) ** 2) + 0.6 * np.exp(-((t - 350) / 2.0) ** 2)
    team = np.full((n, 12), 0.8, np.float32)
    team[340:360, 7] = 0.1
    events = events_from_scores(GameScores(scores, team), InferConfig(sigma=1.0, height=0.2, distance=15))
    assert [(e.frame, e.label, e.team) for e in events] == [(100, "PASS", "home"), (350, "SHOT", "away")]
    assert 0.2 < events[0].confidence <= 0.9
    loose = events_from_scores(GameScores(scores, team), InferConfig(sigma=1.0, height=0.1, distance=5))
    assert [e.frame for e in loose] == [100, 108, 300, 350]


def test_random_access_reads_the_frames_the_stream_reads(tmp_path):
    video = make_video(tmp_path / "v.mp4", frames=90, size=(96, 64))
    with FrameReader(video, (48, 80)) as reader:
        stream = list(reader)
    wanted = [0, 1, 11, 12, 13, 47, 88, 89]
    got = read_frames(video, wanted, (48, 80))
    assert all(np.array_equal(got[i], stream[i]) for i in wanted)


def test_a_model_built_without_gradients_is_the_same_model():
    """Building under torch.no_grad (e.g. inside an evaluation loop) marks the same unused
    encoder stages as not trained; under inference_mode it builds and predicts."""
    config = ModelConfig(encoder="mobilenetv3_small_050", frames=9, input_size=(64, 112), feature_stage=-2,
                         proj_channels=16, blocks_3d=1, stack_channels=16)
    flags = [p.requires_grad for p in BallActionModel(config).parameters()]
    assert not all(flags) and any(flags)  # the stages after feature_stage are frozen
    with torch.no_grad():
        assert [p.requires_grad for p in BallActionModel(config).parameters()] == flags
    with torch.inference_mode():
        logits, team = BallActionModel(config).eval()(torch.zeros(1, 9, 64, 112))
    assert logits.shape == team.shape == (1, 12)


def test_weights_that_do_not_fit_the_saved_architecture_are_refused_by_name(tracked, tmp_path):
    """A model folder whose weights lack part of what its config describes (e.g. saved before
    the track had class logits of its own) fails with the file named, not a stack trace."""
    from safetensors.torch import load_file, save_file

    from core.errors import BallspotError

    save(tracked, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    state = {k: v for k, v in load_file(str(weights)).items() if not k.startswith("track_head.")}
    save_file(state, str(weights))
    with pytest.raises(BallspotError, match=r"model\.safetensors: the weights do not fit .*track_head"):
        load(tmp_path / "m")


def test_save_and_load_keep_the_model(model, tmp_path, clip):
    save(model, tmp_path / "m")
    again = load(tmp_path / "m")
    x = torch.from_numpy(clip[:15][None]).float()
    with torch.no_grad():
        assert torch.equal(model(x)[0], again(x)[0])
    assert json.loads((tmp_path / "m" / "config.json").read_text())["input_size"] == [64, 112]


def test_infer_and_evaluate_from_the_command_line(model, tmp_path):
    def run(*args):
        done = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    generate_game(tmp_path / "S", SynthConfig(minutes=0.1, seed=4, render=RenderOptions(160, 90)))
    ws = str(tmp_path / "W")
    run("import", str(tmp_path / "S"), "--workspace", ws, "--split", "test")
    from conftest import annotation, make_game
    make_game(tmp_path / "labels-only", "l/s/no video", [annotation(3)])
    run("import", str(tmp_path / "labels-only"), "--workspace", ws, "--split", "test")
    save(model, tmp_path / "tiny-v1")
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "infer", "--model", str(tmp_path / "tiny-v1"),
                           "--workspace", ws, "--out", str(tmp_path / "P")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "Stored as model version tiny-v1" in done.stdout
    assert "Skipped 1 game(s) without a video: l/s/no video" in done.stderr
    assert not (tmp_path / "P" / "l").exists(), "only the inferred games are exported"
    from core.store import Store
    from core.workspace import Workspace
    with Store.open(Workspace.at(ws)) as store:
        game = store.game("synthetic/seed-4/01 - Reds - Blues")
        preds = store.predictions(game["id"], "tiny-v1")
        assert preds and all(0 <= p["confidence"] <= 1 for p in preds)
        assert Workspace.at(ws).scores_path("tiny-v1", game["id"]).is_file()
    results = json.loads((tmp_path / "P" / game["url_local"] / "results_spotting.json").read_text())
    assert len(results["predictions"]) == len(preds)
    # The version is registered: a second run names it, and re-running replaces its predictions.
    run("infer", "--model", "tiny-v1", "--workspace", ws, "--no-tta", "--out", str(tmp_path / "P2"))
    scored = json.loads(run("evaluate", "--predictions", str(tmp_path / "P"), "--labels", str(tmp_path / "S"),
                            "--team", "--json"))
    assert [r["metric"] for r in scored] == ["at1", "team-at1"]
    assert all(0.0 <= r["mAP"] <= 1.0 for r in scored)
    table = run("evaluate", "--predictions", str(tmp_path / "P"), "--labels", str(tmp_path / "S"), "--metric", "tight")
    assert "tight mAP" in table and "PASS" in table


@pytest.mark.parametrize("n, batch", [(1, 4), (3, 5), (15, 16), (47, 16), (20, 32)])
@pytest.mark.parametrize("kind", ["model", "tracked"])
def test_scores_have_one_row_per_frame_whatever_the_batch(request, clip, noise, n, batch, kind):
    model = request.getfixturevalue(kind)
    clip = noise if kind == "tracked" else clip
    config = InferConfig(batch=batch, tta=False)
    cached = frame_scores(model, iter(clip[:n]), config)
    assert len(cached.scores) == n
    assert np.abs(cached.scores - frame_scores_uncached(model, clip[:n], config).scores).max() < 1e-4


def _video_at(path, fps, frames, container="mp4"):
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264" if container == "mp4" else "mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), (i * 5) % 250, np.uint8)  # each frame its own grey level
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


def test_videos_not_at_25_fps_are_read_at_the_label_rate(tmp_path):
    video = _video_at(tmp_path / "v50.mp4", 50, 100)  # 2 s at 50 fps
    with FrameReader(video) as native:
        all_frames = list(native)
    with FrameReader(video, rate=25) as reader:
        at25 = list(reader)
    assert len(all_frames) == 100 and len(at25) == 50
    assert all(np.array_equal(at25[j], all_frames[2 * j]) for j in range(50))
    got = read_frames(video, [0, 7, 49], rate=25)
    assert all(np.array_equal(got[j], at25[j]) for j in (0, 7, 49))


def test_random_access_counts_from_the_first_frame_of_the_stream(tmp_path):
    video = _video_at(tmp_path / "v.avi", 25, 60, container="avi")
    with FrameReader(video) as reader:
        stream = list(reader)
    got = read_frames(video, [0, 1, 30, 59])
    assert all(np.array_equal(got[i], stream[i]) for i in (0, 1, 30, 59))


def test_custom_class_lists_in_post_processing():
    scores = np.zeros((100, 2), np.float32)
    scores[50, 1] = 1.0
    events = events_from_scores(GameScores(scores, np.ones((100, 2), np.float32)), InferConfig(sigma=0),
                                classes=("KICK", "CATCH"))
    assert [(e.frame, e.label) for e in events] == [(50, "CATCH")]


@pytest.mark.parametrize("frames", [3, 5, 15])
def test_the_track_net_gives_a_window_of_a_long_track_the_features_of_that_window_alone(frames):
    """Training runs the track's convolutions over whole games (one output per window) and
    inference over one window per frame: both must give a window the same features, also at
    the window's first point (its step to the point before lies outside the window)."""
    from core.model import TrackNet

    torch.manual_seed(0)
    net = TrackNet(frames).eval()
    track = torch.rand(2, 40, 3) - 0.5
    with torch.no_grad():
        long = net(track)
        assert long.shape == (2, 64, 40 - frames + 1)
        for i in (0, 7, 40 - frames):
            alone = net(track[:, i:i + frames])
            assert alone.shape == (2, 64, 1)
            assert torch.allclose(long[:, :, i], alone[:, :, 0], atol=1e-5), i
        # Every point of the window counts, none outside it.
        moved = track.clone()
        moved[:, 7, :2] += 0.1
        changed = (net(moved) - long).abs().amax((0, 1)) > 1e-6
    assert changed.nonzero().flatten().tolist() == list(range(max(0, 7 - frames + 1), 8))


def test_inference_never_opens_a_video_swapped_for_a_link_to_the_database(model, tmp_path):
    """A job holds the store; opening the database through a swapped video path and closing it
    would drop that process's SQLite locks. Inference opens the file imported, or nothing."""
    from core.errors import BallspotError
    from core.ingest import import_source
    from core.runner import infer_games
    from core.store import Store
    from core.workspace import Workspace

    folder = generate_game(tmp_path / "S", SynthConfig(minutes=0.04, seed=6, render=RenderOptions(160, 90)))
    ws = Workspace.at(tmp_path / "W").ensure()
    save(model, tmp_path / "m")
    with Store.open(ws) as store:
        import_source(store, tmp_path / "S", workspace=ws, split="test")
        store.register_model("m", path=str(tmp_path / "m"))
        game = store.games()[0]
        video = folder / next(p.name for p in folder.iterdir() if p.suffix == ".mp4")
        video.unlink()
        video.symlink_to(ws.db_path)
        with pytest.raises(BallspotError, match="re-import"):
            infer_games(store, ws, "m", tmp_path / "m", [game["url_local"]], InferConfig(tta=False),
                        skip_missing=False)
        assert store.predictions(game["id"], "m") == []


@pytest.fixture
def light():
    """A light model with a track, for the compiled path's tests."""
    torch.manual_seed(5)
    return BallActionModel(ModelConfig(encoder="mobilenetv3_small_050", frames=9, input_size=(64, 112),
                                       feature_stage=-2, proj_channels=16, blocks_3d=1, stack_channels=16,
                                       track_frames=15)).eval()


def test_the_compiled_path_gives_the_eager_scores_and_compiles_each_part_once(light, noise, monkeypatch):
    """Compiled, each part sees one input shape (batches padded), so a game of any length,
    its short last batch included, compiles the encoder and the head once each. Inductor's own
    code generation takes a minute on 2 cores; dynamo with the eager backend checks the same
    padding, slicing and tracing (the bench runs inductor on long games)."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(tuple(tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)))
        return gm.forward

    monkeypatch.setattr("core.infer._compile", lambda fn: torch.compile(fn, backend=backend, dynamic=False))
    torch._dynamo.reset()
    for tta in (True, False):
        eager = frame_scores(light, iter(noise), InferConfig(batch=8, tta=tta, compile=False))
        compiled = frame_scores(light, iter(noise), InferConfig(batch=8, tta=tta, compile=True))
        assert np.abs(compiled.scores - eager.scores).max() < 1e-5
        assert np.abs(compiled.team - eager.team).max() < 1e-5
    assert len(graphs) == 4, graphs  # two parts, with and without TTA (views double the batch)
    frame_scores(light, iter(noise[:29]), InferConfig(batch=8, tta=True, compile=True))
    assert len(graphs) == 4, "another length, another last batch: no new compile"


def test_inference_compiles_with_the_weights_frozen_in_and_leaves_the_setting_as_it_was(monkeypatch):
    """Freezing folds the batch norms into the convolutions (the README has what it gains), but
    inductor reads it when it compiles, at the first call, not from torch.compile's options: it
    must be on during the calls and off again after."""
    import torch._inductor.config as inductor

    seen = []

    def fake_compile(fn, **kwargs):
        def run(*args):
            seen.append(inductor.freezing)
            return fn(*args)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    before = inductor.freezing
    from core.infer import _compile
    assert _compile(lambda x: x + 1)(torch.zeros(2)).tolist() == [1.0, 1.0]
    assert seen == [True]
    assert inductor.freezing == before


def test_a_compile_that_fails_falls_back_to_the_eager_model_and_says_so(light, noise, monkeypatch):
    def broken(fn):
        def call(*args):
            raise RuntimeError("no C++ compiler found\nmore detail")
        return call

    monkeypatch.setattr("core.infer._compile", broken)
    steps = []
    eager = frame_scores(light, iter(noise), InferConfig(batch=8, compile=False))
    got = frame_scores(light, iter(noise), InferConfig(batch=8, compile=True), progress=steps.append)
    assert np.array_equal(got.scores, eager.scores)
    notes = [s.text for s in steps if s.kind == "note"]
    assert notes == ["compiling the model failed (RuntimeError: no C++ compiler found); running it uncompiled"]
    assert steps[-1].done == len(noise), "the last step reports every frame"


def test_inference_runs_on_its_own_threads_and_gives_them_back(light, noise, monkeypatch):
    seen = []
    forward = light.forward_head

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    monkeypatch.setattr(light, "forward_head", spy)
    before = torch.get_num_threads()
    frame_scores(light, iter(noise[:20]), InferConfig(batch=8, compile=False, threads=3))
    assert set(seen) == {3} and torch.get_num_threads() == before
    from core.infer import cpu_threads
    assert cpu_threads(InferConfig()) == max(1, len(os.sched_getaffinity(0)) - 1), "a core left to the decoder"


def test_inference_memory_does_not_grow_with_the_length_of_the_video():
    """Streaming: the demo model's memory after 2,500 frames is what it was after 1,000 (the
    scores once accumulated as thousands of small arrays, which kept the allocator's heap
    growing with every batch: about 40 MB more over these 1,500 frames, 1.3 GB over a match)."""
    import gc

    from core.labels import CLASSES

    model = load(ROOT / "assets" / "demo-model")
    h, w = model.config.input_size
    resident = {}

    def frames(n: int):
        frame = np.zeros((h, w), np.uint8)
        for i in range(n):
            if i in (1000, 2500):
                gc.collect()
                with open("/proc/self/statm") as f:
                    resident[i] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            yield frame.copy()

    out = frame_scores(model, frames(2600), InferConfig(tta=True, batch=16, compile=False), total=2600)
    assert out.scores.shape == (2600, len(CLASSES))
    growth = resident[2500] - resident[1000]
    assert growth < 10e6, f"{growth / 1e6:.0f} MB more after 1,500 more frames"
