"""The label vocabulary and time conversions every other module relies on."""
from __future__ import annotations

import json

import pytest

from conftest import real_label_files
from core.errors import BallspotError
from core.labels import (
    CLASSES, CLASS_INDEX, FPS, MS_PER_FRAME, clock, frame_to_ms, game_time, metric_frame, ms_to_frame,
    parse_game_time,
)
from core.workspace import Workspace


def test_classes_in_reference_order():
    assert CLASSES == ("PASS", "DRIVE", "HEADER", "HIGH PASS", "OUT", "CROSS", "THROW IN", "SHOT",
                       "BALL PLAYER BLOCK", "PLAYER SUCCESSFUL TACKLE", "FREE KICK", "GOAL")
    assert CLASS_INDEX["GOAL"] == 11 and FPS == 25 and MS_PER_FRAME == 40


def test_conversions_agree_with_every_real_annotation():
    """For all 8,453 real labels: ms -> frame -> ms is exact and our gameTime is the file's.

    SoccerNet's evaluation computes ``int(25 * (ms / 1000))`` in floating point, which puts
    some positions one frame early (34160 ms -> 853, not 854); ``metric_frame`` must do the same.
    """
    n = early = 0
    for path in real_label_files():
        for a in json.loads(path.read_text())["annotations"]:
            ms = int(a["position"])
            frame = ms_to_frame(ms)
            assert frame_to_ms(frame) == ms
            assert metric_frame(ms) == int(FPS * (int(a["position"]) / 1000))
            assert metric_frame(ms) in (frame, frame - 1)
            early += metric_frame(ms) != frame
            assert game_time(frame) == a["gameTime"]
            n += 1
    assert n == 8453 and 0 < early < n


def test_game_time_parsing_and_clock():
    assert parse_game_time("1 - 94:55") == (1, 94 * 60 + 55)
    assert parse_game_time("1 - 100:05") == (1, 6005)
    for bad in ("94:55", "1 - 94:5", "1 - 10:75", ""):
        with pytest.raises(ValueError):
            parse_game_time(bad)
    assert clock(0) == "00:00.00" and clock(45312) == "30:12.12" and clock(24) == "00:00.24"


def test_workspace_refuses_paths_outside_it(tmp_path):
    ws = Workspace.at(tmp_path / "ws").ensure()
    assert ws.inside("models/v1") == ws.root / "models" / "v1"
    for bad in ("../elsewhere", "/etc/passwd", "models/../../x"):
        with pytest.raises(BallspotError, match="outside the workspace"):
            ws.inside(bad)
    (ws.root / "link").symlink_to(tmp_path)
    with pytest.raises(BallspotError, match="outside the workspace"):
        ws.inside("link/file")
