"""Whole-game inference: a score per class for every frame, then events.

The model looks at a window of frames around each frame. Consecutive windows share stacks
(with the seed's 15 frames, step 2, a stack starting at frame f serves five windows), so each
stack's 2D features are computed once and cached: per output frame the 2D encoder runs on one
new stack, not five. Horizontal-flip test-time augmentation runs both views in one batch.
Post-processing per class: a Gaussian filter, then peaks above a height, a distance apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from core.labels import CLASSES, FPS, TEAMS_ROLE, TEAMS_SIDE
from core.progress import Progress, Step
from core.model import BallActionModel, ModelConfig, normalise, window_index
from core.video import FrameReader



@dataclass
class InferConfig:
    batch: int = 16
    tta: bool = True
    #: Post-processing: Gaussian sigma (frames), peak height, minimum peak distance (frames).
    sigma: float = 3.0
    height: float = 0.2
    distance: int = 15
    device: str | None = None
    #: Mixed precision on CUDA (ignored on the CPU).
    amp: bool = True


@dataclass
class Event:
    frame: int
    label: str
    team: str
    confidence: float


@dataclass
class GameScores:
    """Per-frame class probabilities and team probabilities (of the first team value)."""

    scores: np.ndarray  # (N, K) float32
    team: np.ndarray  # (N, K) float32
    #: |unflipped - flipped| class probability per frame (TTA only): where the model doubts.
    flip_gap: np.ndarray | None = None


def pick_device(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


class _Frames:
    """A look-ahead buffer over a frame stream: frame ``i`` on demand, clamped to the ends
    (the first and last frames repeat beyond the video), older frames forgotten."""

    def __init__(self, frames: Iterable[np.ndarray]):
        self._it: Iterator[np.ndarray] = iter(frames)
        self._buf: dict[int, np.ndarray] = {}
        self.read = 0
        self.done = False

    def _pull_until(self, i: int) -> None:
        while not self.done and self.read <= i:
            try:
                self._buf[self.read] = next(self._it)
                self.read += 1
            except StopIteration:
                self.done = True

    def get(self, i: int) -> np.ndarray:
        self._pull_until(i)
        if self.read == 0:
            raise ValueError("the video has no frames")
        return self._buf[min(max(i, 0), self.read - 1)]

    def forget_before(self, i: int) -> None:
        for k in [k for k in self._buf if k < i and k != 0]:
            del self._buf[k]


def _views(x: torch.Tensor, tta: bool) -> torch.Tensor:
    return torch.cat([x, x.flip(-1)]) if tta else x


def _combine(model: BallActionModel, logits: torch.Tensor, team: torch.Tensor, n: int,
             tta: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Probabilities, averaged over the two views, and the views' disagreement. A flip swaps
    left and right, so in side mode the flipped view's team probability is read the other way round."""
    p, q = torch.sigmoid(logits.float()), torch.sigmoid(team.float())
    if not tta:
        return p, q, None
    q_flip = 1 - q[n:] if model.config.team_mode == "side" else q[n:]
    return (p[:n] + p[n:]) / 2, (q[:n] + q_flip) / 2, (p[:n] - p[n:]).abs()


