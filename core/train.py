"""Training on the store's labels: the seed's recipe, from one CPU to several GPUs.

Targets: a class is positive at a frame when an event of that class lies within +-7 frames;
the team target only counts where the class is positive. Sampling: a game uniformly, then
with probability 0.5 a frame near an event (+-4 frames, events weighted by the effective
number of their class so rare classes are seen), else a rejected prediction's frame (a hard
negative) or any frame. Focal loss + team loss, AdamW, warm-up then cosine, EMA of weights,
validation mAP@1 each epoch; the best EMA weights become the model. Frames are decoded once
into a memory-mapped cache at training size when it fits, else read by random access.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from timm.utils import ModelEmaV3

from core.errors import BallspotError
from core.infer import InferConfig, events_from_scores, frame_scores, frame_tracks, track_windows
from core.labels import CLASS_INDEX, CLASSES, FPS, NUM_CLASSES, REVIEW_SOURCES, TARGET_SOURCES, TEAMS_ROLE, frame_to_ms
from core.metrics import GameEvents, average_map
from core.model import BallActionModel, ModelConfig, has_ball_detector, load_torch_file, normalise, save, window_index
from core.pretrain import NoSidecarError, PretrainConfig, pretrain
from core.store import Store
from core.versions import register_version
from core.video import FrameReader, open_game_video, read_frames
from core.workspace import Workspace

#: Caches up to this size are built in memory-mapped files; larger ones read the video.
FRAME_CACHE_LIMIT = 24 * 2**30


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 30
    samples_per_epoch: int = 6000
    batch: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 6
    min_lr_ratio: float = 0.01
    ema: float = 0.999
    focal_gamma: float = 1.2
    team_weight: float = 0.5
    target_window: int = 7
    near_event_p: float = 0.5
    near_window: int = 4
    hard_negative_p: float = 0.25
    class_beta: float = 0.999
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    #: Only these games (url_local); None: all of the training splits.
    train_games: list[str] | None = None
    #: Also learn from review work (human labels, accepted and rejected predictions) on games of
    #: other splits, validation splits excepted: what an analyst reviews is what retraining uses.
    reviewed_games: bool = True
    valid_splits: list[str] = field(default_factory=lambda: ["valid"])
    augment: bool = True
    workers: int = 2
    seed: int = 0
    amp: bool = True
    compile: bool = False
    frame_cache: bool = True
    valid_batch: int = 32
    #: Validate every N epochs (and always after the last): validation of long games is costly.
    valid_every: int = 1
    #: Learning rate of the 2D encoder relative to the rest; 0 freezes it (weights and batch-norm
    #: statistics), which on a CPU after pretraining trains the rest several times faster.
    encoder_lr_scale: float = 1.0
    #: Encoder pretraining on synthetic sidecars before training (0 steps: none); see core.pretrain.
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(steps=0))
    #: Models with a track: steps training the track's branch on every frame of the training
    #: games (``train_track``) before the clips; it then stays as trained. 0: with the clips only.
    track_steps: int = 0
    #: Tracks per step, and points (one every ``frame_step``) per track, of that training.
    track_batch: int = 8
    track_points: int = 512
    track_lr: float = 3e-3

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.samples_per_epoch < self.batch:
            raise BallspotError(f"training needs epochs >= 1 and samples_per_epoch >= batch >= 1 "
                                f"(got {self.epochs}, {self.samples_per_epoch}, {self.batch})")
        if self.track_steps < 0 or self.track_batch < 1 or self.track_points < self.model.track_frames:
            raise BallspotError(f"the track's training needs track_steps >= 0, track_batch >= 1 and track_points "
                                f">= model.track_frames (got {self.track_steps}, {self.track_batch}, "
                                f"{self.track_points}; track_frames {self.model.track_frames})")

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "TrainConfig":
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BallspotError(f"{path}: cannot read the training config ({exc})") from None
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise BallspotError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
        data["model"] = ModelConfig.from_dict(data.get("model", {}))
        try:
            data["pretrain"] = PretrainConfig(**{"steps": 0, **(data.get("pretrain") or {})})
        except TypeError as exc:
            raise BallspotError(f"{path}: pretrain: {exc}") from None
        return cls(**data)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["model"]["input_size"] = list(d["model"]["input_size"])
        return d


# --------------------------------------------------------------------------- data


@dataclass
class GameData:
    """One game as training sees it: frames, events, hard negatives."""

    game_id: int
    url_local: str
    n_frames: int
    frames: np.ndarray | None  # (N, H, W) uint8 memmap, or None to read the video
    #: The game's store row: its video is opened by ``open_game_video`` (the file imported).
    video: dict
    events: np.ndarray  # (E, 3): frame, class, team (0 first team value, 1 second)
    negatives: np.ndarray  # (R,) frames of rejected predictions
    labels: list[dict]  # SoccerNet-style annotations, for validation mAP
    #: Reviewed only in part (a game outside the training splits with review work): trained
    #: on windows around its reviewed events and rejected predictions, never on random frames,
    #: since an unreviewed stretch may hold events nobody labelled yet.
    partial: bool = False
    #: (N, 3) the ball's track point of every frame (``core.infer.frame_tracks``), for models
    #: with ``track_frames``; computed once per run by the frozen ball detector.
    track: np.ndarray | None = None

    def window(self, centre: int, config: ModelConfig) -> np.ndarray:
        idx = window_index(np.array([centre]), config.frame_offsets(), self.n_frames)[0]
        if self.frames is not None:
            return np.asarray(self.frames[idx])
        with open_game_video(self.video) as video:
            got = read_frames(video, idx.tolist(), tuple(config.input_size), rate=FPS)
        return np.stack([got[int(i)] for i in idx])

    @contextmanager
    def stream(self, size: tuple[int, int]) -> Iterator[Iterable[np.ndarray]]:
        """Every frame in order: from the frame cache, else decoded from the video."""
        if self.frames is not None:
            yield iter(self.frames)
        else:
            with open_game_video(self.video) as video, FrameReader(video, size, rate=FPS) as reader:
                yield reader


def frame_cache(workspace: Workspace, game: dict, size: tuple[int, int]) -> np.ndarray:
    """Decode a game once at training size into ``cache/frames`` (rebuilt if the video changes)."""
    key = f"game-{game['id']}-{size[0]}x{size[1]}-{game['size_bytes']}-{int(game['video_mtime'] or 0)}"
    folder = workspace.root / "cache" / "frames"
    path = folder / f"{key}.u8"
    meta = folder / f"{key}.json"
    if path.is_file() and meta.is_file():
        n = json.loads(meta.read_text())["frames"]
        return np.memmap(path, np.uint8, "r", shape=(n, *size))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"game-{game['id']}-{size[0]}x{size[1]}-*"):
        old.unlink()  # an older cache of a video that has changed
    n_max = int(game["frame_count"]) + 64
    tmp = folder / f".{key}.{os.getpid()}.partial"
    out = np.memmap(tmp, np.uint8, "w+", shape=(n_max, *size))
    n = 0
    # Label frames, whatever the video's fps; the file imported, never what a link now points at.
    with open_game_video(game) as video, FrameReader(video, size, rate=FPS) as reader:
        for frame in reader:
            if n == n_max:
                break
            out[n] = frame
            n += 1
    out.flush()
    del out
    with open(tmp, "r+b") as f:
        f.truncate(n * size[0] * size[1])
    tmp.replace(path)
    meta.write_text(json.dumps({"frames": n, "video": game["video_path"]}))
    return np.memmap(path, np.uint8, "r", shape=(n, *size))


def load_games(store: Store, workspace: Workspace, splits: list[str], config: TrainConfig,
               only: list[str] | None = None, reviewed: bool = False) -> list[GameData]:
    """The games of ``splits`` (or only those named), plus, with ``reviewed``, the review work
    on games of other splits except the validation ones (see ``GameData.partial``)."""
    size = tuple(config.model.input_size)
    out = []
    for g in store.games():
        if not g["video_path"] or not Path(g["video_path"]).is_file():
            continue
        if only is not None and g["url_local"] not in only:
            continue
        partial = g["split"] not in splits
        if partial and (not reviewed or g["split"] in config.valid_splits):
            continue
        labels = store.labels(g["id"], sources=REVIEW_SOURCES if partial else TARGET_SOURCES)
        n = int(g["frame_count"])
        events = np.array([(r["frame"], CLASS_INDEX[r["label"]], int(r["team"] in ("away", "right")))
                           for r in labels if r["frame"] < n], dtype=np.int64).reshape(-1, 3)
        negatives = np.array([p["frame"] for p in store.predictions(g["id"]) if p["status"] == "rejected"],
                             dtype=np.int64)
        if partial and not len(events) and not len(negatives):
            continue
        cache_bytes = n * size[0] * size[1]
        frames = frame_cache(workspace, g, size) if config.frame_cache and cache_bytes <= FRAME_CACHE_LIMIT else None
        if frames is not None:
            n = len(frames)
        annotations = [{"position": str(frame_to_ms(r["frame"])), "label": r["label"], "team": r["team"],
                        "visibility": r["visibility"]} for r in labels]
        out.append(GameData(g["id"], g["url_local"], n, frames, g, events, negatives, annotations,
                            partial))
    return out


def _near(events: np.ndarray, centres: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, e): event ``e`` lies within ``window`` frames of ``centres[i]``."""
    if not len(events):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.nonzero(np.abs(np.asarray(centres)[:, None] - events[None, :, 0]) <= window)


