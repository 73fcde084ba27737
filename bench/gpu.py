#!/usr/bin/env python3
"""GPU check of the full-size model, in one prepared run (about 5 minutes on one H200).

Inference: a synthetic 1280x720 match (a rendered minute repeated to ``--minutes``, as
``bench/fullgame.py`` builds it) read, fitted to 1280x736 and inferred by the default model
(the full recipe's architecture, random weights: speed does not depend on them) with and
without flip TTA, bf16 autocast; frames/s with decode included, beside decode-only frames/s of
the same file, the time of each stage, peak GPU memory, and what a 100-minute match takes at
that speed. Goal: a 100-minute match with TTA in under 2 minutes (about 1,250 frames/s).

Training, the full recipe (``core/configs/ball_action.yaml``; ``pretrained: none``, as an
offline machine has no ImageNet weights and speed does not depend on them):
  1. the training step alone (bf16, channels-last, AdamW, EMA) on frames already on the GPU,
     at growing batch sizes until memory runs out: what the GPU can do;
  2. ``core.training.train`` itself, one epoch on the synthetic match (clips read from the
     video by the data loader's workers, augmented, the step as above): what a user gets.
Goal: >= 60 samples/s.

    python bench/gpu.py [--minutes 10] [--device cuda] [--compile] [--skip-train] [--json FILE]

``--device cpu --minutes 0.1 --size 320x180 --config core/configs/tiny.yaml`` is a smoke test on a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from bench.fullgame import DEFAULT_CACHE, _cache, build_match, machine

from core.infer import InferConfig, infer_video, measure
from core.model import BallActionModel
from core.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "core" / "configs" / "ball_action.yaml"
FULL_MATCH_FRAMES = 100 * 60 * 25
GOAL_FULL_MATCH_S, GOAL_TRAIN_SPS = 120.0, 60.0


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_only(video: Path) -> float:
    """Frames/s of PyAV decoding every frame with FFmpeg's threads, nothing converted."""
    import av

    t = time.perf_counter()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = sum(1 for _ in container.decode(stream))
    return n / (time.perf_counter() - t)


