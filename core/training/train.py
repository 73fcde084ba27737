"""The training loop: the seed's recipe, from one CPU to several GPUs (``torchrun``).

Focal loss + team loss, AdamW, warm-up then cosine, EMA of weights, validation mAP@1 each
epoch; the best EMA weights become the model, registered as a version. ``train()`` reads as
its steps (set-up, games, pretraining, build, optimisation, resume, epochs, register), each
a function below, so a change to one (say, the optimiser) is made in one place.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from timm.utils import ModelEmaV3

from core.effort import best_cut
from core.errors import BallspotError
from core.infer import InferConfig, events_from_scores, frame_scores
from core.labels import ms_to_frame
from core.formats import prediction_dict
from core.metrics import GameEvents, average_map
from core.model import BallActionModel, load_torch_file, normalise, save
from core.store import Store
from core.training.clips import ClipDataset, sample_epoch
from core.training.config import Records, TrainConfig
from core.training.data import GameData, load_games, team_mode
from core.training.loss import focal_loss, lr_factor
from core.training.pretrain import pretrained_encoder
from core.training.progress import VALID_MAP, record_map
from core.training.track import require_ball_detector, set_up_track
from core.versions import register_version
from core.weights import NONE, check_pretrained
from core.workspace import Workspace


@dataclass
class Run:
    """What every step of one run shares: its config, folder, device and place among the ranks."""

    config: TrainConfig
    out: Path
    device: torch.device
    rank: int
    world: int
    #: Rank 0's reporting; the other ranks report nothing.
    progress: Records | None


@dataclass
class EpochTotals:
    """What one epoch of clips adds up to on this rank, for its record."""

    epoch: int
    loss: float  # summed over the steps
    class_loss: float
    steps: int
    samples: int
    seconds: float


@dataclass
class Optimisation:
    """The optimiser, its schedule and the weights' moving average (the model kept)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: ModelEmaV3
    steps_per_epoch: int


def train(config: TrainConfig, store: Store, workspace: Workspace, *, out: Path, init: Path | None = None,
          parent: str | None = None, version: str | None = None, resume: bool = False,
          progress: Records | None = None) -> dict | None:
    """Train, validate each epoch, save the best EMA weights to ``out/model`` and register them.

    ``init`` fine-tunes that model (its architecture, this config's schedule); ``resume``
    continues from ``out/checkpoint.pt``. Returns the registered model row (rank 0).
    """
    if init is None and not resume:  # offline without the ImageNet weights (or a missing file): fail now,
        check_pretrained(config.model)   # before any data loads; a resume reads every weight from its checkpoint
    run = _set_up(config, Path(out), init, progress)
    train_games, valid_games = _games(run, store, workspace)
    config.model.team_mode = team_mode(train_games)  # left/right labels: side mode, whatever the config said
    fingerprint = store.label_fingerprint([g.game_id for g in train_games])
    if config.pretrain.steps and init is None and config.model.pretrained == NONE:
        config.model.pretrained = pretrained_encoder(config, store, workspace, run.out, run.rank, run.world,
                                                     progress) or NONE
    if init is None:
        require_ball_detector(config)
    checkpoint = run.out / "checkpoint.pt"
    state = _checkpoint(checkpoint, run.device) if resume else None
    model, kept = _build(run, init, train_games, state, workspace.cache_dir / "tracks")
    opt = _optimisation(model, config, run.world)
    net = torch.nn.parallel.DistributedDataParallel(model) if run.world > 1 else model
    if config.compile:
        net = torch.compile(net)
    start_epoch, best, history = _resume(state, opt) if state is not None else (0, -math.inf, [])
    if run.rank == 0:
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / "config.yaml").write_text(yaml.safe_dump(config.as_dict(), sort_keys=False))
    for epoch in range(start_epoch, config.epochs):
        totals = _epoch(run, net, model, kept, opt, train_games, epoch)
        if run.rank == 0:
            best = _end_epoch(run, model, opt, valid_games, totals, best, history)
        if run.world > 1:
            dist.barrier()
    # Each rank leaves a digest of its weights: after DDP they must all be the same.
    digest = hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for v in model.state_dict().values()))
    (run.out / f"rank-{run.rank}.sha256").write_text(digest.hexdigest())
    registered = None
    if run.rank == 0:
        registered = _register(run, store, history, train_games, valid_games, version=version, parent=parent,
                               fingerprint=fingerprint)
    if run.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return registered