def targets(game: GameData, centre: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class targets, team targets and the team mask at ``centre``."""
    y = class_targets(game, np.array([centre]), window)[0]
    team = np.zeros(NUM_CLASSES, np.float32)
    _, near = _near(game.events, np.array([centre]), window)
    for _, cls, side in game.events[near]:
        team[cls] = float(side == 0)  # the team head predicts "the first team"
    return y, team, y.copy()  # the team counts where its class is positive


def class_targets(game: GameData, centres: np.ndarray, window: int) -> np.ndarray:
    """(len(centres), K) class targets of many centre frames at once (``train_track``'s windows)."""
    y = np.zeros((len(centres), NUM_CLASSES), np.float32)
    i, e = _near(game.events, centres, window)
    y[i, game.events[e, 1]] = 1.0
    return y


def class_weights(games: list[GameData], beta: float) -> np.ndarray:
    """Per class 1 / effective number of samples: (1 - beta) / (1 - beta ** n)."""
    counts = np.zeros(NUM_CLASSES)
    for g in games:
        counts += np.bincount(g.events[:, 1], minlength=NUM_CLASSES) if len(g.events) else 0
    w = (1 - beta) / (1 - np.power(beta, np.maximum(counts, 1)))
    return w / w.sum()


def sample_epoch(games: list[GameData], config: TrainConfig, rng: np.random.Generator) -> list[tuple[int, int, str]]:
    """``(game index, centre frame, why)`` for one epoch; why is event, negative or random."""
    weights = class_weights(games, config.class_beta)
    out = []
    for _ in range(config.samples_per_epoch):
        gi = int(rng.integers(len(games)))
        g = games[gi]
        r = rng.random()
        if g.partial:  # only around what was reviewed: its events, else its rejected predictions
            kind = "event" if len(g.events) and (not len(g.negatives) or r < 0.5) else "negative"
        elif r < config.near_event_p and len(g.events):
            kind = "event"
        elif r < config.near_event_p + (1 - config.near_event_p) * config.hard_negative_p and len(g.negatives):
            kind = "negative"
        else:
            kind = "random"
        if kind == "event":
            p = weights[g.events[:, 1]]
            e = g.events[rng.choice(len(g.events), p=p / p.sum())]
            centre = int(e[0]) + int(rng.integers(-config.near_window, config.near_window + 1))
        elif kind == "negative":
            centre = int(g.negatives[rng.integers(len(g.negatives))])
        else:
            centre = int(rng.integers(g.n_frames))
        why = kind
        out.append((gi, int(np.clip(centre, 0, g.n_frames - 1)), why))
    return out


class ClipDataset(torch.utils.data.Dataset):
    def __init__(self, games: list[GameData], samples: list[tuple[int, int, str]], config: TrainConfig, seed: int):
        self.games, self.samples, self.config, self.seed = games, samples, config, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        gi, centre, _ = self.samples[i]
        g, mc = self.games[gi], self.config.model
        rng = np.random.default_rng((self.seed, i))
        if self.config.augment and rng.random() < 0.5:
            centre = int(np.clip(centre + rng.integers(-1, 2), 0, g.n_frames - 1))  # +-1 frame shake
        frames = g.window(centre, mc)
        y, team, mask = targets(g, centre, self.config.target_window)
        track = (track_windows(g.track, np.array([centre]), mc)[0].copy() if g.track is not None
                 else np.zeros((0, 3), np.float32))
        if self.config.augment:
            frames, team, track = augment(frames, team, mask, mc.team_mode, rng, track, track_times(mc))
        return torch.from_numpy(np.ascontiguousarray(frames)), torch.from_numpy(y), torch.from_numpy(team), \
            torch.from_numpy(mask), torch.from_numpy(np.ascontiguousarray(track, np.float32))


def pan_time(index: np.ndarray | float, frames: int) -> np.ndarray | float:
    """Where clip frame ``index`` lies on the simulated camera pan: -0.5 first, 0.5 last."""
    return np.asarray(index) / max(frames - 1, 1) - 0.5


def track_times(config: ModelConfig) -> np.ndarray:
    """The track's frames on the pan's time axis (they reach beyond the clip's ends)."""
    return pan_time(config.track_offsets() / config.frame_step + config.frames // 2, config.frames)


def random_motion(rng: np.random.Generator, w: int, h: int) -> tuple[bool, np.ndarray, np.ndarray]:
    """A flip, a small affine (2x3, pixel-index coordinates) and a camera drift over a clip."""
    import cv2

    flip = bool(rng.random() < 0.5)
    scale = 1 + rng.uniform(-0.05, 0.05)
    angle = rng.uniform(-3, 3)
    pan = rng.uniform(-0.03, 0.03, 2) * (w, h)  # the camera drifts over the clip
    return flip, cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale), pan


def move_track(track: np.ndarray, flip: bool, m: np.ndarray, w: int, h: int,
               pan: np.ndarray | None = None, times: np.ndarray | None = None) -> np.ndarray:
    """The ball's track (u, v as fractions of the picture around its centre) moved as
    ``random_motion`` moves the pictures: flipped, then ``m``, then ``pan`` at ``times``."""
    track = track.copy()
    if flip:
        track[:, 0] = -track[:, 0]
    # Pixel-index coordinates (what warpAffine maps), moved, and back.
    xy = (track[:, :2] + 0.5) * (w, h) - 0.5
    xy = xy @ m[:, :2].T + m[:, 2]
    if pan is not None:
        xy = xy + pan * np.asarray(times)[:, None]
    track[:, :2] = (xy + 0.5) / (w, h) - 0.5
    return track


def augment(frames: np.ndarray, team: np.ndarray, mask: np.ndarray, team_mode: str, rng: np.random.Generator,
            track: np.ndarray | None = None, times: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Flip, brightness and contrast, a small affine, and a simulated camera pan across the clip.
    The ball's ``track`` (at ``times`` on the pan, see ``track_times``) moves with the picture."""
    import cv2

    t, h, w = frames.shape
    flip, m, pan = random_motion(rng, w, h)
    if flip:
        frames = frames[:, :, ::-1]
        if team_mode == "side":
            team = np.where(mask > 0, 1 - team, team)
    out = np.empty_like(frames)
    for k in range(t):
        mk = m.copy()
        mk[:, 2] += pan * pan_time(k, t)
        out[k] = cv2.warpAffine(np.ascontiguousarray(frames[k]), mk, (w, h), borderMode=cv2.BORDER_REFLECT)
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if track is not None and len(track):
        track = move_track(track, flip, m, w, h, pan, times)
    return out, team, track


# --------------------------------------------------------------------------- loss, schedule


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    return (ce * (1 - pt).pow(gamma)).mean()


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


# --------------------------------------------------------------------------- validation


def validate(model: BallActionModel, games: list[GameData], config: TrainConfig, device: torch.device) -> dict:
    """mAP@1 on the validation games with the given (EMA) weights."""
    if not games:
        return {"mAP@1": None, "per_class": {}}
    model.eval()
    entries = []
    infer = InferConfig(batch=config.valid_batch, tta=False, device=str(device))
    for g in games:
        with g.stream(tuple(config.model.input_size)) as frames:
            scores = frame_scores(model, frames, infer)
        events = events_from_scores(scores, infer, config.model.team_mode)
        preds = [{"position": str(frame_to_ms(e.frame)), "label": e.label, "team": e.team,
                  "confidence": e.confidence} for e in events]
        entries.append(GameEvents(g.url_local, g.labels, preds))
    result = average_map(entries, "at1")
    return {"mAP@1": result.mAP, "per_class": result.per_class}


# --------------------------------------------------------------------------- the loop


Progress = Callable[[dict], None]


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def train(config: TrainConfig, store: Store, workspace: Workspace, *, out: Path, init: Path | None = None,
          parent: str | None = None, version: str | None = None, resume: bool = False,
          progress: Progress | None = None) -> dict | None:
    """Train, validate each epoch, save the best EMA weights to ``out/model`` and register them.

    ``resume`` continues from ``out/checkpoint.pt``. Returns the registered model row (rank 0).
    """
    rank, world = _distributed()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    if init is not None:
        # Fine-tuning keeps the architecture of the model it starts from; the config brings
        # the schedule, sampling and augmentations.
        from core.model import load_config
        config.model = load_config(init)
    if world > 1 and rank != 0:
        dist.barrier()  # rank 0 builds the frame caches first; the others then open them
    train_games = load_games(store, workspace, config.train_splits, config, config.train_games,
                             reviewed=config.reviewed_games)
    if world > 1 and rank == 0:
        dist.barrier()
    if not train_games or not any(len(g.events) for g in train_games):
        raise BallspotError(f"no labelled game with a video in splits {config.train_splits}")
    valid_games = load_games(store, workspace, config.valid_splits, config) if rank == 0 else []
    fingerprint = store.label_fingerprint([g.game_id for g in train_games])

    out = Path(out)
    if config.pretrain.steps and init is None and not config.model.pretrained_weights:
        config.model.pretrained_weights = _pretrained_encoder(config, store, workspace, out, rank, world, progress)
    if config.model.track_frames and init is None and not has_ball_detector(config.model.pretrained_weights):
        # Real games have no sidecar to pretrain the detector on: a random one's track is
        # noise, so this run's model goes without (and says so).
        config.model.track_frames = 0
        if progress is not None and rank == 0:
            progress({"phase": "track", "skipped": "no trained ball detector (no synthetic game to pretrain it on, "
                      "no --init model with one): training without the ball's track"})
    model = BallActionModel(config.model)
    if init is not None:
        from core.model import load as load_model
        model.load_state_dict(load_model(init).state_dict())
    model.to(device)
    # A model that sees the ball's track keeps its encoder and ball detector as they are: the
    # track of every frame is computed once, here, from them. The track's branch, trained on
    # every frame of the games, stays as trained too.
    frozen = config.encoder_lr_scale == 0 or config.model.track_frames > 0
    kept = [model.encoder] if frozen else []
    if config.model.track_frames:
        kept.append(model.ball)
        add_tracks(model, train_games, config, device, progress if rank == 0 else None)
        if config.track_steps and track_games(train_games):
            if not resume:
                train_track(model, train_games, config, device, progress if rank == 0 else None, world)
            kept += [model.track_net, model.track_head]
        elif config.track_steps and progress is not None and rank == 0:
            # Only games reviewed in part: their unreviewed stretches are unknown, so the
            # branch learns with the clips instead.
            progress({"phase": "track", "skipped": "no fully labelled training game: the track's branch "
                      "trains with the clips only"})
    for module in kept:
        module.requires_grad_(False)
    ema = ModelEmaV3(model, decay=config.ema)
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in encoder_ids and p.requires_grad]}]
    if not frozen:
        groups.append({"params": [p for p in model.encoder.parameters() if p.requires_grad],
                       "lr": config.lr * config.encoder_lr_scale})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, config.samples_per_epoch // (config.batch * world))
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, config.min_lr_ratio))
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    if config.compile:
        net = torch.compile(net)

    checkpoint = out / "checkpoint.pt"
    history: list[dict] = []
    start_epoch, best = 0, -math.inf
    if resume:
        if not checkpoint.is_file():
            raise BallspotError(f"{out}: no checkpoint to resume from")
        state = load_torch_file(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        ema.module.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.as_dict(), sort_keys=False))
    log = out / "progress.jsonl"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda")

    for epoch in range(start_epoch, config.epochs):
        rng = np.random.default_rng((config.seed, epoch))
        samples = sample_epoch(train_games, config, rng)[rank::world]
        loader = torch.utils.data.DataLoader(
            ClipDataset(train_games, samples, config, seed=config.seed * 1000 + epoch * 7919 + rank),
            batch_size=config.batch, shuffle=False, num_workers=config.workers, drop_last=True,
            persistent_workers=False)
        net.train()
        for module in kept:
            module.eval()  # and their batch-norm statistics
        t0, seen, running, running_class = time.perf_counter(), 0, 0.0, 0.0
        for step, (frames, y, team, mask, track) in enumerate(loader):
            if step >= steps_per_epoch:
                break
            frames, y, team, mask, track = (t.to(device, non_blocking=True) for t in (frames, y, team, mask, track))
            with autocast:
                logits, team_logits = net(normalise(frames), track if config.model.track_frames else None)
                loss = focal_loss(logits.float(), y, config.focal_gamma)
                team_loss = (F.binary_cross_entropy_with_logits(team_logits.float(), team, reduction="none")
                             * mask).sum() / mask.sum().clamp(min=1)
                total_loss = loss + config.team_weight * team_loss
            optimizer.zero_grad(set_to_none=True)
            total_loss.backward()
            optimizer.step()
            scheduler.step()
            ema.update(model)
            seen += len(frames)
            running += float(total_loss.detach())
            running_class += float(loss.detach())
            if rank == 0 and progress is not None and step % 10 == 0:
                progress({"epoch": epoch + 1, "step": step + 1, "steps": steps_per_epoch,
                          "loss": float(total_loss.detach()), "lr": scheduler.get_last_lr()[0]})
        elapsed = time.perf_counter() - t0
        if world > 1:
            # Gradients are averaged, so weights agree; batch-norm statistics are each rank's
            # own since the last step. Take rank 0's so every rank holds the same model.
            for module in (model, ema.module):
                for buffer in module.buffers():
                    dist.broadcast(buffer, src=0)
            dist.barrier()
        if rank == 0:
            validating = (epoch + 1) % max(1, config.valid_every) == 0 or epoch + 1 == config.epochs
            metrics = validate(ema.module, valid_games if validating else [], config, device)
            score = metrics["mAP@1"] if metrics["mAP@1"] is not None else -running
            if not validating:
                score = -math.inf
            record = {"epoch": epoch + 1, "loss": running / max(1, step + 1),
                      "class_loss": running_class / max(1, step + 1), "lr": scheduler.get_last_lr()[0],
                      "samples_per_s": seen * world / max(elapsed, 1e-9), "valid_map": metrics["mAP@1"],
                      "per_class": metrics["per_class"]}
            history.append(record)
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
            if progress is not None:
                progress(record)
            if score > best:
                best = score
                save(ema.module, out / ".best-partial")
                shutil.rmtree(out / "best", ignore_errors=True)
                (out / ".best-partial").rename(out / "best")
            save_checkpoint(checkpoint, {"model": model.state_dict(), "ema": ema.module.state_dict(),
                                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                         "epoch": epoch + 1, "best": best, "history": history})
        if world > 1:
            dist.barrier()

    # Each rank leaves a digest of its weights: after DDP they must all be the same.
    digest = hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for v in model.state_dict().values()))
    (out / f"rank-{rank}.sha256").write_text(digest.hexdigest())
    registered = None
    if rank == 0:
        final = out / "model"
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(out / "best", final)
        best_record = max(history, key=lambda r: r["valid_map"] if r["valid_map"] is not None else -1)
        metrics = {"valid_map@1": best_record["valid_map"], "per_class": best_record["per_class"],
                   "epochs": len(history), "train_games": [g.url_local for g in train_games],
                   "valid_games": [g.url_local for g in valid_games],
                   "reviewed_labels": int(sum(len(g.events) for g in train_games))}
        (final / "metrics.json").write_text(json.dumps(metrics, indent=2))
        shutil.copy(log, final / "progress.jsonl")
        name = version or _next_version(store)
        registered = register_version(store, name, path=str(final.resolve()), parent=parent,
                                      config=config.as_dict(), metrics=metrics, label_fingerprint=fingerprint)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return registered


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a resumable checkpoint whole, then rename it in (a kill leaves the previous one).

    Only tensors and plain Python values go in (the history through JSON, ``best`` as a
    float: no numpy scalars), so that resuming reads it with ``weights_only=True``
    (``load_torch_file``) and never unpickles code."""
    plain = {**state, "epoch": int(state["epoch"]), "best": float(state["best"]),
             "history": json.loads(json.dumps(state["history"]))}
    tmp = path.with_name(".checkpoint.partial")
    torch.save(plain, tmp)
    tmp.replace(path)


def add_tracks(model: BallActionModel, games: list[GameData], config: TrainConfig, device: torch.device,
               progress: Progress | None = None) -> None:
    """The ball's track of every frame of ``games`` by the model's (frozen) ball detector: what
    its heads see around each sample's centre, read from here rather than recomputed per sample."""
    size = tuple(config.model.input_size)
    t0 = time.perf_counter()
    for k, g in enumerate(games):
        with g.stream(size) as frames:
            g.track = frame_tracks(model, frames, config.valid_batch, str(device))
        g.n_frames = min(g.n_frames, len(g.track))
        g.track = g.track[:g.n_frames]  # windows of frames and of the track clamp at the same end
        if progress is not None:
            progress({"phase": "track", "game": k + 1, "games": len(games), "seconds": time.perf_counter() - t0})


