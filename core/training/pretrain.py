"""Pretraining the 2D encoder on synthetic games: where is the ball, where are the players.

Why: the seed starts its encoder from ImageNet weights. Offline there are none, and learning
to find a 3-pixel ball from event labels alone is slow on a CPU. Synthetic games carry a
sidecar (``positions.npz``) with the ball's and the players' drawn pixels on every frame, so
the encoder can first learn, densely and cheaply, the features spotting depends on: the
ball's cell on the feature map and its place inside the cell (the ball detector that
``ModelConfig.track_frames`` uses, saved with the encoder), its height, its motion in each half of the stack (so a
change of speed or direction inside one stack shows), whether it is touched (its velocity
jumps) within the stack, and which cells hold home or away players. The result is an
encoder weights file that ``ModelConfig.pretrained`` takes exactly as it takes the ImageNet
weights file ``launch.py weights`` saves.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from core.errors import BallspotError
from core.model import BALL_PREFIX, BallActionModel, BallHead, ModelConfig, normalise
from core.store import Store
from core.synth.sidecar import SIDECAR, Sidecar, load_sidecar
from core.training.config import PretrainConfig, Records, TrainConfig
from core.training.data import load_games
from core.workspace import Workspace


class NoSidecarError(BallspotError):
    """No training game carries a synthetic sidecar: there is nothing to pretrain on."""


#: A change of the ball's velocity between two frames above this (m/s) is a touch (a kick,
#: a header, a block, a throw) or a bounce; gravity alone changes it by 0.4 m/s per frame,
#: dribbling touches by less. At 3 m/s, 95 % of synthetic events other than OUT and GOAL
#: have a touch within 2 frames, and 3 % of frames are touches.
TOUCH_MS = 3.0
#: Regression targets at the ball's cell: height / 4 m; motion (u, v) over the first and the
#: second half of the stack, in cells.
MOTION = 5


class PretrainNet(nn.Module):
    """The ball-action model's encoder with the ball detector (``BallHead``: channel 0 ball
    logits, 1-2 the ball's offset inside its cell) and, on the projection, a dense 1x1 head:
    channels 3-4 home/away presence, then at the ball's cell the ``MOTION`` regression targets
    (height, motion (u, v) in the first and second half of the stack) and the touch logit."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        model = BallActionModel(config)
        self.encoder, self.proj = model.encoder, model.proj
        self.ball = BallHead(self.encoder.feature_info.channels()[-1])
        self.head = nn.Conv2d(config.proj_channels, 3 + MOTION, 1)

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        # The model's own 2D pass (``encode``, then ``proj``), so pretraining sees the stacks
        # exactly as training and inference do.
        enc = BallActionModel.encode(self, stacks)
        return torch.cat([self.ball(enc), self.head(self.proj(enc))], 1)

    def weights(self) -> dict[str, torch.Tensor]:
        """The encoder's weights and the ball detector's (``BALL_PREFIX``), as one file holds them."""
        state = {k: v for k, v in self.encoder.state_dict().items()}
        state.update({BALL_PREFIX + k: v for k, v in self.ball.state_dict().items()})
        return {k: v.detach().contiguous() for k, v in state.items()}