# --------------------------------------------------------------------------- the steps


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def _set_up(config: TrainConfig, out: Path, init: Path | None, progress: Records | None) -> Run:
    """The ranks, the device, the seeds, and (fine-tuning) the architecture of ``init``."""
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
    return Run(config, out, device, rank, world, progress if rank == 0 else None)


def _games(run: Run, store: Store, workspace: Workspace) -> tuple[list[GameData], list[GameData]]:
    """The training games (every rank) and the validation games (rank 0, which validates)."""
    config = run.config
    if run.world > 1 and run.rank != 0:
        dist.barrier()  # rank 0 builds the frame caches first; the others then open them
    train_games = load_games(store, workspace, config.train_splits, config, config.train_games,
                             reviewed=config.reviewed_games)
    if run.world > 1 and run.rank == 0:
        dist.barrier()
    if not train_games or not any(len(g.events) for g in train_games):
        raise BallspotError(f"no labelled game with a video in splits {config.train_splits}")
    valid_games = load_games(store, workspace, config.valid_splits, config) if run.rank == 0 else []
    return train_games, valid_games


def _encoder_frozen(config: TrainConfig) -> bool:
    """A model that sees the ball's track keeps its encoder (and ball detector) as they are:
    the track of every frame is computed once, from them. So does ``encoder_lr_scale`` 0."""
    return config.encoder_lr_scale == 0 or config.model.track_frames > 0


def _build(run: Run, init: Path | None, train_games: list[GameData], state: dict | None,
           tracks: Path) -> tuple[BallActionModel, list[torch.nn.Module]]:
    """The model (``init``'s weights when fine-tuning, the checkpoint's ``state`` when
    resuming), on the device, with its track set up (the tracks kept in ``tracks``); and the
    modules that stay as they are (no gradients, batch-norm statistics kept)."""
    config = run.config
    if state is None:
        model = BallActionModel(config.model)
    else:
        # The checkpoint holds every weight: the encoder's starting weights (ImageNet's, which
        # may not be at hand offline) are not read again. Loaded before the track is set up:
        # the ball detector computes every training frame's track.
        model = BallActionModel(dataclasses.replace(config.model, pretrained=NONE))
        model.config = config.model  # what the saved model says it started from
        model.load_state_dict(state["model"])
    if init is not None and state is None:  # a resume continues from its checkpoint, as it always did
        from core.model import load as load_model
        model.load_state_dict(load_model(init).state_dict())
    model.to(run.device)
    kept = [model.encoder] if _encoder_frozen(config) else []
    if config.model.track_frames:
        kept += set_up_track(model, train_games, config, run.device, resume=state is not None, world=run.world,
                             progress=run.progress, cache=tracks)
    for module in kept:
        module.requires_grad_(False)
    return model, kept


def _optimisation(model: BallActionModel, config: TrainConfig, world: int) -> Optimisation:
    """AdamW (the encoder at ``encoder_lr_scale`` unless frozen), warm-up then cosine, and the EMA."""
    ema = ModelEmaV3(model, decay=config.ema)
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in encoder_ids and p.requires_grad]}]
    if not _encoder_frozen(config):
        groups.append({"params": [p for p in model.encoder.parameters() if p.requires_grad],
                       "lr": config.lr * config.encoder_lr_scale})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, config.samples_per_epoch // (config.batch * world))
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, config.min_lr_ratio))
    return Optimisation(optimizer, scheduler, ema, steps_per_epoch)


