"""Synthetic matches: decodable video, labels that follow the real statistics, labels tied to pixels."""
from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest

from core.labels import CLASSES, CLASS_INDEX, FPS, LABEL_FILE, MS_PER_FRAME
from conftest import ROOT
from core.synth import SIDECAR, RenderOptions, SynthConfig, generate_game, labels_document, plan
from core.synth.stats import load as load_stats

C = CLASS_INDEX


@pytest.fixture(scope="module")
def small_game(tmp_path_factory):
    """24 s at 640x360: what the pixel tests look at."""
    out = tmp_path_factory.mktemp("synth")
    config = SynthConfig(minutes=0.4, seed=3)
    return generate_game(out, config), config


def _frames(path):
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="bgr24")


def test_video_decodes_with_pyav_and_opencv(small_game):
    folder, config = small_game
    video = folder / f"{config.render.height}p.mp4"
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        assert stream.average_rate == FPS and stream.codec_context.name == "h264"
        keyframes = [i for i, p in enumerate(c.demux(stream)) if p.pts is not None and p.is_keyframe]
    assert sum(1 for _ in _frames(video)) == config.n_frames
    assert max(np.diff(keyframes)) <= 12, "short keyframe interval"
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_FPS) == FPS
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == config.n_frames
    head = video.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat")), \
        "faststart: the index comes before the media"


def test_ten_minutes_at_the_default_seed_show_every_class():
    doc = labels_document(plan(SynthConfig(minutes=10)), "x/y/z")
    assert {a["label"] for a in doc["annotations"]} == set(CLASSES)
    positions = [int(a["position"]) for a in doc["annotations"]]
    assert all(p % MS_PER_FRAME == 0 for p in positions) and positions == sorted(positions)


def test_thirty_minutes_follow_the_real_mix_and_rate():
    stats = load_stats()
    real = np.array(stats["counts"], float) / sum(stats["counts"])
    events = plan(SynthConfig(minutes=30)).events
    mix = np.bincount([e.cls for e in events], minlength=len(CLASSES)) / len(events)
    for cls in np.argsort(-real)[:6]:
        assert 0.5 <= mix[cls] / real[cls] <= 2.0, f"{CLASSES[cls]}: {mix[cls]:.3f} vs real {real[cls]:.3f}"
    rate = len(events) / 30
    assert abs(rate / stats["events_per_minute"] - 1) <= 0.25, f"{rate:.1f} events/min"


def test_same_seed_same_labels_and_frames(tmp_path):
    config = SynthConfig(minutes=0.15, seed=11, render=RenderOptions(160, 90))
    a = generate_game(tmp_path / "a", config)
    b = generate_game(tmp_path / "b", config)
    c = generate_game(tmp_path / "c", SynthConfig(minutes=0.15, seed=12, render=RenderOptions(160, 90)))
    assert (a / LABEL_FILE).read_bytes() == (b / LABEL_FILE).read_bytes()
    hashes = [[hashlib.sha256(f.tobytes()).hexdigest() for f in _frames(g / "90p.mp4")] for g in (a, b, c)]
    assert len(hashes[0]) == config.n_frames and hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def find_ball(img: np.ndarray) -> tuple[float, float] | None:
    """The ball by image processing alone: the largest round blob brighter than anything else
    drawn. The markings are off-white (darker than the ball); opening with a disc removes the
    goal frame and net, which are thinner than the ball. Brightness, not colour: H.264's
    half-resolution chroma tints a 3-pixel ball green."""
    bright = (cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) > 232).astype(np.uint8)
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    n, _, stats, centroids = cv2.connectedComponentsWithStats(bright)
    best, best_area = None, 0
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        fill = area / (np.pi * (max(w, h) / 2) ** 2)
        if 5 <= area <= 600 and max(w, h) <= 1.8 * min(w, h) and 0.55 <= fill <= 1.35 and area > best_area:
            best, best_area = (float(centroids[k][0]), float(centroids[k][1])), area
    return best


def test_event_frames_show_the_ball_where_the_sidecar_says(small_game):
    folder, config = small_game
    side = np.load(folder / SIDECAR)
    frames = set(int(f) for f in side["event_frame"]) | set(range(0, config.n_frames, 37))
    checked = errors = 0
    width, height = config.render.width, config.render.height
    for i, img in enumerate(_frames(folder / f"{height}p.mp4")):
        if i not in frames:
            continue
        u, v, r = side["ball_px"][i]
        if not (10 < u < width - 10 and 10 < v < height - 10):
            continue
        found = find_ball(img)
        checked += 1
        if found is None or np.hypot(found[0] - u, found[1] - v) > 3.0:
            errors += 1
    assert checked >= 15
    assert errors == 0, f"{errors} of {checked} frames: ball not found within 3 px of the sidecar"


