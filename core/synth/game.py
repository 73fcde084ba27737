"""One synthetic game, start to finish: plan it, draw it, write it in SoccerNet's layout.

``plan`` draws an event script (``events``) and acts it out (``world``); ``generate_game``
then renders the frames (``render``), encodes them and writes the labels and the sidecar
(``sidecar``). Everything random comes from the seed and the game's index, so the same
``SynthConfig`` gives the same labels and the same frames.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np

from core.formats import annotation_dict, dumps
from core.labels import CLASSES, FPS, LABEL_FILE, TEAMS_ROLE
from core.progress import Progress, Step, after
from core.synth.events import script_events
from core.synth.render import Renderer, RenderOptions
from core.synth.sidecar import SIDECAR
from core.synth.stats import load as load_stats
from core.synth.world import World, simulate

LEAGUE = "synthetic"
#: Keyframe every half second: seeking (browser, filmstrip, training clips) stays cheap.
GOP = 12

@dataclass
class SynthConfig:
    """One game's options: its length and seed, how its frames are drawn and how they are encoded."""

    minutes: float = 10.0
    seed: int = 0
    #: How the frames are drawn: size, ball size, motion blur, noise.
    render: RenderOptions = field(default_factory=RenderOptions)
    #: x264 constant rate factor: larger is stronger compression (18 fine, 23 default, 30 rough).
    crf: int = 23
    #: Encoder threads (0 = as many as useful; 1 for a one-core measurement).
    threads: int = 0
    #: Byte-identical video for the same seed. x264's SIMD code reads a few bytes past the
    #: picture it is given, so its output can depend on whatever lies there in memory (seen
    #: here: 1 run in 10 differed). Exact mode turns x264's assembly off: encoding is about 3x
    #: slower (still over 90 frames/s at 640x360 on one core).
    exact: bool = True

    def __post_init__(self) -> None:
        if self.minutes <= 0 or self.n_frames < 1:
            raise ValueError(f"--minutes {self.minutes}: must give at least one frame")
        if self.seed < 0:
            raise ValueError(f"--seed {self.seed}: must be 0 or more")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"--crf {self.crf}: must be in 0..51")

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
                progress: Progress | None = None) -> np.ndarray:
    """Render and encode every frame; returns the ball's drawn pixel (u, v, radius) per frame."""
    n = config.n_frames
    ball_px = np.zeros((n, 3), np.float32)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = config.render.width, config.render.height, "yuv420p"
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
                progress(Step(i + 1, n, "rendering"))
        for packet in stream.encode():
            out.mux(packet)
    return ball_px


def generate_game(out_root: str | Path, config: SynthConfig, index: int = 0,
                  progress: Progress | None = None) -> Path:
    """Write one synthetic game under ``out_root``; returns its folder."""
    url_local = game_name(config.seed, index)
    folder = Path(out_root) / url_local
    folder.mkdir(parents=True, exist_ok=True)
    world = plan(config, index)
    renderer = Renderer(world, config.render, _rng(config, 10_000 + index))
    video = folder / f"{config.render.height}p.mp4"
    tmp = video.with_name(f".{video.name}.partial")
    ball_px = write_video(tmp, renderer, config, progress)
    players = np.concatenate([world.players, np.zeros(world.players.shape[:2] + (1,), np.float32)], axis=-1)
    feet = _feet_pixels(renderer, players)
    events = world.events
    np.savez_compressed(
        folder / SIDECAR,
        fps=FPS, width=config.render.width, height=config.render.height,
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
             progress: Progress | None = None) -> list[Path]:
    """Write ``games`` games; progress in frames of all of them."""
    folders = []
    total = games * config.n_frames
    for k in range(games):
        folders.append(generate_game(out_root, config, k, after(progress, k * config.n_frames, total,
                                                                 f"game {k + 1}/{games}")))
    return folders
