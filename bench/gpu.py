#!/usr/bin/env python3
"""GPU check on a synthetic 1280x720 match, in well under 5 minutes on one large GPU.

Inference: decode-included frames/s of whole-video inference of the default model (736x1280
input, AMP) with and without flip TTA, and peak memory.
Training: samples/s and peak memory of the full recipe's step (15 frames at 1280x736, bf16
autocast, channels_last, AdamW, EMA) at growing batch sizes until memory runs out; the seed
reports about 20 samples/s on an RTX 3090 Ti.

    python bench/gpu.py [--seconds 120] [--batch 32] [--device cuda] [--skip-train]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from core.infer import InferConfig, infer_video
from core.model import BallActionModel, ModelConfig
from core.synth import RenderOptions, SynthConfig, generate_game

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the synthetic video")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--max-train-batch", type=int, default=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --device cpu for a (slow) smoke test")
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}")
        torch.backends.cudnn.benchmark = True
    model = BallActionModel(ModelConfig()).eval()  # random weights: speed does not depend on them
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        folder = generate_game(tmp, SynthConfig(minutes=args.seconds / 60, seed=1, render=RenderOptions(1280, 720),
                                                exact=False))
        print(f"synthetic video: {args.seconds:.0f} s at 1280x720 in {time.perf_counter() - t:.1f} s")
        video = folder / "720p.mp4"
        for tta in (False, True):
            config = InferConfig(batch=args.batch, tta=tta, device=args.device)
            infer_video(model, video, config)  # warm-up: cuDNN picks its kernels
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            t = time.perf_counter()
            scores, events = infer_video(model, video, config)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t
            n = len(scores.scores)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            print(f"736x1280 {'TTA   ' if tta else 'no TTA'}: {n / seconds:8.1f} frames/s "
                  f"({n / 25 / seconds:5.1f}x real time), peak {peak:.2f} GiB, {len(events)} events")
        if not args.skip_train:
            train_part(video, device, args.max_train_batch)


def train_part(video: Path, device: torch.device, max_batch: int) -> None:
    """Training steps of the full recipe on windows of the synthetic video's frames."""
    import numpy as np
    from timm.utils import ModelEmaV3

    from core.model import normalise
    from core.training import TrainConfig
    from core.training.loss import focal_loss
    from core.video import FrameReader

    config = TrainConfig.load(ROOT / "core" / "configs" / "ball_action.yaml")
    mc = config.model
    with FrameReader(video, tuple(mc.input_size)) as reader:
        frames = torch.from_numpy(np.stack([f for _, f in zip(range(200), reader)])).to(device)
    batch = 4
    while batch <= max_batch:
        try:
            model = BallActionModel(mc).to(device).train()
            ema = ModelEmaV3(model, decay=config.ema)
            opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            index = torch.arange(mc.frames, device=device) * mc.frame_step
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            steps, t = 8, 0.0
            for step in range(steps + 2):  # two warm-up steps
                if step == 2:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                starts = torch.randint(0, len(frames) - int(index[-1]) - 1, (batch,), device=device)
                x = normalise(frames[starts[:, None] + index[None]])
                y = (torch.rand(batch, mc.num_classes, device=device) < 0.1).float()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits, _ = model(x)
                    loss = focal_loss(logits.float(), y, config.focal_gamma)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ema.update(model)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rate = steps * batch / (time.perf_counter() - t)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            h, w = mc.input_size
            print(f"train {w}x{h} x{mc.frames}, batch {batch:3d}: {rate:7.1f} samples/s, peak {peak:.2f} GiB")
            del model, ema, opt
        except torch.OutOfMemoryError:
            print(f"train batch {batch}: out of memory")
            break
        batch *= 2


if __name__ == "__main__":
    main()