def track_games(games: list[GameData]) -> list[GameData]:
    """The games ``train_track`` learns from: fully labelled (a game reviewed in part has
    stretches nobody labelled yet) and with a track."""
    return [g for g in games if not g.partial and g.track is not None and g.n_frames > 0]


def track_sequence(game: GameData, first: int, length: int, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """``length`` track points, one every ``frame_step`` from frame ``first`` (clamped at the
    game's ends), and the centre frame of each of its ``length - track_frames + 1`` windows:
    window i is what a clip centred on ``centres[i]`` sees (``core.infer.track_windows``)."""
    step, half = config.frame_step, config.track_frames // 2
    track = game.track[np.clip(first + step * np.arange(length), 0, game.n_frames - 1)]
    return track, first + step * (half + np.arange(length - config.track_frames + 1))


def train_track(model: BallActionModel, games: list[GameData], config: TrainConfig, device: torch.device,
                progress: Progress | None = None, world: int = 1) -> list[float]:
    """Train the track's branch (``TrackNet`` and its class logits) on every frame of the
    fully labelled training games, before the clips. A clip teaches it one frame; a game's track
    is a few numbers per frame, so here thousands of frames a step teach it the kicks (on
    synthetic games, ``cpu_small.yaml`` in bench/learn.py: held-out mAP@1 0.73, against 0.40
    when the track learnt from the clips alone). Rank 0 trains, the others take its weights.
    Returns the loss of every step."""
    mc = model.config
    games = track_games(games)
    branch = torch.nn.ModuleDict({"net": model.track_net, "head": model.track_head})
    losses: list[float] = []
    if games and (world == 1 or dist.get_rank() == 0):
        step, half = mc.frame_step, mc.track_frames // 2
        # Every sequence fits in every game (the shortest bounds it): one batch tensor.
        length = min(config.track_points, min((g.n_frames - 1) // step + 1 + 2 * half for g in games))
        h, w = mc.input_size
        optimizer = torch.optim.AdamW(branch.parameters(), lr=config.track_lr, weight_decay=config.weight_decay)
        warmup = max(1, config.track_steps // 20)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, config.track_steps, warmup, config.min_lr_ratio))
        rng = np.random.default_rng((config.seed, 1))
        branch.train()
        t0 = time.perf_counter()
        for k in range(config.track_steps):
            tracks, ys = [], []
            for _ in range(config.track_batch):
                g = games[int(rng.integers(len(games)))]
                # Centres from the first frame to the last: the track clamps at the ends as a clip's does.
                first = int(rng.integers(-step * half, g.n_frames - step * (length - 1 - half)))
                track, centres = track_sequence(g, first, length, mc)
                if config.augment:
                    flip, m, _ = random_motion(rng, w, h)
                    track = move_track(track, flip, m, w, h)
                tracks.append(track)
                ys.append(class_targets(g, centres, config.target_window))
            x = torch.from_numpy(np.stack(tracks).astype(np.float32)).to(device)
            y = torch.from_numpy(np.stack(ys)).to(device)  # (B, outputs, K)
            logits = branch["head"](branch["net"](x).transpose(1, 2))
            loss = focal_loss(logits, y, config.focal_gamma)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if progress is not None and (k % 50 == 0 or k + 1 == config.track_steps):
                progress({"phase": "track", "step": k + 1, "steps": config.track_steps,
                          "loss": float(np.mean(losses[-50:])), "seconds": time.perf_counter() - t0})
    if world > 1:
        for tensor in branch.state_dict().values():
            dist.broadcast(tensor, src=0)
    return losses


def _pretrained_encoder(config: TrainConfig, store: Store, workspace: Workspace, out: Path, rank: int, world: int,
                        progress: Progress | None) -> str | None:
    """Rank 0 pretrains the encoder on the training games' synthetic sidecars (once per run
    folder, so a resumed run reuses it); None when no training game has a sidecar."""
    path = out / "encoder.safetensors"
    if rank == 0 and not path.is_file():
        try:
            pretrain(config.model, config.pretrain, store, workspace, config.train_splits, path, seed=config.seed,
                     progress=(lambda r: progress({"phase": "pretrain", **r})) if progress else None)
        except NoSidecarError as exc:
            if progress is not None:
                progress({"phase": "pretrain", "skipped": str(exc)})
    if world > 1:
        dist.barrier()
    return str(path) if path.is_file() else None


def _next_version(store: Store) -> str:
    taken = {m["version"] for m in store.models()}
    k = 1
    while f"v{k}" in taken:
        k += 1
    return f"v{k}"


__all__ = ["TrainConfig", "train", "targets", "sample_epoch", "load_games", "focal_loss", "TEAMS_ROLE", "CLASSES"]