@torch.inference_mode()
def frame_scores(model: BallActionModel, frames: Iterable[np.ndarray], config: InferConfig | None = None,
                 total: int = 0, progress: Progress | None = None) -> GameScores:
    """Scores for every frame of a stream, with cached stack features."""
    cfg = config or InferConfig()
    device = pick_device(cfg.device)
    model = model.to(device).eval()
    mc = model.config
    offsets = mc.stack_offsets()
    step = mc.frame_step
    span = (mc.stack - 1) * step  # a stack's frames: f, f + step, ...
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=cfg.amp and device.type == "cuda")
    buf = _Frames(frames)
    # Per stack (keyed by its first frame): its features and, with a track, the ball's track
    # point, each for every view.
    cache: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    tracked = mc.track_frames > 0
    track_offsets = [int(o) for o in mc.track_offsets()]
    needed = sorted(set(offsets) | {o - mc.stack_lead for o in track_offsets})
    scores, teams, gaps = [], [], []
    t = 0
    while True:
        # Read ahead far enough for every window of the batch (or to the end of the video).
        buf._pull_until(t + cfg.batch - 1 + needed[-1] + span)
        n_known = buf.read
        if buf.done and t >= n_known:
            break
        batch = list(range(t, t + cfg.batch))
        if buf.done:
            batch = [w for w in batch if w < n_known]
        # A frame's track point is its centred stack's; beyond the ends, the end frame's (as
        # ``track_windows`` clamps). The read-ahead above tells where the end is when it matters.
        def track_start(f: int) -> int:
            f = max(f, 0)
            return (min(f, n_known - 1) if buf.done else f) - mc.stack_lead

        # The 2D part: only stacks not yet seen (one per window once the cache is warm).
        wanted = {w + o for w in batch for o in offsets}
        if tracked:
            wanted |= {track_start(w + o) for w in batch for o in track_offsets}
        starts = sorted(wanted - cache.keys())
        if starts:
            x = torch.from_numpy(np.stack([np.stack([buf.get(f + k * step) for k in range(mc.stack)])
                                           for f in starts])).to(device)
            with autocast:
                out = model.forward_stacks(_views(normalise(x), cfg.tta), track=tracked)
            feats, point = out if tracked else (out, None)
            half = len(starts)
            views_of = (lambda t, j: torch.stack([t[j], t[half + j]])) if cfg.tta else (lambda t, j: t[j][None])
            for j, f in enumerate(starts):
                cache[f] = (views_of(feats, j), views_of(point, j) if tracked else None)
        # The 3D part and heads for the whole batch, both views at once.
        views = 2 if cfg.tta else 1
        stacked = torch.stack([torch.stack([cache[w + o][0][v] for o in offsets]) for v in range(views) for w in batch])
        track = (torch.stack([torch.stack([cache[track_start(w + o)][1][v] for o in track_offsets])
                              for v in range(views) for w in batch]) if tracked else None)
        with autocast:
            logits, team = model.forward_head(stacked, track)
        p, q, gap = _combine(model, logits, team, len(batch), cfg.tta)
        scores.append(p.cpu().numpy())
        teams.append(q.cpu().numpy())
        if gap is not None:
            gaps.append(gap.cpu().numpy())
        t = batch[-1] + 1
        oldest = t + needed[0]
        for f in [f for f in cache if f < oldest]:
            del cache[f]
        buf.forget_before(oldest)
        if progress is not None:
            progress(Step(t, max(total, buf.read), "frames"))
    empty = np.zeros((0, mc.num_classes), np.float32)
    return GameScores(np.concatenate(scores) if scores else empty, np.concatenate(teams) if teams else empty,
                      np.concatenate(gaps) if gaps else None)


@torch.inference_mode()
def frame_tracks(model: BallActionModel, frames: Iterable[np.ndarray], batch: int = 64,
                 device: str | None = None, amp: bool = True) -> np.ndarray:
    """The ball's track point (u, v, confidence; ``BallHead.locate``) of every frame of a
    stream: the ball detector on the stack centred on the frame (clamped at the ends), at the
    precision ``frame_scores`` computes it (``amp``: float16 on CUDA)."""
    dev = pick_device(device)
    model = model.to(dev).eval()
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=amp and dev.type == "cuda")
    mc = model.config
    buf = _Frames(frames)
    out, t = [], 0
    while True:
        buf._pull_until(t + batch - 1 + mc.stack_lead)
        if buf.done and t >= buf.read:
            break
        idx = range(t, min(t + batch, buf.read) if buf.done else t + batch)
        x = np.stack([np.stack([buf.get(f - mc.stack_lead + k * mc.frame_step) for k in range(mc.stack)]) for f in idx])
        with autocast:
            _, point = model.forward_stacks(normalise(torch.from_numpy(x).to(dev)), track=True)
        out.append(point.float().cpu().numpy())
        t = idx[-1] + 1
        buf.forget_before(t - mc.stack_lead)
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


def track_windows(track: np.ndarray, centres: np.ndarray, config: ModelConfig) -> np.ndarray:
    """(len(centres), track_frames, 3): each centre's track, clamped at the ends of the game."""
    return track[window_index(centres, config.track_offsets(), len(track))]


