"""What a training run is told: the config dataclasses, read from a YAML file.

Apart from the code that uses them so that every step of training (data, clips, the track,
pretraining, the loop) can import them without importing each other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import yaml

from core.errors import BallspotError
from core.model import ModelConfig

#: Where training's records go as it runs: one dict per record (pretraining, the track, an epoch's
#: steps and its end), the lines of the run's ``progress.jsonl``. ``core.training.progress``
#: reads them as the :class:`core.progress.Step` every long task reports.
Records = Callable[[dict], None]


@dataclass
class PretrainConfig:
    steps: int = 600
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    #: Loss weights of the ball's place inside its cell, the player-presence maps and the
    #: ball's height/motion regression.
    offset_weight: float = 2.0
    players_weight: float = 0.5
    motion_weight: float = 0.5
    touch_weight: float = 0.5


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
    #: Encoder pretraining on synthetic sidecars before training (0 steps: none), from a random
    #: encoder only (``model.pretrained: none``); see core.training.pretrain.
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
