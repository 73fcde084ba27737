"""The ball's track: everything a model with ``ModelConfig.track_frames`` needs in training.

Such a model's heads also read the ball's track (where the ball is, frame by frame) around each
clip. The track comes from the ball detector pretraining trains (``core.training.pretrain``);
a random detector's track is noise, so a run without a trained one fails and says what to do.
The encoder and the detector then stay as they are, the track of every frame of the training
games is computed once (``add_tracks``; under DDP the ranks share the games out), and the
track's branch first trains on every frame of the fully labelled games (``train_track``) and
then stays as trained too. All of it is here, so ``train()`` calls one step (``set_up_track``)
rather than carrying the branch through it.

A fine-tune keeps the detector too, so every retrain of a line of versions would draw the same
tracks of the same games again: the workspace keeps each game's track under the name of its
frames and of the weights that drew it (``cache/tracks``), and a retrain reads it back.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from core.errors import BallspotError
from core.infer import amp_dtype, frame_tracks
from core.model import BallActionModel, ModelConfig, has_ball_detector
from core.training.clips import class_targets, move_track, random_motion
from core.training.config import Records, TrainConfig
from core.training.data import GameData
from core.training.loss import focal_loss, lr_factor

log = logging.getLogger("ballspot.training")


def require_ball_detector(config: TrainConfig) -> None:
    """Fail, with the remedy, when the model reads the ball's track but no trained ball
    detector exists to draw it (real games have no sidecar to pretrain one on)."""
    if config.model.track_frames and not has_ball_detector(config.model.pretrained_file):
        raise BallspotError(
            f"the config asks for the ball's track (model.track_frames: {config.model.track_frames}) but there "
            "is no trained ball detector to draw it. Give the config pretrain steps (pretrain: steps: 2400) "
            "with training games that carry a synthetic positions.npz sidecar, set model.pretrained "
            "to an encoder file with a ball detector, start from a model that has one (--init), or use a "
            "config without model.track_frames (e.g. tiny.yaml)")


def set_up_track(model: BallActionModel, games: list[GameData], config: TrainConfig, device: torch.device, *,
                 resume: bool, world: int, progress: Records | None,
                 cache: Path | None = None) -> list[torch.nn.Module]:
    """The ball's track of every training game (kept in, and read back from, ``cache``) and the
    track's branch trained on them (not again on ``resume``: the checkpoint holds it); returns
    the modules that stay as they are. ``progress``: rank 0's, None on the other ranks."""
    kept: list[torch.nn.Module] = [model.ball]
    add_tracks(model, games, config, device, progress, cache)
    if config.track_steps and track_games(games):
        if not resume:
            train_track(model, games, config, device, progress, world)
        kept += [model.track_net, model.track_head]
    elif config.track_steps and progress is not None:
        # Only games reviewed in part: their unreviewed stretches are unknown, so the
        # branch learns with the clips instead.
        progress({"phase": "track", "skipped": "no fully labelled training game: the track's branch "
                  "trains with the clips only"})
    return kept


def add_tracks(model: BallActionModel, games: list[GameData], config: TrainConfig, device: torch.device,
               progress: Records | None = None, cache: Path | None = None) -> int:
    """The ball's track of every frame of ``games`` by the model's (frozen) ball detector: what
    its heads see around each sample's centre, read from here rather than recomputed per sample.
    With ``cache``, a track drawn before by the same weights on the same frames is read back,
    and one drawn here is kept there. Under DDP each rank draws (or reads) every ``world``-th
    game and sends it to the others, so N GPUs draw a cold cache's tracks in 1/N of the time
    rather than each drawing all of them. Returns how many tracks this rank drew."""
    size = tuple(config.model.input_size)
    drawn_by = detector_digest(model, device) if cache is not None else ""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if world > 1 and not _same_games_on_every_rank(games):
        # The ranks read the store one after another: an edit in between can leave them with
        # other games. Each then draws all of its own rather than waiting for a track that
        # no rank sends.
        log.warning("the ranks loaded different training games: each draws every track itself")
        rank, world = 0, 1
    t0, drawn = time.perf_counter(), 0
    tracks: list[np.ndarray | None] = [None] * len(games)
    for k, g in enumerate(games):
        if k % world != rank:
            continue
        path = cache / f"{g.track_key}-{drawn_by}.npy" if cache is not None and g.track_key else None
        # A game read from its frame cache has a known length; one read from the video, not.
        track = read_track(path, g.n_frames if g.frames is not None else None) if path is not None else None
        if track is None:
            with g.stream(size) as frames:
                track = frame_tracks(model, frames, config.valid_batch, str(device), total=g.n_frames)
            drawn += 1
            if path is not None:
                keep_track(path, track)
        tracks[k] = track
        if progress is not None:
            progress({"phase": "track", "game": k + 1, "games": len(games), "seconds": time.perf_counter() - t0})
    for k, g in enumerate(games):
        if world > 1:  # every rank in the same order: game k comes from rank k % world
            box = [tracks[k]]
            dist.broadcast_object_list(box, src=k % world)
            tracks[k] = box[0]
        g.n_frames = min(g.n_frames, len(tracks[k]))
        g.track = tracks[k][:g.n_frames]  # windows of frames and of the track clamp at the same end
    return drawn


def _same_games_on_every_rank(games: list[GameData]) -> bool:
    """Whether every rank holds the same games in the same order (one collective, every rank)."""
    mine = [(g.game_id, g.n_frames, g.track_key) for g in games]
    every: list = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    return all(other == mine for other in every)


#: Raised whenever the way a track is drawn from frames changes (``frame_tracks``, ``BallHead``,
#: the frames' decoding): tracks kept by an older way are then drawn again, not read.
TRACK_VERSION = 1


def detector_digest(model: BallActionModel, device: torch.device | str) -> str:
    """What a track depends on besides the frames: the encoder's and the detector's weights
    (batch-norm statistics included), how frames are stacked for them, the precision they run
    at on ``device`` (CUDA draws under autocast) and :data:`TRACK_VERSION`. Any change is
    another digest, so a stale track is never read."""
    mc = model.config
    dev = torch.device(device)
    h = hashlib.sha256(json.dumps([TRACK_VERSION, mc.encoder, list(mc.input_size), mc.stack, mc.frame_step,
                                   mc.feature_stage, dev.type, str(amp_dtype(dev))]).encode())
    for prefix, module in (("encoder.", model.encoder), ("ball.", model.ball)):
        for name, tensor in module.state_dict().items():
            h.update(f"{prefix}{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def read_track(path: Path, frames: int | None = None) -> np.ndarray | None:
    """A kept track, or None when there is none or it is not a track of ``frames`` frames (a
    partial, short or foreign file is drawn again, not trusted)."""
    try:
        track = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if track.ndim != 2 or track.shape[1] != 3 or track.dtype.kind != "f" or not np.isfinite(track).all():
        return None
    if frames is not None and len(track) != frames:
        return None
    return track


def keep_track(path: Path, track: np.ndarray) -> None:
    """Write ``track`` under ``path`` whole or not at all (ranks and runs may share the folder).
    The cache only saves time: a folder that cannot be written is said, not a failed run."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, track, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("the ball's track was not kept in %s (%s): the next run draws it again", path.parent, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


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
                progress: Records | None = None, world: int = 1) -> list[float]:
    """Train the track's branch (``TrackNet`` and its class logits) on every frame of the
    fully labelled training games, before the clips. A clip teaches it one frame; a game's track
    is a few numbers per frame, so here thousands of frames a step teach it the kicks (the
    README's Training section has bench/learn.py's figures with and without this step). Rank 0
    trains, the others take its weights.
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
