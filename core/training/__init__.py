"""Training on the store's labels, one concern per module, imported in this order (no cycle):

- ``config``: ``TrainConfig`` and ``PretrainConfig``, what a run is told;
- ``data``: the games (``GameData``), their frame cache, ``load_games``;
- ``clips``: targets, sampling, the clip dataset and its augmentation;
- ``loss``: focal loss and the learning-rate schedule;
- ``track``: everything a model that reads the ball's track needs;
- ``pretrain``: the encoder and ball detector pretrained on synthetic sidecars;
- ``train``: the loop, ``train()``, as its steps;
- ``progress``: training's records read as the steps every long task reports;
- ``__main__``: the command line (``python -m core.training``, also under torchrun).

Callers import the public names from here: ``from core.training import TrainConfig, train``.
"""
from core.training.config import PretrainConfig, Records, TrainConfig
from core.training.data import GameData, load_games
from core.training.pretrain import NoSidecarError, pretrain
from core.training.train import train, validate

__all__ = ["GameData", "NoSidecarError", "PretrainConfig", "Records", "TrainConfig", "load_games", "pretrain",
           "train", "validate"]
