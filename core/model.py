"""The seed's ball-action model (2023 winning design): a 2D encoder over stacks of grayscale
frames, then 3D inverted-residual blocks across the stacks, then heads.

    frames (B, T, H, W)  --stacks of 3-->  (B*S, 3, H, W)  --2D encoder + 1x1 proj-->  (B*S, C, h, w)
    --3D blocks over S-->  per-stack 1x1 proj, concatenated  --GeM, dropout-->  12 class logits
                                                                           +  12 team logits

The forward pass is split in two (``forward_stacks`` / ``forward_head``) because the 2D
part dominates the cost and each stack's features can be cached across sliding windows.

Optionally (``track_frames``) the heads also see the ball's track: a small ball detector on
the encoder's features (trained by encoder pretraining, then frozen) gives each stack's ball
position and confidence; a 1D convolution over the track of the frames around the centre
finds the kicks, i.e. the changes of the ball's velocity, and gives class logits of its own,
added to the head's. On a CPU budget the 3D part does not learn those from a one-pixel ball
(see ``bench/learn.py``). The track is a few numbers per frame, so its branch is trained on
every frame of the training games first (``core.training.track.train_track``): thousands of labelled
frames a step where a clip gives one.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.layers import DropPath
from timm.models import adapt_input_conv

from core.errors import BallspotError
from core.labels import NUM_CLASSES
from core.weights import IMAGENET, NONE, imagenet_encoder

CONFIG_FILE = "config.json"
#: Prefix of the ball detector's weights in an encoder weights file (see ``core.training.pretrain``).
BALL_PREFIX = "ball."
WEIGHTS_FILE = "model.safetensors"
#: The key ``pretrained`` replaced: a weights file, or null for random initialisation. Configs and
#: saved models that still carry it are read as ``pretrained: <file>`` / ``pretrained: none``.
LEGACY_PRETRAINED = "pretrained_weights"


def _centred(n: int, step: int) -> np.ndarray:
    return step * (np.arange(n) - n // 2)


def window_index(centres: np.ndarray, offsets: np.ndarray, n: int) -> np.ndarray:
    """(len(centres), len(offsets)) frame indices around each centre, clamped to the video's
    ``n`` frames (the first and last frames repeat beyond its ends, as inference reads them)."""
    return np.clip(np.asarray(centres)[:, None] + np.asarray(offsets)[None], 0, n - 1)


@dataclass
class ModelConfig:
    encoder: str = "tf_efficientnetv2_b0"
    #: Frames per sample, taken every ``frame_step`` video frames around the centre frame.
    frames: int = 15
    frame_step: int = 2
    #: Neighbouring frames stacked as the channels of one 2D input.
    stack: int = 3
    #: Model input (height, width); video frames are resized to fit and padded.
    input_size: tuple[int, int] = (736, 1280)
    #: Which encoder stage feeds the 3D part (-1: the last, stride 32).
    feature_stage: int = -1
    proj_channels: int = 192
    blocks_3d: int = 4
    expand_3d: int = 3
    stack_channels: int = 256
    dropout: float = 0.2
    drop_path: float = 0.2
    gem_p: float = 3.0
    num_classes: int = NUM_CLASSES
    #: Where the encoder starts: "none" (random initialisation), "imagenet" (timm's ImageNet
    #: weights through the Hugging Face hub and its cache: ``core.weights``) or the path of a
    #: weights file (ImageNet's saved by ``launch.py weights``, or encoder pretraining's with its
    #: ball detector). A model's saved weights include the encoder's: loading one reads none.
    pretrained: str = NONE
    #: "role" (home/away) or "side" (left/right, which a horizontal flip swaps).
    team_mode: str = "role"
    #: Frames of the ball's track (one every ``frame_step``, centred) the heads also see; 0 for
    #: none. The encoder and the ball detector then stay frozen in training (the track of every
    #: frame is computed once per game).
    track_frames: int = 0

    def __post_init__(self) -> None:
        self.input_size = tuple(self.input_size)
        name = "" if self.pretrained is None else str(self.pretrained).strip()
        if name.lower() in ("", NONE, IMAGENET):
            name = name.lower() or NONE
        self.pretrained = name
        if self.frames % self.stack:
            raise ValueError(f"frames ({self.frames}) must be a multiple of stack ({self.stack})")
        if self.team_mode not in ("role", "side"):
            raise ValueError(f"team_mode {self.team_mode!r}: 'role' or 'side'")
        if self.track_frames and (self.track_frames < 3 or self.track_frames % 2 == 0):
            raise ValueError(f"track_frames ({self.track_frames}) must be 0 or odd and at least 3 "
                             "(centred on the frame)")

    @property
    def pretrained_file(self) -> Path | None:
        """The weights file ``pretrained`` names; None for ``none`` and ``imagenet``."""
        return None if self.pretrained in (NONE, IMAGENET) else Path(self.pretrained)

    @property
    def stacks(self) -> int:
        return self.frames // self.stack

    def stack_offsets(self) -> list[int]:
        """Video-frame offsets, from the centre frame, of the first frame of each stack."""
        half = self.frames // 2
        return [self.frame_step * (j * self.stack - half) for j in range(self.stacks)]

    def frame_offsets(self) -> np.ndarray:
        """Video-frame offsets, from the centre frame, of a sample's frames."""
        return _centred(self.frames, self.frame_step)

    def track_offsets(self) -> np.ndarray:
        """Video-frame offsets, from the centre frame, of the track's frames."""
        return _centred(self.track_frames, self.frame_step)

    @property
    def stack_lead(self) -> int:
        """Frames from a stack's first frame to its centre (a frame's track is its centred stack's)."""
        return self.frame_step * (self.stack // 2)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        data = dict(data)
        if LEGACY_PRETRAINED in data:
            if "pretrained" in data:
                raise BallspotError(f"model settings: give pretrained only ({LEGACY_PRETRAINED} is its old name)")
            data["pretrained"] = data.pop(LEGACY_PRETRAINED) or NONE
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise BallspotError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**data)


