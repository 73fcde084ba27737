#!/usr/bin/env python3
"""GPU check: full-size inference of the default model (736x1280 input, flip TTA, AMP) on a
synthetic 1280x720 match, in well under 5 minutes on one large GPU.

Prints decode-included frames/s of whole-video inference with and without TTA, and peak GPU
memory. (The training part of this check comes with the training issue.)

    python bench/gpu.py [--seconds 120] [--batch 32] [--device cuda]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.infer import InferConfig, infer_video  # noqa: E402
from core.model import BallActionModel, ModelConfig  # noqa: E402
from core.synth import SynthConfig, generate_game  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the synthetic video")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda")
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
        folder = generate_game(tmp, SynthConfig(minutes=args.seconds / 60, seed=1, width=1280, height=720,
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


if __name__ == "__main__":
    main()
