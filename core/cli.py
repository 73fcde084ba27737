"""The options of core's command-line entry points, apart from the code they run.

``launch.py`` lists every command in one parser; the entries that core starts by itself
(``python -m core.training``, also under torchrun) parse the same options. Defining them here,
in a module that imports nothing heavy, lets ``launch.py --help`` stay quick while both
parsers stay one definition.
"""
from __future__ import annotations

import argparse


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The train command's options (``launch.py train`` adds ``--workspace`` itself)."""
    p.add_argument("--config", required=True, help="core/configs/NAME.yaml")
    p.add_argument("--init", default=None, metavar="CKPT_OR_VERSION", help="start from this model")
    p.add_argument("--out", default=None, help="run folder (default: workspace runs/train-<time>)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--resume", default=None, metavar="DIR", help="continue an interrupted run")
