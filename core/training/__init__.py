"""Training on the store's labels, one concern per module, imported in this order (no cycle):

- ``config``: ``TrainConfig`` and ``PretrainConfig``, what a run is told;
- ``data``: the games (``GameData``), their frame cache, ``load_games``;
- ``clips``: targets, sampling, the clip dataset and its augmentation;
- ``loss``: focal loss and the learning-rate schedule;
- ``track``: everything a model that reads the ball's track needs;
- ``pretrain``: the encoder and ball detector pretrained on synthetic sidecars;
- ``train``: the loop, ``train()``, as its steps.

Callers import the public names from here: ``from core.training import TrainConfig, train``.
They are imported from their modules on first use (PEP 562), so that the command-line entry
(``python -m core.training``, ``core.training.__main__``) can lay out its options without
loading torch.
"""
import importlib

#: Public name -> the module of this package that defines it.
_HOMES = {
    "PretrainConfig": "config", "Records": "config", "TrainConfig": "config",
    "GameData": "data", "load_games": "data",
    "NoSidecarError": "pretrain", "pretrain": "pretrain",
    "train": "train", "validate": "train",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # later look-ups find it without calling this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