def _checkpoint(checkpoint: Path, device: torch.device) -> dict:
    """What a run saved to resume from (``save_checkpoint``)."""
    if not checkpoint.is_file():
        raise BallspotError(f"{checkpoint.parent}: no checkpoint to resume from")
    return load_torch_file(checkpoint, map_location=device)


def _resume(state: dict, opt: Optimisation) -> tuple[int, float, list[dict]]:
    """The EMA weights, optimiser and schedule of a checkpoint's ``state``; its epoch, best score
    and history. (The model holds the checkpoint's weights already: ``_build``.)"""
    opt.ema.module.load_state_dict(state["ema"])
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    return state["epoch"], state["best"], state["history"]


def _epoch(run: Run, net: torch.nn.Module, model: BallActionModel, kept: list[torch.nn.Module], opt: Optimisation,
           games: list[GameData], epoch: int) -> EpochTotals:
    """One epoch of clips on this rank's share of the samples; then every rank holds rank 0's model."""
    config, rank, world = run.config, run.rank, run.world
    rng = np.random.default_rng((config.seed, epoch))
    samples = sample_epoch(games, config, rng)[rank::world]
    loader = torch.utils.data.DataLoader(
        ClipDataset(games, samples, config, seed=config.seed * 1000 + epoch * 7919 + rank),
        batch_size=config.batch, shuffle=False, num_workers=config.workers, drop_last=True,
        persistent_workers=False)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp and run.device.type == "cuda")
    net.train()
    for module in kept:
        module.eval()  # and their batch-norm statistics
    t0, seen, running, running_class = time.perf_counter(), 0, 0.0, 0.0
    for step, (frames, y, team, mask, track, known) in enumerate(loader):
        if step >= opt.steps_per_epoch:
            break
        frames, y, team, mask, track, known = (t.to(run.device, non_blocking=True)
                                               for t in (frames, y, team, mask, track, known))
        with autocast:
            logits, team_logits = net(normalise(frames), track if config.model.track_frames else None)
            loss = focal_loss(logits.float(), y, config.focal_gamma, known)
            team_loss = (F.binary_cross_entropy_with_logits(team_logits.float(), team, reduction="none")
                         * mask).sum() / mask.sum().clamp(min=1)
            total_loss = loss + config.team_weight * team_loss
        opt.optimizer.zero_grad(set_to_none=True)
        total_loss.backward()
        opt.optimizer.step()
        opt.scheduler.step()
        opt.ema.update(model)
        seen += len(frames)
        running += float(total_loss.detach())
        running_class += float(loss.detach())
        if run.progress is not None and step % 10 == 0:
            run.progress({"epoch": epoch + 1, "step": step + 1, "steps": opt.steps_per_epoch,
                          "loss": float(total_loss.detach()), "lr": opt.scheduler.get_last_lr()[0]})
    elapsed = time.perf_counter() - t0
    if world > 1:
        # Gradients are averaged, so weights agree; batch-norm statistics are each rank's
        # own since the last step. Take rank 0's so every rank holds the same model.
        for module in (model, opt.ema.module):
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)
        dist.barrier()
    return EpochTotals(epoch + 1, running, running_class, step + 1, seen, elapsed)