def _batch(games: list[tuple[np.ndarray, Sidecar]], config: ModelConfig, n: int, grid: tuple[int, int],
           rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Stacks centred on random frames, with cell targets on the (gh, gw) feature grid: the
    ball's cell (-1: not in the picture), its ``MOTION`` targets, its offset inside the cell
    (-0.5..0.5 cells), the touch flag and the players' presence maps."""
    gh, gw = grid
    h, w = config.input_size
    sy, sx = h / gh, w / gw
    half = config.stack // 2
    x = np.empty((n, config.stack, h, w), np.uint8)
    ball_cell = np.full(n, -1, np.int64)
    motion = np.zeros((n, MOTION), np.float32)
    offset = np.zeros((n, 2), np.float32)
    touch = np.zeros(n, np.float32)
    presence = np.zeros((n, 2, gh, gw), np.float32)
    for k in range(n):
        frames, side = games[int(rng.integers(len(games)))]
        i = int(rng.integers(config.frame_step * half, len(frames) - config.frame_step * half))
        idx = i + config.frame_step * (np.arange(config.stack) - half)
        clip = frames[idx]
        u, v = side.ball[i]
        pu, pv = side.players[i, :, 0].copy(), side.players[i, :, 1]
        flip = rng.random() < 0.5
        if flip:
            clip = clip[:, :, ::-1]
            u, pu = w - 1 - u, w - 1 - pu
        gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-15, 15)
        x[k] = np.clip(clip.astype(np.float32) * gain + bias, 0, 255)
        cx, cy = u + 0.5, v + 0.5  # continuous coordinates: pixel i spans [i, i + 1), a flip maps x to w - x
        if 0 <= cx < w and 0 <= cy < h:
            ball_cell[k] = int(cy // sy) * gw + int(cx // sx)
            offset[k] = (cx / sx % 1 - 0.5, cy / sy % 1 - 0.5)
            mid = idx[len(idx) // 2]  # the centre frame (of an even stack: the later central one)
            d1 = (side.ball[mid] - side.ball[idx[0]]) / np.array([sx, sy])
            d2 = (side.ball[idx[-1]] - side.ball[mid]) / np.array([sx, sy])
            if flip:
                d1[0], d2[0] = -d1[0], -d2[0]
            motion[k] = (side.height[i] / 4.0, *d1, *d2)
            touch[k] = float(side.touch[idx[0] + 1:idx[-1]].max(initial=0.0) > TOUCH_MS)
        pu, pv = pu + 0.5, pv + 0.5  # continuous, as the ball's
        inside = (pu >= 0) & (pu < w) & (pv >= 0) & (pv < h)
        for t in (0, 1):
            m = inside & (side.team == t)
            presence[k, t, (pv[m] // sy).astype(int), (pu[m] // sx).astype(int)] = 1.0
    return (torch.from_numpy(x), torch.from_numpy(ball_cell), torch.from_numpy(motion), torch.from_numpy(offset),
            torch.from_numpy(touch), torch.from_numpy(presence))


def pretrain(model_config: ModelConfig, config: PretrainConfig, store: Store, workspace: Workspace,
             splits: list[str], out: Path, seed: int = 0,
             progress: Records | None = None) -> Path:
    """Pretrain the encoder on the synthetic games of ``splits`` (read from training's frame
    cache); write ``out`` (safetensors)."""
    size = tuple(model_config.input_size)
    games = []
    for g in load_games(store, workspace, splits, TrainConfig(model=model_config)):
        sidecar = Path(g.video["video_path"]).parent / SIDECAR
        if g.frames is None or not sidecar.is_file():
            continue
        side = load_sidecar(workspace.guard(sidecar), size)  # never the database through a link
        n = min(len(g.frames), len(side.ball))
        if n > 4 * model_config.frame_step * model_config.stack:
            games.append((g.frames[:n], side))
    if not games:
        raise NoSidecarError(f"no synthetic game with a {SIDECAR} sidecar in splits {splits}; "
                             "the encoder starts from its configured weights")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = PretrainNet(model_config)
    with torch.no_grad():
        grid = tuple(net(torch.zeros(1, model_config.stack, *size)).shape[-2:])
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.1)
    net.train()
    t0 = time.perf_counter()
    for step in range(config.steps):
        x, cell, motion, offset, touch, presence = _batch(games, model_config, config.batch, grid, rng)
        out_map = net(normalise(x))
        b = out_map.shape[0]
        seen = cell >= 0
        flat = out_map[:, 0].reshape(b, -1)
        players_loss = F.binary_cross_entropy_with_logits(out_map[:, 3:5], presence)
        if seen.any():
            ball_loss = F.cross_entropy(flat[seen], cell[seen])
            at = out_map[:, 1:].reshape(b, 4 + MOTION + 1, -1)[seen, :, cell[seen]]  # the ball's cell only
            offset_loss = F.smooth_l1_loss(at[:, :2], offset[seen])
            motion_loss = F.smooth_l1_loss(at[:, 4:4 + MOTION], motion[seen])
            touch_loss = F.binary_cross_entropy_with_logits(at[:, 4 + MOTION], touch[seen])
        else:  # no ball in the picture in this whole batch
            ball_loss = offset_loss = motion_loss = touch_loss = flat.sum() * 0
        loss = (ball_loss + config.offset_weight * offset_loss + config.players_weight * players_loss
                + config.motion_weight * motion_loss + config.touch_weight * touch_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress is not None and (step % 20 == 0 or step == config.steps - 1):
            with torch.no_grad():
                hit = (flat[seen].argmax(1) == cell[seen]).float().mean().item() if seen.any() else 0.0
            progress({"step": step + 1, "steps": config.steps, "loss": float(loss.detach()),
                      "ball_loss": float(ball_loss.detach()),
                      "ball_cell_accuracy": hit, "seconds": time.perf_counter() - t0})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    save_file(net.weights(), str(tmp))
    tmp.replace(out)
    return out


def pretrained_encoder(config: TrainConfig, store: Store, workspace: Workspace, out: Path, rank: int, world: int,
                       progress: Records | None) -> str | None:
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
