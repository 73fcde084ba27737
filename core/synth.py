"""Synthetic soccer matches with exact ground truth: the offline demo, tests and benchmarks.

One game = an event script drawn from real label statistics (``synth_events``), a world
that acts it out (``synth_world``), and a broadcast-like rendering (``synth_render``),
written in SoccerNet's layout:

    OUT/synthetic/seed-<S>/<NN> - Reds - Blues/<H>p.mp4          H.264, 25 fps, short GOP, faststart
    OUT/synthetic/seed-<S>/<NN> - Reds - Blues/Labels-ball.json  SoccerNet format
    OUT/synthetic/seed-<S>/<NN> - Reds - Blues/positions.npz     ball, people, camera, per frame

The same seed and options give the same labels and the same frames.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np

from core.formats import annotation_dict, dumps
from core.labels import CLASSES, FPS, LABEL_FILE, TEAMS_ROLE
from core.match_stats import load as load_stats
from core.synth_events import script_events
from core.synth_render import Renderer, RenderOptions
from core.synth_world import World, simulate

SIDECAR = "positions.npz"
LEAGUE = "synthetic"
#: Keyframe every half second: seeking (browser, filmstrip, training clips) stays cheap.
GOP = 12

#: ``progress(done_frames, total_frames)``.
FrameProgress = Callable[[int, int], None]


@dataclass
class SynthConfig:
    minutes: float = 10.0
    seed: int = 0
    width: int = 640
    height: int = 360
    ball_scale: float = 2.0
    motion_blur: float = 0.0
    noise: float = 0.0
    #: x264 constant rate factor: larger is stronger compression (18 fine, 23 default, 30 rough).
    crf: int = 23
    #: Encoder threads (0 = as many as useful; 1 for a one-core measurement).
    threads: int = 0
    #: Byte-identical video for the same seed. x264's SIMD code reads a few bytes past the
    #: picture it is given, so its output can depend on whatever lies there in memory (seen
    #: here: 1 run in 10 differed). Exact mode turns x264's assembly off: encoding is about 3x
    #: slower (still over 90 frames/s at 640x360 on one core).
    exact: bool = True
    render: RenderOptions = field(init=False)

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 36:
            raise ValueError(f"--size {self.width}x{self.height}: both even, at least 64x36")
        if self.minutes <= 0 or self.n_frames < 1:
            raise ValueError(f"--minutes {self.minutes}: must give at least one frame")
        if self.seed < 0:
            raise ValueError(f"--seed {self.seed}: must be 0 or more")
        if not 0 <= self.motion_blur < 1 or self.noise < 0 or not 0 <= self.crf <= 51:
            raise ValueError("--blur in [0, 1), --noise >= 0, --crf in 0..51")
        self.render = RenderOptions(self.width, self.height, self.ball_scale, self.motion_blur, self.noise)

    @property
    def n_frames(self) -> int:
        return int(round(self.minutes * 60 * FPS))


def game_name(seed: int, index: int) -> str:
    """UrlLocal of a synthetic game: league/season/game like SoccerNet's."""
    return f"{LEAGUE}/seed-{seed}/{index + 1:02d} - Reds - Blues"


def _rng(config: SynthConfig, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, index]))


def plan(config: SynthConfig, index: int = 0) -> World:
    """The world of one game (events and every position), without drawing it."""
    rng = _rng(config, index)
    script = script_events(load_stats(), config.n_frames, rng)
    return simulate(script, config.n_frames, rng)


def labels_document(world: World, url_local: str) -> dict:
    events = sorted(world.events, key=lambda e: (e.frame, e.cls))
    return {
        "UrlLocal": url_local,
        "UrlYoutube": "",
        "annotations": [annotation_dict(e.frame, CLASSES[e.cls], TEAMS_ROLE[e.team], "visible") for e in events],
    }


def write_video(path: Path, renderer: Renderer, config: SynthConfig,
                progress: FrameProgress | None = None) -> np.ndarray:
    """Render and encode every frame; returns the ball's drawn pixel (u, v, radius) per frame."""
    n = config.n_frames
    ball_px = np.zeros((n, 3), np.float32)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = config.width, config.height, "yuv420p"
        options = {"crf": str(config.crf), "preset": "veryfast", "g": str(GOP), "keyint_min": str(GOP),
                   "sc_threshold": "0", "threads": str(config.threads)}
        if config.exact:
            options["x264-params"] = "asm=0"
        stream.options = options
        for i in range(n):
            img = renderer.frame(i)
            ball_px[i] = renderer.ball_pixel(i)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            for packet in stream.encode(frame):
                out.mux(packet)
            if progress is not None and (i % 250 == 0 or i == n - 1):
                progress(i + 1, n)
        for packet in stream.encode():
            out.mux(packet)
    return ball_px


def generate_game(out_root: str | Path, config: SynthConfig, index: int = 0,
                  progress: FrameProgress | None = None) -> Path:
    """Write one synthetic game under ``out_root``; returns its folder."""
    url_local = game_name(config.seed, index)
    folder = Path(out_root) / url_local
    folder.mkdir(parents=True, exist_ok=True)
    world = plan(config, index)
    renderer = Renderer(world, config.render, _rng(config, 10_000 + index))
    video = folder / f"{config.height}p.mp4"
    tmp = video.with_name(f".{video.name}.partial")
    ball_px = write_video(tmp, renderer, config, progress)
    players = np.concatenate([world.players, np.zeros(world.players.shape[:2] + (1,), np.float32)], axis=-1)
    feet = _feet_pixels(renderer, players)
    events = world.events
    np.savez_compressed(
        folder / SIDECAR,
        fps=FPS, width=config.width, height=config.height,
        ball=world.ball, ball_px=ball_px, players=world.players, players_px=feet,
        team=world.team, keeper=world.keeper, arms=world.arms,
        camera_target=renderer.target.astype(np.float32), camera_zoom=renderer.zoom.astype(np.float32),
        event_frame=np.array([e.frame for e in events], np.int32),
        event_class=np.array([e.cls for e in events], np.int8),
        event_team=np.array([e.team for e in events], np.int8),
        event_actor=np.array([e.actor for e in events], np.int8),
        event_xy=np.array([(e.x, e.y) for e in events], np.float32).reshape(-1, 2),
        config=np.array(str(asdict(config))),
    )
    (folder / LABEL_FILE).write_text(dumps(labels_document(world, url_local)))
    tmp.replace(video)
    return folder


def _feet_pixels(renderer: Renderer, players: np.ndarray) -> np.ndarray:
    out = np.zeros(players.shape[:2] + (2,), np.float32)
    for i in range(len(players)):
        renderer.cam.look(renderer.target[i], renderer.zoom[i])
        out[i] = renderer.cam.project(players[i])[0]
    return out


def generate(out_root: str | Path, config: SynthConfig, games: int = 1,
             progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Write ``games`` games; ``progress(done_frames, total_frames, message)``."""
    folders = []
    total = games * config.n_frames
    for k in range(games):
        report = None if progress is None else (
            lambda done, n, k=k: progress(k * config.n_frames + done, total, f"game {k + 1}/{games}"))
        folders.append(generate_game(out_root, config, k, report))
    return folders