def inference(video: Path, warm: Path, recipe: TrainConfig, device: torch.device, batch: int,
              compiled: bool) -> list[dict]:
    """Whole-video inference of the recipe's architecture, with and without TTA."""
    model = BallActionModel(replace(recipe.model, pretrained="none")).eval()
    rows = []
    for tta in (False, True):
        config = InferConfig(batch=batch, tta=tta, device=str(device), compile=compiled)
        infer_video(model, warm, config)  # warm-up: cuDNN picks its kernels (and a compile happens)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with measure() as stats:
            t = time.perf_counter()
            scores, events = infer_video(model, video, config)
            _sync(device)
            seconds = time.perf_counter() - t
        n = len(scores.scores)
        rows.append({"tta": tta, "compiled": stats.compiled, "frames": n, "seconds": seconds, "fps": n / seconds,
                     "full_match_s": FULL_MATCH_FRAMES / (n / seconds), "events": len(events),
                     "peak_gpu_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                     "stats": asdict(stats), "bound": stats.bound()})
    return rows


def train_steps(video: Path, recipe: TrainConfig, device: torch.device, max_batch: int, steps: int = 8) -> list[dict]:
    """The full recipe's training step alone, at growing batch sizes, on frames on the GPU."""
    import numpy as np
    import torch.nn.functional as F
    from timm.utils import ModelEmaV3

    from core.model import normalise
    from core.training.loss import focal_loss
    from core.video import FrameReader

    mc = replace(recipe.model, pretrained="none")
    with FrameReader(video, tuple(mc.input_size)) as reader:
        frames = torch.from_numpy(np.stack([f for _, f in zip(range(160), reader)])).to(device)
    rows, batch = [], 2
    while batch <= max_batch:
        try:
            model = BallActionModel(mc).to(device).train()
            ema = ModelEmaV3(model, decay=recipe.ema)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr,
                                    weight_decay=recipe.weight_decay)
            index = torch.arange(mc.frames, device=device) * mc.frame_step
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t = 0.0
            for step in range(steps + 2):  # two warm-up steps
                if step == 2:
                    _sync(device)
                    t = time.perf_counter()
                starts = torch.randint(0, len(frames) - int(index[-1]) - 1, (batch,), device=device)
                x = normalise(frames[starts[:, None] + index[None]])
                y = (torch.rand(batch, mc.num_classes, device=device) < 0.1).float()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits, team = model(x)
                    loss = focal_loss(logits.float(), y, recipe.focal_gamma) + recipe.team_weight * \
                        F.binary_cross_entropy_with_logits(team.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ema.update(model)
            _sync(device)
            rate = steps * batch / (time.perf_counter() - t)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            rows.append({"batch": batch, "samples_per_s": rate, "peak_gpu_gb": peak})
            print(f"  training step, batch {batch:3d}: {rate:7.1f} samples/s"
                  + (f", peak {peak:.1f} GiB" if peak is not None else ""), flush=True)
            del model, ema, opt
        except torch.OutOfMemoryError:
            print(f"  training step, batch {batch}: out of memory", flush=True)
            break
        batch *= 2
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def train_epoch(match: Path, recipe: TrainConfig, samples: int, batch: int | None) -> dict:
    """One epoch of ``core.training.train`` with the recipe on the match (imported as a training
    game of a fresh workspace): samples/s as its epoch record reports it (data loading included)."""
    from core.ingest import import_source
    from core.store import Store
    from core.training import train
    from core.workspace import Workspace

    config = replace(recipe, model=replace(recipe.model, pretrained="none"), pretrain=replace(recipe.pretrain, steps=0),
                     epochs=1, warmup_epochs=0,
                     samples_per_epoch=samples, batch=batch or recipe.batch, train_splits=["train"],
                     valid_splits=["none"])
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.at(Path(tmp) / "ws").ensure()
        with Store.open(ws) as store:
            import_source(store, match, workspace=ws, split="train")
            t = time.perf_counter()
            train(config, store, ws, out=Path(tmp) / "run", progress=records.append)
            seconds = time.perf_counter() - t
    epoch = next(r for r in records if "samples_per_s" in r)
    return {"batch": config.batch, "workers": config.workers, "samples": samples,
            "samples_per_s": epoch["samples_per_s"], "run_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the synthetic match")
    parser.add_argument("--size", default="1280x720", help="the video's size")
    parser.add_argument("--model-size", default=None, help="model input WxH (default: the recipe's, 1280x736)")
    parser.add_argument("--batch", type=int, default=32, help="inference batch (windows)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="also infer with the model compiled (torch.compile)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--max-train-batch", type=int, default=64)
    parser.add_argument("--train-samples", type=int, default=800, help="samples of the training epoch")
    parser.add_argument("--train-batch", type=int, default=None, help="batch of the training epoch (default: recipe)")
    parser.add_argument("--config", type=Path, default=RECIPE, help="the recipe (a CPU smoke test: a light one)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    info = machine()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --device cpu (and small sizes) for a smoke test")
        torch.backends.cudnn.benchmark = True
        info["gpu"] = torch.cuda.get_device_name(device)
    print(f"{info['date']}: {info.get('gpu', 'no GPU')}, {info['cpus']} CPUs ({info['cpu']}), "
          f"torch {info['torch']}", flush=True)
    recipe = TrainConfig.load(args.config)
    if args.model_size:
        w, h = _size(args.model_size)
        recipe.model = replace(recipe.model, input_size=(h, w))
    cache = _cache(args.cache.resolve())
    size = _size(args.size)
    t = time.perf_counter()
    stretch = min(1.0, args.minutes)
    match = build_match(cache, args.minutes, stretch, size)
    warm = build_match(cache, stretch, stretch, size)
    video, warm_video = (next(m.rglob("*.mp4")) for m in (match, warm))
    print(f"{args.minutes:g}-minute {size[0]}x{size[1]} match ready in {time.perf_counter() - t:.0f} s", flush=True)
    out: dict = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}}
    out["decode_fps"] = decode_only(video)
    h, w = recipe.model.input_size
    print(f"\ninference at {w}x{h} (decode included), batch {args.batch}; "
          f"decode only: {out['decode_fps']:.0f} frames/s")
    out["inference"] = inference(video, warm_video, recipe, device, args.batch, False)
    if args.compile:
        out["inference"] += inference(video, warm_video, recipe, device, args.batch, True)
    for r in out["inference"]:
        s = r["stats"]
        print(f"  {'TTA   ' if r['tta'] else 'no TTA'}{' compiled' if r['compiled'] else ''}: {r['fps']:7.0f} frames/s "
              f"({r['fps'] / out['decode_fps']:.2f}x decode-only), a 100-minute match in {r['full_match_s']:.0f} s"
              + (f", peak {r['peak_gpu_gb']:.1f} GiB" if r["peak_gpu_gb"] is not None else "")
              + f"; stages (s): waiting for frames {s['wait_s']:.1f} (decode {s['decode_s']:.1f}, resize "
              f"{s['resize_s']:.1f}), encoder {s['encoder_s']:.1f}, 3D part + heads {s['head_s']:.1f}; "
              f"bound by {r['bound']}", flush=True)
    tta = next(r for r in out["inference"] if r["tta"] and not r["compiled"])
    goals = [f"100-minute match with TTA in {tta['full_match_s']:.0f} s (< {GOAL_FULL_MATCH_S:.0f}): "
             + ("met" if tta["full_match_s"] < GOAL_FULL_MATCH_S else f"MISSED, bound by {tta['bound']}")]
    if not args.skip_train:
        print(f"\ntraining, {args.config.name} at {w}x{h} x{recipe.model.frames} frames", flush=True)
        out["train_steps"] = train_steps(video, recipe, device, args.max_train_batch)
        out["train_epoch"] = train_epoch(match, recipe, args.train_samples, args.train_batch)
        e = out["train_epoch"]
        print(f"  core.training.train, batch {e['batch']}, {e['workers']} loader workers: "
              f"{e['samples_per_s']:.1f} samples/s (data loading included)", flush=True)
        goals.append(f"training at {e['samples_per_s']:.0f} samples/s (>= {GOAL_TRAIN_SPS:.0f}): "
                     + ("met" if e["samples_per_s"] >= GOAL_TRAIN_SPS else "MISSED"))
    print("\ngoals:\n  " + "\n  ".join(goals))
    out["goals"] = goals
    path = args.json or cache / "gpu.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"figures: {path}")


if __name__ == "__main__":
    if os.environ.get("CUDA_LAUNCH_BLOCKING"):
        print("note: CUDA_LAUNCH_BLOCKING is set; the figures will be low", file=sys.stderr)
    main()