def _end_epoch(run: Run, model: BallActionModel, opt: Optimisation, valid_games: list[GameData],
               totals: EpochTotals, best: float, history: list[dict]) -> float:
    """Rank 0: validate (every ``valid_every`` epochs and after the last), log the epoch, keep
    the best EMA weights in ``out/best`` and write the checkpoint. Returns the best score."""
    config, out, epoch = run.config, run.out, totals.epoch
    validating = epoch % max(1, config.valid_every) == 0 or epoch == config.epochs
    metrics = validate(opt.ema.module, valid_games if validating else [], config, run.device)
    score = metrics["mAP@1"] if metrics["mAP@1"] is not None else -totals.loss
    if not validating:
        score = -math.inf
    steps = max(1, totals.steps)
    record = {"epoch": epoch, "loss": totals.loss / steps, "class_loss": totals.class_loss / steps,
              "lr": opt.scheduler.get_last_lr()[0],
              "samples_per_s": totals.samples * run.world / max(totals.seconds, 1e-9),
              VALID_MAP: metrics["mAP@1"], "per_class": metrics["per_class"], "support": metrics["support"],
              "review_cut": metrics["review_cut"]}
    history.append(record)
    with open(out / "progress.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    if run.progress is not None:
        run.progress(record)
    if score > best:
        best = score
        save(opt.ema.module, out / ".best-partial")
        shutil.rmtree(out / "best", ignore_errors=True)
        (out / ".best-partial").rename(out / "best")
    save_checkpoint(out / "checkpoint.pt", {
        "model": model.state_dict(), "ema": opt.ema.module.state_dict(), "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(), "epoch": epoch, "best": best, "history": history})
    return best


def _register(run: Run, store: Store, history: list[dict], train_games: list[GameData], valid_games: list[GameData],
              *, version: str | None, parent: str | None, fingerprint: str) -> dict:
    """Rank 0: the best weights become ``out/model``, with their metrics, registered as a version."""
    out = run.out
    final = out / "model"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(out / "best", final)
    best_record = max(history, key=lambda r: r_map if (r_map := record_map(r)) is not None else -1)
    metrics = {VALID_MAP: record_map(best_record), "per_class": best_record["per_class"],
               "support": best_record.get("support", {}), "review_cut": best_record.get("review_cut"),
               "epochs": len(history), "train_games": [g.url_local for g in train_games],
               "valid_games": [g.url_local for g in valid_games],
               "reviewed_labels": int(sum(len(g.events) for g in train_games))}
    (final / "metrics.json").write_text(json.dumps(metrics, indent=2))
    shutil.copy(out / "progress.jsonl", final / "progress.jsonl")
    return register_version(store, version or _next_version(store), path=str(final.resolve()), parent=parent,
                            config=run.config.as_dict(), metrics=metrics, label_fingerprint=fingerprint)


def validate(model: BallActionModel, games: list[GameData], config: TrainConfig, device: torch.device) -> dict:
    """mAP@1 on the validation games with the given (EMA) weights, and the review cut: the
    confidence at or above which reviewing their predictions costs an analyst least
    (``core.effort.best_cut``; the review screen offers it as its confidence filter)."""
    if not games:
        return {"mAP@1": None, "per_class": {}, "support": {}, "review_cut": None}
    model.eval()
    entries, reviewed = [], []
    infer = InferConfig(batch=config.valid_batch, tta=False, device=str(device))
    for g in games:
        with g.stream(tuple(config.model.input_size)) as frames:
            scores = frame_scores(model, frames, infer)
        events = events_from_scores(scores, infer, config.model.team_mode)
        preds = [prediction_dict(e.frame, e.label, e.team, e.confidence) for e in events]
        entries.append(GameEvents(g.url_local, g.labels, preds))
        truth = [{"frame": ms_to_frame(int(a["position"])), "label": a["label"], "team": a["team"]} for a in g.labels]
        reviewed.append(([{"id": k, "frame": e.frame, "label": e.label, "team": e.team, "confidence": e.confidence}
                          for k, e in enumerate(events)], truth, g.n_frames))
    result = average_map(entries, "at1")
    # support: validation events per class; a class with none has no score to show (n/a, not 0).
    return {"mAP@1": result.mAP, "per_class": result.per_class, "support": result.support,
            "review_cut": best_cut(reviewed)}


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


def _next_version(store: Store) -> str:
    taken = {m["version"] for m in store.models()}
    k = 1
    while f"v{k}" in taken:
        k += 1
    return f"v{k}"
