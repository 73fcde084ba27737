"""Whole-game inference: a score per class for every frame, then events.

The model looks at a window of frames around each frame. Consecutive windows share stacks
(with the seed's 15 frames, step 2, a stack starting at frame f serves five windows), so each
stack's 2D features are computed once and kept: per output frame the 2D encoder runs on one
new stack, not five. Horizontal-flip test-time augmentation runs both views in one batch.
Post-processing per class: a Gaussian filter, then peaks above a height, a distance apart.

Speed: the kept stacks live in one tensor per view and a batch's windows are gathered from it
by index (no per-window Python); frames go to the device once each and stacks are built there;
on a CPU a long video runs the two parts compiled (``torch.compile``, weights frozen in), which
is several times faster than eager PyTorch on these small convolutions, once the compile is paid.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from core.labels import CLASSES, FPS, TEAMS_ROLE, TEAMS_SIDE
from core.model import BallActionModel, ModelConfig, normalise, window_index
from core.progress import Progress, Step
from core.video import FrameReader

#: A video at least this long (frames; 10 minutes) runs compiled on a CPU when ``InferConfig.compile``
#: is None: the compile's fixed cost (tens of seconds on a small CPU) is then earned back many times.
COMPILE_MIN_FRAMES = 15_000
#: Seconds between progress reports of one video (each may be a write to a job's row).
PROGRESS_EVERY_S = 0.5

@dataclass
class InferConfig:
    batch: int = 16
    tta: bool = True
    #: Post-processing: Gaussian sigma (frames), peak height, minimum peak distance (frames).
    sigma: float = 3.0
    height: float = 0.2
    distance: int = 15
    device: str | None = None
    #: Mixed precision on CUDA: bfloat16 where the GPU has it, else float16 (ignored on the CPU).
    amp: bool = True
    #: Run the model compiled (``torch.compile``, weights frozen in): True, False, or None for
    #: "on a CPU, for a video of at least ``COMPILE_MIN_FRAMES`` frames". Falls back to eager
    #: PyTorch, with a note, where compiling fails (no C++ compiler, say).
    compile: bool | None = None
    #: The model's CPU threads (torch's intra-op threads while inferring); None: one less than
    #: the cores this process may use, at least 1. The frame reader's thread (FFmpeg decoding)
    #: needs a core of its own: the model's threads meet at a barrier after every operation, and
    #: one of them waiting for a core holds them all back (on a busy 2-core machine, several times
    #: slower than one thread).
    threads: int | None = None


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


@dataclass
class InferStats:
    """Where inference's time went, in seconds, for the benches (``measure``). The reader's
    thread (decode, resize) runs beside the model: ``wait_s`` is how long the model waited for
    it, so a large one says reading bounds the speed."""

    frames: int = 0
    #: Wall time of the inference (frame_scores), and the model's wait for frames within it.
    total_s: float = 0.0
    wait_s: float = 0.0
    #: Spent in the reader's thread (overlapping the model).
    decode_s: float = 0.0
    resize_s: float = 0.0
    #: The 2D part (building stacks, the encoder, the ball detector) and the 3D part with the heads
    #: (gathering windows, the 3D blocks, pooling, heads, combining views), each including its
    #: first, compiling, calls (``compile_s``).
    encoder_s: float = 0.0
    head_s: float = 0.0
    compile_s: float = 0.0
    #: Events from the curves (Gaussian filter and peaks).
    post_s: float = 0.0
    compiled: bool = False

    def stages(self) -> dict[str, float]:
        """Seconds per stage, in the pipeline's order."""
        return {"decode": self.decode_s, "resize": self.resize_s, "encoder": self.encoder_s,
                "3D part + heads": self.head_s, "post-processing": self.post_s}

    def bound(self) -> str:
        """The stage that bounds the speed: the reader's slower stage when the model waited for
        frames longer than it spent in either of its own parts, else the slowest part after it."""
        if self.wait_s >= max(self.encoder_s, self.head_s, self.post_s):
            return "decode" if self.decode_s >= self.resize_s else "resize"
        own = {"encoder": self.encoder_s, "3D part + heads": self.head_s, "post-processing": self.post_s}
        return max(own, key=own.get)


_STATS: ContextVar[InferStats | None] = ContextVar("ballspot_infer_stats", default=None)