def test_a_pass_ends_at_a_teammate():
    world = plan(SynthConfig(minutes=10))
    passes = 0
    for ev, nxt in zip(world.events, world.events[1:]):
        if ev.cls != C["PASS"] or nxt.team != ev.team or nxt.cls in (C["OUT"], C["GOAL"]):
            continue
        ball = world.ball[nxt.frame, :2]
        nearest = int(np.argmin(np.linalg.norm(world.players[nxt.frame, :22] - ball, axis=1)))
        assert world.team[nearest] == ev.team and nearest != ev.actor, f"pass at frame {ev.frame}"
        assert np.linalg.norm(world.players[nxt.frame, nearest] - ball) < 1.0
        passes += 1
    assert passes >= 20


def test_every_touch_is_by_a_player_of_the_labelled_team():
    world = plan(SynthConfig(minutes=10))
    for ev in world.events:
        if ev.cls in (C["OUT"], C["GOAL"]):
            assert ev.actor == -1
            continue
        assert world.team[ev.actor] == ev.team
        assert np.linalg.norm(world.players[ev.frame, ev.actor] - world.ball[ev.frame, :2]) < 1.0
        if ev.cls == C["HEADER"]:
            assert world.ball[ev.frame, 2] > 1.5, "a header meets the ball at head height"
        if ev.cls == C["THROW IN"]:
            assert min(world.ball[ev.frame, 1], 68 - world.ball[ev.frame, 1]) < 0.5


def test_goal_and_out_cross_their_lines():
    world = plan(SynthConfig(minutes=10))
    for ev in world.events:
        x, y = world.ball[ev.frame, :2]
        if ev.cls == C["GOAL"]:
            assert x in (0.0, 105.0) and abs(y - 34) < 3.66
        if ev.cls == C["OUT"]:
            assert x in (0.0, 105.0) or y in (0.0, 68.0)


def test_synthetic_games_import_and_list(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "launch.py"), *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=ROOT, timeout=300)
    made = run("synth", str(tmp_path / "S"), "--games", "2", "--minutes", "0.2", "--size", "160x90", "--seed", "5")
    assert made.returncode == 0, made.stderr
    done = run("import", str(tmp_path / "S"), "--workspace", str(tmp_path / "W"), "--split", "train")
    assert done.returncode == 0, done.stderr
    rows = json.loads(run("games", "--workspace", str(tmp_path / "W"), "--format", "json").stdout)
    assert [r["game"] for r in rows] == ["synthetic/seed-5/01 - Reds - Blues", "synthetic/seed-5/02 - Reds - Blues"]
    assert all(r["video"].startswith("90p") and r["split"] == "train" for r in rows)


def test_a_clip_too_short_for_any_event(tmp_path):
    folder = generate_game(tmp_path, SynthConfig(minutes=0.02, seed=1, render=RenderOptions(160, 90)))
    assert json.loads((folder / LABEL_FILE).read_text())["annotations"] == []
    assert sum(1 for _ in _frames(folder / "90p.mp4")) == 30


@pytest.mark.parametrize("options, why", [({"minutes": 0}, "--minutes"), ({"minutes": -1}, "--minutes"),
                                          ({"seed": -1}, "--seed"), ({"crf": 52}, "--crf")])
def test_bad_options_are_named(options, why):
    with pytest.raises(ValueError, match=why):
        SynthConfig(**options)


@pytest.mark.parametrize("options, why", [({"width": 63}, "--size"), ({"height": 35}, "--size"),
                                          ({"motion_blur": 1.0}, "--blur"), ({"noise": -1}, "--noise")])
def test_bad_render_options_are_named(options, why):
    with pytest.raises(ValueError, match=why):
        RenderOptions(**options)


def test_training_does_not_import_the_renderer():
    """Pretraining reads sidecars (``core.synth.sidecar``); that must not load the world
    simulation or the drawing code, which only rendering a game needs."""
    code = "import core.training, sys; print(sorted(m for m in sys.modules if m.startswith('core.synth')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = set(ast.literal_eval(done.stdout.strip().splitlines()[-1]))
    assert "core.synth.sidecar" in loaded, "pretraining reads the sidecar: the check would see nothing"
    assert not loaded & {"core.synth.game", "core.synth.render", "core.synth.world"}, sorted(loaded)
