"""The seed's ball-action model (2023 winning design): a 2D encoder over stacks of grayscale
frames, then 3D inverted-residual blocks across the stacks, then heads.

    frames (B, T, H, W)  --stacks of 3-->  (B*S, 3, H, W)  --2D encoder + 1x1 proj-->  (B*S, C, h, w)
    --3D blocks over S-->  per-stack 1x1 proj, concatenated  --GeM, dropout-->  12 class logits
                                                                           +  12 team logits

The forward pass is split in two (``forward_stacks`` / ``forward_head``) because the 2D
part dominates the cost and each stack's features can be cached across sliding windows.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.layers import DropPath

from core.errors import BallspotError
from core.labels import NUM_CLASSES

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


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
    #: A local weights file for the encoder (timm/ImageNet state dict); random init otherwise.
    pretrained_weights: str | None = None
    #: "role" (home/away) or "side" (left/right, which a horizontal flip swaps).
    team_mode: str = "role"

    def __post_init__(self) -> None:
        self.input_size = tuple(self.input_size)
        if self.frames % self.stack:
            raise ValueError(f"frames ({self.frames}) must be a multiple of stack ({self.stack})")
        if self.team_mode not in ("role", "side"):
            raise ValueError(f"team_mode {self.team_mode!r}: 'role' or 'side'")

    @property
    def stacks(self) -> int:
        return self.frames // self.stack

    def stack_offsets(self) -> list[int]:
        """Video-frame offsets, from the centre frame, of the first frame of each stack."""
        half = self.frames // 2
        return [self.frame_step * (j * self.stack - half) for j in range(self.stacks)]

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
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


class BallActionModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.encoder = timm.create_model(c.encoder, pretrained=False, features_only=True, in_chans=c.stack,
                                         out_indices=(c.feature_stage,), drop_path_rate=c.drop_path)
        if c.pretrained_weights:
            self._load_encoder(Path(c.pretrained_weights))
        self._freeze_unused_encoder_stages()
        # Channels-last convolutions: on CUDA what tensor cores want; on a CPU (oneDNN) the
        # encoder runs about 2x faster too (bench/infer.py).
        self.encoder.to(memory_format=torch.channels_last)
        enc_channels = self.encoder.feature_info.channels()[-1]
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
        """Local encoder weights (e.g. timm's ImageNet ones saved once on a connected machine)."""
        if not path.is_file():
            raise BallspotError(f"{path}: pretrained weights file not found")
        state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu")
        if self.config.stack != 3 and "conv_stem.weight" in state:
            w = state["conv_stem.weight"]
            state["conv_stem.weight"] = w.mean(1, keepdim=True).repeat(1, self.config.stack, 1, 1) * 3 / self.config.stack
        missing, _ = self.encoder.load_state_dict(state, strict=False)
        if len(missing) > len(state):
            raise BallspotError(f"{path}: does not fit encoder {self.config.encoder} ({len(missing)} weights missing)")

    def forward_stacks(self, stacks: torch.Tensor) -> torch.Tensor:
        """(N, stack, H, W) normalised frames -> (N, C, h, w) features. The expensive part."""
        feats = self.proj(self.encoder(stacks.contiguous(memory_format=torch.channels_last))[-1])
        # The 3D part gets the ordinary layout, in training as in inference (cached stacks).
        return feats.contiguous()

    def forward_head(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, C, h, w) stack features -> class logits (B, K), team logits (B, K)."""
        x = feats.permute(0, 2, 1, 3, 4)  # (B, C, S, h, w): the stacks are the 3D part's time
        x = self.stack_proj(self.blocks(x))  # (B, C', S, h, w)
        b, c, s, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b, s * c, h, w)  # stacks concatenated as channels
        x = self.dropout(self.pool(x))
        return self.head(x), self.team_head(x)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H, W) normalised frames -> class logits, team logits."""
        b, t, h, w = frames.shape
        c = self.config
        feats = self.forward_stacks(frames.reshape(b * c.stacks, c.stack, h, w))
        return self.forward_head(feats.reshape(b, c.stacks, *feats.shape[1:]))


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
    data = {k: v for k, v in data.items() if k in {f.name for f in fields(ModelConfig)}}
    data["pretrained_weights"] = None  # the saved weights include the encoder's
    return ModelConfig.from_dict(data)


def load(folder: str | Path, map_location: str | torch.device = "cpu") -> BallActionModel:
    folder = Path(folder)
    model = BallActionModel(load_config(folder))
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise BallspotError(f"{folder}: no {WEIGHTS_FILE}")
    model.load_state_dict(load_file(str(weights), device=str(map_location)))
    return model.eval()
