"""bench/fullgame.py's parts, CI-sized: the full match it builds is one stream of the repeated
stretch with its labels repeated; it measures each stage, reads a child's own peak memory, and
names the stage that bounds a missed speed target."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.infer import InferStats
from core.labels import LABEL_FILE, ms_to_frame
from core.video import FrameReader, probe

from bench import fullgame


@pytest.fixture(scope="module")
def match(tmp_path_factory):
    """A 0.3-minute match at 160x90: a rendered 0.1-minute stretch three times."""
    cache = fullgame._cache(tmp_path_factory.mktemp("cache"))
    return cache, fullgame.build_match(cache, 0.3, 0.1, (160, 90))


def test_the_match_is_the_stretch_repeated_frame_for_frame_with_its_labels(match):
    cache, root = match
    assert (cache / ".gitignore").read_text() == "*\n", "the cache never enters the repository"
    stretch = next(cache.glob("stretch-*/**/90p.mp4"))
    video = next(root.rglob("90p.mp4"))
    info = probe(video)
    assert info.frame_count == 450 and info.duration_s == pytest.approx(18.0) and info.declared_s is None
    with FrameReader(stretch) as a, FrameReader(video) as b:
        one, whole = np.stack(list(a)), np.stack(list(b))
    assert len(one) == 150 and np.array_equal(whole, np.concatenate([one] * 3)), "decodes straight through the joins"
    src = json.loads((stretch.parent / LABEL_FILE).read_text())["annotations"]
    got = json.loads((video.parent / LABEL_FILE).read_text())
    assert got["UrlLocal"] == f"bench/fullgame/{video.parent.name}"
    frames = [ms_to_frame(int(a["position"])) for a in got["annotations"]]
    want = [ms_to_frame(int(a["position"])) + r * 150 for r in range(3) for a in src]
    assert frames == want and len(want) == 3 * len(src) > 0
    assert [a["label"] for a in got["annotations"]] == [a["label"] for a in src] * 3


def test_each_stage_is_measured_and_a_missed_target_names_what_bounds_it(match, tmp_path):
    cache, root = match
    ws, info = fullgame.fresh_workspace(cache, root, "test")
    assert info["frames"] == 450 and info["labels"] > 0
    video = str(next(root.rglob("90p.mp4")))
    r = {"minutes": 0.3, **info}
    # In a child of its own, as the bench runs it: the child's peak RSS is its own (a Python
    # decoding a tiny video), not this test process's (torch, the model: far more).
    r["decode"] = fullgame.in_child("decode", video=video)
    assert r["decode"]["frames"] == 450
    assert 0.005 < r["decode"]["peak_rss_gb"] < fullgame.peak_rss_gb()
    r["reader"] = fullgame.child_reader(video, [96, 160])
    r["cli"] = fullgame.child_cli(str(ws), info["game"], "cpu", 1, 16)
    r["open"] = fullgame.child_open(str(ws), info["game_id"])
    for key in ("reader", "cli"):
        r[key]["peak_rss_gb"] = 1.0
    for key in ("decode", "reader", "cli"):
        r[key]["fps"] = r[key]["frames"] / r[key]["seconds"]
    stats = r["cli"]["stats"]
    assert r["cli"]["frames"] == 450 and r["cli"]["events"] >= 0
    assert stats["frames"] == 450 and stats["encoder_s"] > 0 and stats["head_s"] > 0 and stats["decode_s"] > 0
    assert r["reader"]["frames"] == 450 and r["reader"]["decode_s"] > 0
    assert r["open"]["events"] == info["labels"] + r["cli"]["events"], "labels and predictions are sent"
    assert r["open"]["curve_frames"] == 450
    # A 160x90 video decodes far faster than the model runs: the speed target is missed, and
    # the report says which stage bounds it (here the model's, not decoding).
    lines = fullgame.report([r])
    miss = next(line for line in lines if "inference" in line and "decode-only (>=" in line)
    assert "MISSED -- bounded by " in miss
    assert r["cli"]["bound"] in ("encoder", "3D part + heads") and r["cli"]["bound"] in miss


def test_the_bound_is_the_reader_when_the_model_waits_for_frames():
    assert InferStats(wait_s=5, decode_s=9, resize_s=2, encoder_s=3, head_s=1).bound() == "decode"
    assert InferStats(wait_s=5, decode_s=2, resize_s=6, encoder_s=3, head_s=1).bound() == "resize"
    assert InferStats(wait_s=1, decode_s=9, resize_s=2, encoder_s=3, head_s=4).bound() == "3D part + heads"
    assert InferStats(wait_s=1, decode_s=9, resize_s=2, encoder_s=5, head_s=4).bound() == "encoder"