@torch.inference_mode()
def frame_scores_uncached(model: BallActionModel, frames: np.ndarray, config: InferConfig | None = None) -> GameScores:
    """The reference: every window through the whole model. For tests and the speed bench."""
    cfg = config or InferConfig()
    device = pick_device(cfg.device)
    model = model.to(device).eval()
    mc = model.config
    n = len(frames)
    index = window_index(np.arange(n), mc.frame_offsets(), n)
    tracks = None
    if mc.track_frames:
        views = [frames, frames[..., ::-1]] if cfg.tta else [frames]
        tracks = [torch.from_numpy(frame_tracks(model, iter(v), cfg.batch, cfg.device, cfg.amp)) for v in views]
    scores, teams, gaps = [], [], []
    for s in range(0, n, cfg.batch):
        x = normalise(torch.from_numpy(frames[index[s:s + cfg.batch]]).to(device))
        b = len(x)
        track = None
        if tracks is not None:
            centres = np.arange(s, s + b)
            track = torch.cat([torch.from_numpy(track_windows(t.numpy(), centres, mc)) for t in tracks]).to(device)
        logits, team = model(_views(x, cfg.tta), track)
        p, q, gap = _combine(model, logits, team, b, cfg.tta)
        scores.append(p.cpu().numpy())
        teams.append(q.cpu().numpy())
        if gap is not None:
            gaps.append(gap.cpu().numpy())
    return GameScores(np.concatenate(scores), np.concatenate(teams), np.concatenate(gaps) if gaps else None)


def smooth(curve: np.ndarray, config: InferConfig) -> np.ndarray:
    """A class's score curve as the event picker sees it (Gaussian, ``config.sigma`` frames)."""
    curve = np.asarray(curve, np.float64)
    return gaussian_filter1d(curve, config.sigma, mode="constant") if config.sigma > 0 else curve


def events_from_scores(result: GameScores, config: InferConfig | None = None,
                       team_mode: str = "role", classes: tuple[str, ...] = CLASSES) -> list[Event]:
    """Per class: smooth, find peaks; the event's team from the team head around the peak."""
    cfg = config or InferConfig()
    teams = TEAMS_ROLE if team_mode == "role" else TEAMS_SIDE
    events = []
    for c, label in enumerate(classes):
        curve = smooth(result.scores[:, c], cfg)
        peaks, props = find_peaks(curve, height=cfg.height, distance=max(1, cfg.distance))
        for frame, height in zip(peaks, props["peak_heights"]):
            lo, hi = max(0, frame - 2), frame + 3
            side = float(result.team[lo:hi, c].mean())
            events.append(Event(int(frame), label, teams[0] if side >= 0.5 else teams[1],
                                float(np.clip(height, 0.0, 1.0))))
    order = {label: c for c, label in enumerate(classes)}
    events.sort(key=lambda e: (e.frame, order[e.label]))
    return events


def infer_video(model: BallActionModel, path: str | Path | BinaryIO, config: InferConfig | None = None,
                progress: Progress | None = None) -> tuple[GameScores, list[Event]]:
    """Scores and events of a whole video (a path, or a file opened by ``open_game_video``)."""
    cfg = config or InferConfig()
    # At the label rate (25 fps) whatever the video's: frame i of the scores is label frame i.
    with FrameReader(path, tuple(model.config.input_size), rate=FPS) as reader:
        result = frame_scores(model, reader, cfg, total=reader.frame_count, progress=progress)
    return result, events_from_scores(result, cfg, model.config.team_mode)


def save_curves(path: str | Path, result: GameScores) -> None:
    """Per-frame scores kept compactly for the UI's score lane: one byte per frame and class."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.npz")
    extra = {} if result.flip_gap is None else {"flip_gap": np.round(result.flip_gap * 255).astype(np.uint8)}
    np.savez_compressed(tmp, scores=np.round(result.scores * 255).astype(np.uint8),
                        team=np.round(result.team * 255).astype(np.uint8), **extra)
    tmp.replace(path)


def load_curves(path: str | Path) -> GameScores:
    data = np.load(path)
    gap = data["flip_gap"].astype(np.float32) / 255 if "flip_gap" in data.files else None
    return GameScores(data["scores"].astype(np.float32) / 255, data["team"].astype(np.float32) / 255, gap)