class SqueezeExcite3d(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv3d(channels, reduced, 1)
        self.expand = nn.Conv3d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(s))))


class InvertedResidual3d(nn.Module):
    """1x1x1 expand, depthwise 3x3x3, squeeze-excite, 1x1x1 project, residual."""

    def __init__(self, channels: int, expand: int = 3, drop_path: float = 0.0):
        super().__init__()
        mid = channels * expand
        self.expand = nn.Sequential(nn.Conv3d(channels, mid, 1, bias=False), nn.BatchNorm3d(mid), nn.SiLU())
        self.depthwise = nn.Sequential(nn.Conv3d(mid, mid, 3, padding=1, groups=mid, bias=False),
                                       nn.BatchNorm3d(mid), nn.SiLU())
        self.se = SqueezeExcite3d(mid, max(8, channels // 4))
        self.project = nn.Sequential(nn.Conv3d(mid, channels, 1, bias=False), nn.BatchNorm3d(channels))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.project(self.se(self.depthwise(self.expand(x)))))


class GeM(nn.Module):
    """Generalised-mean pooling over space: between average (p=1) and max (p large)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


#: Features the track's 1D convolution sees per frame: u, v, their change, the confidence.
TRACK_INPUTS = 5
TRACK_CHANNELS = 64


class BallHead(nn.Module):
    """Where the ball is on one stack's feature map: (N, 3, h, w) = ball logit per cell and the
    ball's offset inside the cell (u, v, in cells, -0.5..0.5 around the cell's centre)."""

    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU(),
                                 nn.Conv2d(hidden, 3, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)

    @staticmethod
    def locate(maps: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) -> (N, 3): the ball's centre (u, v) as a fraction of the picture,
        -0.5..0.5 (a horizontal flip negates u), and the detector's confidence."""
        n, _, h, w = maps.shape
        prob = maps[:, 0].reshape(n, -1).float().softmax(1)
        conf, cell = prob.max(1)
        at = maps[:, 1:].reshape(n, 2, -1).float()[torch.arange(n, device=maps.device), :, cell]
        u = ((cell % w).float() + 0.5 + at[:, 0]) / w - 0.5
        v = ((cell // w).float() + 0.5 + at[:, 1]) / h - 0.5
        return torch.stack([u, v, conf], 1)


class TrackNet(nn.Module):
    """1D convolutions over the ball's track -> (B, TRACK_CHANNELS, L - frames + 1): the
    features of every window of ``frames`` points of a track of ``L`` points. The convolutions
    are unpadded and see exactly one window, so a clip's track (L = frames, one output) and a
    whole game's track (``core.training.track.train_track``: every frame a labelled sample, thousands
    per step) give the same features for the same window."""

    def __init__(self, frames: int, channels: int = TRACK_CHANNELS):
        super().__init__()
        if frames < 3:
            raise ValueError(f"a track needs at least 3 frames (got {frames})")
        self.norm = nn.BatchNorm1d(TRACK_INPUTS)
        # The steps between points take one point (the first layer pairs them: 2 more); dilated
        # kernels of 3 (dilation 1, 2, 4, ... capped) cover the rest of the window.
        layers: list[nn.Module] = [nn.Conv1d(TRACK_INPUTS, channels, 2), nn.GELU()]
        rest, dilation = frames - 3, 1
        while rest > 0:
            d = min(dilation, rest // 2)
            layers += [nn.Conv1d(channels, channels, 3, dilation=d), nn.GELU()]
            rest, dilation = rest - 2 * d, dilation * 2
        self.net = nn.Sequential(*layers)

    def forward(self, track: torch.Tensor) -> torch.Tensor:
        """(B, L, 3) u, v, confidence per point, L >= frames -> (B, C, L - frames + 1)."""
        uv = track[..., :2].float()
        step = uv[:, 1:] - uv[:, :-1]
        x = torch.cat([uv[:, 1:], step * 10, track[:, 1:, 2:].float()], -1).transpose(1, 2)  # (B, 5, L-1)
        return self.net(self.norm(x))


class BallActionModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        encoder_args = dict(in_chans=c.stack, out_indices=(c.feature_stage,), drop_path_rate=c.drop_path)
        if c.pretrained == IMAGENET:  # timm loads them and adapts the stem to in_chans itself
            self.encoder = imagenet_encoder(c.encoder, **encoder_args)
        else:
            self.encoder = timm.create_model(c.encoder, pretrained=False, features_only=True, **encoder_args)
        enc_channels = self.encoder.feature_info.channels()[-1]
        if c.track_frames:
            self.ball = BallHead(enc_channels)
        if c.pretrained_file is not None:
            self._load_encoder(c.pretrained_file)
        self._freeze_unused_encoder_stages()
        # Channels-last convolutions: on CUDA what tensor cores want; on a CPU (oneDNN) the
        # encoder runs faster too (bench/infer.py measures it).
        self.encoder.to(memory_format=torch.channels_last)
        self.proj = nn.Sequential(nn.Conv2d(enc_channels, c.proj_channels, 1, bias=False),
                                  nn.BatchNorm2d(c.proj_channels), nn.SiLU())
        rates = torch.linspace(0, c.drop_path, max(c.blocks_3d, 1)).tolist()
        self.blocks = nn.Sequential(*[InvertedResidual3d(c.proj_channels, c.expand_3d, rates[k])
                                      for k in range(c.blocks_3d)])
        self.stack_proj = nn.Sequential(nn.Conv3d(c.proj_channels, c.stack_channels, 1, bias=False),
                                        nn.BatchNorm3d(c.stack_channels), nn.SiLU())
        self.pool = GeM(c.gem_p)
        self.dropout = nn.Dropout(c.dropout)
        width = c.stack_channels * c.stacks
        if c.track_frames:
            self.track_net = TrackNet(c.track_frames)
            width += TRACK_CHANNELS
            # The track's own class logits, added to the head's: trained on every frame of the
            # training games first (core.training.track.train_track), the head then learns what the
            # frames add to them.
            self.track_head = nn.Linear(TRACK_CHANNELS, c.num_classes)
        self.head = nn.Linear(width, c.num_classes)
        self.team_head = nn.Linear(width, c.num_classes)

    def _freeze_unused_encoder_stages(self) -> None:
        """timm's feature extractors keep the stages after the one we take; their weights get
        no gradient, which DistributedDataParallel refuses. Mark them as not trained. (A model
        built under ``torch.inference_mode`` can never be trained: nothing to mark.)"""
        if torch.is_inference_mode_enabled():
            return
        params = list(self.encoder.parameters())
        self.encoder.eval()
        with torch.enable_grad():  # also when built under torch.no_grad
            out = self.encoder(torch.zeros(1, self.config.stack, 64, 64))[-1].sum()
            grads = torch.autograd.grad(out, params, allow_unused=True)
        for param, grad in zip(params, grads):
            if grad is None:
                param.requires_grad_(False)
        self.encoder.train()

    def _load_encoder(self, path: Path) -> None:
        """A local encoder weights file: timm's ImageNet weights saved by ``launch.py weights``
        (``core.weights``), or encoder pretraining's (``core.training.pretrain``)."""
        if not path.is_file():
            raise BallspotError(f"{path}: model.pretrained: no such weights file")
        try:
            state = load_file(str(path)) if path.suffix == ".safetensors" else load_torch_file(path)
        except SafetensorError as exc:
            raise BallspotError(f"{path}: model.pretrained: not a safetensors weights file ({exc})") from None
        # Encoder pretraining also saves its ball detector (``ball.*``), which the track uses.
        ball = {k[len(BALL_PREFIX):]: state.pop(k) for k in [k for k in state if k.startswith(BALL_PREFIX)]}
        if ball and self.config.track_frames:
            self.ball.load_state_dict(ball)
        own = self.encoder.state_dict()
        for key, weight in state.items():
            mine = own.get(key)
            # The stem is the one weight whose input channels follow in_chans (the stack): adapted
            # as timm adapts ImageNet's for in_chans, so a file saved by ``launch.py weights``
            # starts the encoder exactly where ``pretrained: imagenet`` does.
            if (mine is not None and weight.ndim == 4 and mine.ndim == 4 and weight.shape[1] != mine.shape[1]
                    and weight.shape[0] == mine.shape[0] and weight.shape[2:] == mine.shape[2:]):
                state[key] = adapt_input_conv(mine.shape[1], weight, base_chans=weight.shape[1])
        try:
            missing, _ = self.encoder.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes that differ: another encoder's weights
            detail = " ".join(str(exc).split())[:300]
            raise BallspotError(f"{path}: model.pretrained: does not fit encoder {self.config.encoder}: "
                                f"{detail}") from None
        # A BatchNorm's step counter is not a weight (timm's own checkpoints leave it out).
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing:
            raise BallspotError(f"{path}: model.pretrained: does not fit encoder {self.config.encoder}: "
                                f"{len(missing)} of its weights missing ({', '.join(missing[:3])}, ...)")

    def encode(self, stacks: torch.Tensor) -> torch.Tensor:
        """(N, stack, H, W) normalised frames -> the encoder's feature map (channels-last)."""
        return self.encoder(stacks.contiguous(memory_format=torch.channels_last))[-1]

    def forward_stacks(self, stacks: torch.Tensor,
                       track: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(N, stack, H, W) normalised frames -> (N, C, h, w) features. The expensive part.
        With ``track``, also the ball's track point of each stack (N, 3) (``BallHead.locate``)."""
        enc = self.encode(stacks)
        # The 3D part gets the ordinary layout, in training as in inference (cached stacks).
        feats = self.proj(enc).contiguous()
        if not track:
            return feats
        return feats, BallHead.locate(self.ball(enc))

    def forward_head(self, feats: torch.Tensor, track: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, C, h, w) stack features [+ (B, track_frames, 3) track] -> class logits (B, K),
        team logits (B, K)."""
        x = feats.permute(0, 2, 1, 3, 4)  # (B, C, S, h, w): the stacks are the 3D part's time
        x = self.stack_proj(self.blocks(x))  # (B, C', S, h, w)
        b, c, s, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b, s * c, h, w)  # stacks concatenated as channels
        x = self.pool(x)
        if not self.config.track_frames:
            x = self.dropout(x)
            return self.head(x), self.team_head(x)
        if track is None or track.shape[1] != self.config.track_frames:
            raise ValueError(f"this model also needs the ball's track of {self.config.track_frames} frames "
                             f"(got {None if track is None else track.shape[1]})")
        t = self.track_net(track)[:, :, 0]
        x = self.dropout(torch.cat([x, t], 1))
        return self.head(x) + self.track_head(t), self.team_head(x)

    def forward(self, frames: torch.Tensor, track: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H, W) normalised frames [+ (B, track_frames, 3) track] -> class logits, team logits."""
        b, t, h, w = frames.shape
        c = self.config
        feats = self.forward_stacks(frames.reshape(b * c.stacks, c.stack, h, w))
        return self.forward_head(feats.reshape(b, c.stacks, *feats.shape[1:]), track)


def has_ball_detector(path: str | Path | None) -> bool:
    """Whether an encoder weights file also holds a trained ball detector (``BALL_PREFIX``)."""
    if not path or not Path(path).is_file():
        return False
    if Path(path).suffix != ".safetensors":
        keys = load_torch_file(path).keys()
    else:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
    return any(k.startswith(BALL_PREFIX) for k in keys)


def load_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A ``torch.save`` file (encoder weights, a training checkpoint) read with
    ``weights_only=True``: tensors and plain values (numbers, strings, lists, dicts) only.

    Such files come from run folders and downloads anyone could have written, and unpickling
    anything else could run code on this machine: refused with a ``BallspotError`` instead."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "global" in line.lower()), lines[-1] if lines else "")
        raise BallspotError(f"{path}: refused: it holds more than weights and plain values (loading it could run "
                            f"code), or it is not a torch file: {detail[:200]}") from None


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 grey levels -> floats around 0, as the model sees them."""
    return frames.float().div_(255.0).sub_(0.5).mul_(4.0)


def save(model: BallActionModel, folder: str | Path, extra: dict | None = None) -> Path:
    """``config.json`` + ``model.safetensors`` in ``folder`` (written whole, then renamed in)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = asdict(model.config)
    config["input_size"] = list(config["input_size"])
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / f".{WEIGHTS_FILE}.partial"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps({**config, **(extra or {})}, indent=2))
    return folder


def load_config(folder: str | Path) -> ModelConfig:
    """The architecture a saved model was built with (its encoder weights are in the file)."""
    folder = Path(folder)
    try:
        data = json.loads((folder / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise BallspotError(f"{folder}: no {CONFIG_FILE} (not a model folder)") from None
    # Other keys (the metrics a run saves, LEGACY_PRETRAINED of older models) are not the architecture.
    data = {k: v for k, v in data.items() if k in {f.name for f in fields(ModelConfig)}}
    data["pretrained"] = NONE  # the saved weights include the encoder's
    return ModelConfig.from_dict(data)


def load(folder: str | Path, map_location: str | torch.device = "cpu") -> BallActionModel:
    folder = Path(folder)
    model = BallActionModel(load_config(folder))
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise BallspotError(f"{folder}: no {WEIGHTS_FILE}")
    try:
        model.load_state_dict(load_file(str(weights), device=str(map_location)))
    except RuntimeError as exc:
        # E.g. a model saved before its architecture changed (the track's branch did).
        detail = " ".join(str(exc).split())
        raise BallspotError(f"{weights}: the weights do not fit the model {CONFIG_FILE} describes (saved by "
                            f"another version of Ballspot? train it again): {detail[:300]}") from None
    return model.eval()
