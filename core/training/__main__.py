"""Training from the command line: ``python launch.py train`` and, for several GPUs,
``torchrun --nproc_per_node N -m core.training --workspace W --config C`` (what a retrain job
runs: core never starts ``launch.py``).

Every rank of a torchrun job runs this same code; they must agree on the run folder, which
torchrun's run id gives them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.cli import add_train_arguments
from core.errors import BallspotError
from core.progress import bar
from core.workspace import DEFAULT_WORKSPACE, Workspace


def run_folder(workspace: Workspace, out: str | None, resume: str | None) -> Path:
    """Where the run writes: the one asked for, else a new folder named by the time or, under
    torchrun, by its run id (the same on every rank)."""
    if resume or out:
        return Path(resume or out)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID")
        if not run_id or run_id == "none":
            raise BallspotError("under torchrun, give --out (the ranks must share one run folder)")
        return workspace.run_dir("train", run_id)
    return workspace.run_dir("train")


def run(args: argparse.Namespace) -> int:
    """Train as told; rank 0 registers the model and prints where it is."""
    from core.metrics import VALID_MAP
    from core.runner import resolve_model
    from core.store import Store
    from core.training import TrainConfig, train
    from core.training.progress import records_to

    ws = Workspace.at(args.workspace)
    config = TrainConfig.load(args.config, epochs=args.epochs)
    out = run_folder(ws, args.out, args.resume)
    rank = int(os.environ.get("RANK", "0"))
    with Store.open(ws) as store, bar("train", "%", enabled=rank == 0) as progress:
        init, parent = None, None
        if args.init:
            parent, init = resolve_model(store, args.init)
        row = train(config, store, ws, out=out, init=init, parent=parent, resume=bool(args.resume),
                    progress=records_to(progress, config.epochs))  # the words a job's log uses too
    if row is not None:
        print(f"Registered model {row['version']} at {row['path']}: valid mAP@1 {row['metrics'][VALID_MAP]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training", description="train a model on a workspace's labels")
    p.add_argument("--workspace", default=str(DEFAULT_WORKSPACE))
    add_train_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except BallspotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