@contextmanager
def measure() -> Iterator[InferStats]:
    """Collect :class:`InferStats` of the inference run inside the block (this thread only; the
    timing adds a device synchronisation per stage on CUDA, so it is off unless asked for)."""
    stats = InferStats()
    token = _STATS.set(stats)
    try:
        yield stats
    finally:
        _STATS.reset(token)


def pick_device(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """What mixed precision computes in on ``device``: on CUDA bfloat16 where the GPU supports
    it (float32's range, so no overflow in the 3D part's sums and no loss scaling), else
    float16; None (float32) on a CPU."""
    if not (enabled and device.type == "cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """Mixed precision at :func:`amp_dtype`; nothing on a CPU."""
    dtype = amp_dtype(device, enabled)
    return torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None)


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


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` with its last row repeated up to ``n`` rows: compiled parts see one shape only."""
    return x if len(x) == n else torch.cat([x, x[-1:].expand(n - len(x), *x.shape[1:])])


def _compile(fn: Callable) -> Callable:
    """``fn`` compiled for inference: one input shape (``_Parts`` pads its batches), and the
    weights frozen in, so the batch norms fold into the convolutions (``bench/fullgame.py``
    measures the speed; the README has the figures)."""
    import torch._inductor.config as inductor

    compiled = torch.compile(fn, dynamic=False)

    def run(*args):
        # Freezing is read when inductor compiles, i.e. at a first call (torch.compile's
        # ``options={"freezing": True}`` did not reach it): set for the calls, not globally.
        with inductor.patch(freezing=True):
            return compiled(*args)
    return run


class _Parts:
    """The model's two parts as inference runs them: eager, or compiled for fixed batch shapes
    (inputs padded to ``rows``), falling back to eager if compiling fails."""

    def __init__(self, model: BallActionModel, device: torch.device, cfg: InferConfig, compiled: bool,
                 progress: Progress | None):
        self.model, self.device, self.progress = model, device, progress
        self.tracked = model.config.track_frames > 0
        self.autocast = autocast(device, cfg.amp)
        self.compiled = compiled
        self.first = {"stacks": True, "head": True}
        if compiled:
            # Kept on the model (not in a table that would keep every model alive): a model
            # compiles once per process and device, whatever the games.
            key = (str(device), self.tracked)
            fns = model.__dict__.setdefault("_ballspot_compiled", {})
            if key not in fns:
                tracked = self.tracked
                fns[key] = (_compile(lambda x: model.forward_stacks(x, track=tracked)), _compile(model.forward_head))
            self._stacks, self._head = fns[key]

    def _run(self, name: str, compiled_fn: Callable, eager_fn: Callable, rows: int, *args):
        n = len(args[0])
        if self.compiled:
            stats = _STATS.get()
            t = time.perf_counter()
            try:
                with self.autocast:
                    out = compiled_fn(*(None if a is None else _pad(a, rows) for a in args))
            except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager model still works
                self.compiled = False
                why = (str(exc).strip().splitlines() or [""])[0][:160]
                if self.progress is not None:
                    self.progress(Step(0, 0, f"compiling the model failed ({type(exc).__name__}: {why}); "
                                             "running it uncompiled", "note"))
                return self._run(name, compiled_fn, eager_fn, rows, *args)
            if self.first[name] and stats is not None:
                stats.compile_s += time.perf_counter() - t
            self.first[name] = False
            return tuple(o[:n] for o in out) if isinstance(out, tuple) else out[:n]
        with self.autocast:
            return eager_fn(*args)

    def stacks(self, x: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, stack, H, W) normalised frames -> features (N, C, h, w) and track points (N, 3) or None."""
        out = self._run("stacks", getattr(self, "_stacks", None),
                        lambda x: self.model.forward_stacks(x, track=self.tracked), rows, x)
        return out if self.tracked else (out, None)

    def head(self, feats: torch.Tensor, track: torch.Tensor | None, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run("head", getattr(self, "_head", None), self.model.forward_head, rows, feats, track)


def cpu_threads(cfg: InferConfig) -> int:
    """The model's CPU threads under ``cfg`` (``InferConfig.threads``)."""
    if cfg.threads:
        return cfg.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for a block, then as they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _wants_compile(cfg: InferConfig, device: torch.device, total: int) -> bool:
    if cfg.compile is not None:
        return cfg.compile
    return device.type == "cpu" and total >= COMPILE_MIN_FRAMES


class _Clock:
    """Adds a block's wall time to a stats field (after the device has finished, on CUDA)."""

    def __init__(self, stats: InferStats | None, device: torch.device):
        self.stats, self.sync = stats, stats is not None and device.type == "cuda"

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.stats is None:
            yield
            return
        t = time.perf_counter()
        yield
        if self.sync:
            torch.cuda.synchronize()
        setattr(self.stats, name, getattr(self.stats, name) + time.perf_counter() - t)


class _Rows:
    """Per-frame rows written in place into one array for the whole stream, allocated at the
    announced length (doubled if the stream is longer). Kept as thousands of small arrays, a
    full match's scores would sit between the batches' large short-lived tensors in the
    allocator's heap, and the process's memory would grow with the video's length."""

    def __init__(self, width: int, capacity: int):
        self.data = np.empty((max(capacity, 1), width), np.float32)
        self.n = 0

    def add(self, rows: torch.Tensor) -> None:
        k = len(rows)
        if self.n + k > len(self.data):
            grown = np.empty((max(2 * len(self.data), self.n + k), self.data.shape[1]), np.float32)
            grown[:self.n] = self.data[:self.n]
            self.data = grown
        self.data[self.n:self.n + k] = rows.float().cpu().numpy()
        self.n += k

    def array(self) -> np.ndarray:
        return self.data[:self.n]


def frame_scores(model: BallActionModel, frames: Iterable[np.ndarray], config: InferConfig | None = None,
                 total: int = 0, progress: Progress | None = None) -> GameScores:
    """Scores for every frame of a stream, with cached stack features. ``total``: the stream's
    expected length (for progress, and for choosing to compile)."""
    cfg = config or InferConfig()
    with _threads(cpu_threads(cfg)):
        return _frame_scores(model, frames, cfg, total, progress)


@torch.inference_mode()
def _frame_scores(model: BallActionModel, frames: Iterable[np.ndarray], cfg: InferConfig, total: int,
                  progress: Progress | None) -> GameScores:
    device = pick_device(cfg.device)
    model = model.to(device).eval()
    mc = model.config
    stats = _STATS.get()
    clock = _Clock(stats, device)
    started = time.perf_counter()
    parts = _Parts(model, device, cfg, _wants_compile(cfg, device, total), progress)
    views = 2 if cfg.tta else 1
    step, lead, span = mc.frame_step, mc.stack_lead, (mc.stack - 1) * mc.frame_step
    offsets = np.asarray(mc.stack_offsets())
    tracked = mc.track_frames > 0
    track_offsets = mc.track_offsets().astype(np.int64)
    # How far past a window's centre its stacks start (the track's stacks are centred on its frames).
    reach = max(offsets.max(), track_offsets.max() - lead if tracked else offsets.max())
    buf = _Frames(frames)
    # The features (views, M, C, h, w) and track points (views, M, 3) of the stacks starting at
    # frames lo .. hi - 1: every stack a window of this batch or a later one may need, once.
    feats = points = None
    lo = hi = 0
    capacity = max(total, cfg.batch)
    scores, teams = _Rows(mc.num_classes, capacity), _Rows(mc.num_classes, capacity)
    gaps = _Rows(mc.num_classes, capacity) if cfg.tta else None
    t, last_report = 0, time.perf_counter()
    while True:
        # Read ahead far enough for every window of the batch (or to the end of the video).
        with clock("wait_s"):
            buf._pull_until(t + cfg.batch - 1 + int(reach) + span)
        n_known = buf.read
        if buf.done and t >= n_known:
            break
        windows = np.arange(t, t + cfg.batch)
        if buf.done:
            windows = windows[windows < n_known]
        starts = windows[:, None] + offsets[None]
        track_starts = None
        if tracked:
            # A frame's track point is its centred stack's; beyond the ends, the end frame's (as
            # ``track_windows`` clamps). The read-ahead above tells where the end is when it matters.
            f = np.maximum(windows[:, None] + track_offsets[None], 0)
            track_starts = (np.minimum(f, n_known - 1) if buf.done else f) - lead
        need_lo = int(min(starts.min(), track_starts.min() if tracked else starts.min()))
        need_hi = int(max(starts.max(), track_starts.max() if tracked else starts.max())) + 1
        if feats is None:
            lo = hi = need_lo
        with clock("encoder_s"):
            if need_lo > lo:  # stacks no window needs any more
                feats, points = feats[:, need_lo - lo:], points[:, need_lo - lo:] if tracked else None
                lo = need_lo
            # The 2D part: only stacks not yet seen (one per window once the cache is warm).
            for first in range(hi, need_hi, cfg.batch):
                new = np.arange(first, min(first + cfg.batch, need_hi))
                # Each frame goes to the device once; the stacks are built there by index.
                idx = np.clip(new[:, None] + step * np.arange(mc.stack)[None], 0, buf.read - 1)
                base = int(idx.min())
                block = np.stack([buf.get(i) for i in range(base, int(idx.max()) + 1)])
                x = torch.from_numpy(block).to(device, non_blocking=True)[torch.from_numpy(idx - base).to(device)]
                f_new, p_new = parts.stacks(_views(normalise(x), cfg.tta), views * cfg.batch)
                f_new = f_new.reshape(views, len(new), *f_new.shape[1:])
                feats = f_new if feats is None else torch.cat([feats, f_new], 1)
                if tracked:
                    p_new = p_new.reshape(views, len(new), 3)
                    points = p_new if points is None else torch.cat([points, p_new], 1)
            hi = max(hi, need_hi)
        with clock("head_s"):
            # The 3D part and heads for the whole batch, both views at once: windows gathered by index.
            b = len(windows)
            stacked = feats[:, torch.from_numpy(starts - lo).to(device)]
            stacked = stacked.reshape(views * b, len(offsets), *feats.shape[2:])
            track = (points[:, torch.from_numpy(track_starts - lo).to(device)].reshape(views * b, -1, 3)
                     if tracked else None)
            logits, team = parts.head(stacked, track, views * cfg.batch)
            p, q, gap = _combine(model, logits, team, b, cfg.tta)
            scores.add(p)
            teams.add(q)
            if gaps is not None:
                gaps.add(gap)
        t = int(windows[-1]) + 1
        # Frames before the first stack still to compute are never read again.
        buf.forget_before(min(hi, buf.read - 1))
        if progress is not None and (time.perf_counter() - last_report >= PROGRESS_EVERY_S
                                     or (buf.done and t >= buf.read)):
            last_report = time.perf_counter()
            progress(Step(t, max(total, buf.read), "frames"))
    if stats is not None:
        stats.frames += t
        stats.total_s += time.perf_counter() - started
        stats.compiled = stats.compiled or parts.compiled
    return GameScores(scores.array(), teams.array(), gaps.array() if gaps is not None else None)


@torch.inference_mode()
def frame_tracks(model: BallActionModel, frames: Iterable[np.ndarray], batch: int = 64,
                 device: str | None = None, amp: bool = True, total: int = 0) -> np.ndarray:
    """The ball's track point (u, v, confidence; ``BallHead.locate``) of every frame of a
    stream: the ball detector on the stack centred on the frame (clamped at the ends), at the
    precision ``frame_scores`` computes it (``amp``: ``autocast`` on CUDA), uncompiled.
    ``total``: the stream's expected length, the rows' first allocation (``_Rows``)."""
    dev = pick_device(device)
    model = model.to(dev).eval()
    mc = model.config
    buf = _Frames(frames)
    out, t = _Rows(3, total or batch), 0
    while True:
        buf._pull_until(t + batch - 1 + mc.stack_lead)
        if buf.done and t >= buf.read:
            break
        idx = range(t, min(t + batch, buf.read) if buf.done else t + batch)
        x = np.stack([np.stack([buf.get(f - mc.stack_lead + k * mc.frame_step) for k in range(mc.stack)]) for f in idx])
        with autocast(dev, amp):
            _, point = model.forward_stacks(normalise(torch.from_numpy(x).to(dev)), track=True)
        out.add(point)
        t = idx[-1] + 1
        buf.forget_before(t - mc.stack_lead)
    return out.array()


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
        tracks = [torch.from_numpy(frame_tracks(model, iter(v), cfg.batch, cfg.device, cfg.amp, n)) for v in views]
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
    stats = _STATS.get()
    # At the label rate (25 fps) whatever the video's: frame i of the scores is label frame i.
    with FrameReader(path, tuple(model.config.input_size), rate=FPS) as reader:
        result = frame_scores(model, reader, cfg, total=reader.frame_count, progress=progress)
        if stats is not None:
            stats.decode_s += reader.decode_s
            stats.resize_s += reader.resize_s
    t = time.perf_counter()
    events = events_from_scores(result, cfg, model.config.team_mode)
    if stats is not None:
        stats.post_s += time.perf_counter() - t
    return result, events


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
