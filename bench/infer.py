#!/usr/bin/env python3
"""Inference speed, side by side in one run.

1. Cached vs uncached inference of the default model on the same synthetic clip (same
   outputs; the cached path runs the 2D encoder once per stack instead of once per window).
2. Steady-state cached frames/s of the default model at 368x640 and 736x1280 on this CPU.
3. The frame reader (decode + grey + fit, in a thread) vs raw OpenCV decoding of the same
   720p file.
4. The 2D encoder in channels-last memory (what the model uses) vs contiguous, for the
   default model and cpu_small's encoder.

    python bench/infer.py [--size 224x384] [--frames 48] [--skip-full]
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from core.infer import InferConfig, frame_scores, frame_scores_uncached
from core.model import BallActionModel, ModelConfig
from core.synth import RenderOptions, SynthConfig, generate_game
from core.training import TrainConfig
from core.video import FrameReader

ROOT = Path(__file__).resolve().parents[1]


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def steady_fps(size: tuple[int, int], tta: bool, short: int = 6, long: int = 18) -> float:
    """Frames/s once the cache is warm. Windows 0..n-1 need n + 24 stacks with the seed's
    layout, so the difference between two clip lengths is one new stack per frame."""
    torch.manual_seed(0)
    model = BallActionModel(ModelConfig(input_size=size)).eval()
    clip = np.random.default_rng(0).integers(0, 255, (long, *size), dtype=np.uint8)
    cfg = InferConfig(batch=6, tta=tta)
    times = []
    for n in (short, long):
        t = time.perf_counter()
        frame_scores(model, iter(clip[:n]), cfg)
        times.append(time.perf_counter() - t)
    return (long - short) / max(times[1] - times[0], 1e-9)


@torch.inference_mode()
def encoder_rate(config: ModelConfig, n: int, channels_last: bool) -> float:
    """Stacks/s of the 2D part (encoder + projection, what ``forward_stacks`` runs) with the
    encoder's weights and input in one memory format; the best of 3 timed passes."""
    model = BallActionModel(config).eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.encoder.to(memory_format=fmt)
    x = torch.randn(n, config.stack, *config.input_size).contiguous(memory_format=fmt)
    model.proj(model.encoder(x)[-1])  # warm-up
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        model.proj(model.encoder(x)[-1])
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="384x224", help="model input WxH for the cached/uncached comparison")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--skip-full", action="store_true", help="skip the 736x1280 measurement (slow on CPU)")
    args = parser.parse_args()
    size = _size(args.size)
    torch.manual_seed(0)
    model = BallActionModel(ModelConfig(input_size=size)).eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")

    with tempfile.TemporaryDirectory() as tmp:
        folder = generate_game(tmp, SynthConfig(minutes=max(args.frames, 750) / 25 / 60, seed=3,
                                                render=RenderOptions(1280, 720), exact=False))
        video = folder / "720p.mp4"
        with FrameReader(video, size) as reader:
            clip = np.stack(list(reader))[: args.frames]

        cfg = InferConfig(batch=8, tta=False)
        t = time.perf_counter()
        cached = frame_scores(model, iter(clip), cfg)
        t_cached = time.perf_counter() - t
        t = time.perf_counter()
        full = frame_scores_uncached(model, clip, cfg)
        t_full = time.perf_counter() - t
        diff = float(np.abs(cached.scores - full.scores).max())
        print(f"\n1. {len(clip)} frames at {size[1]}x{size[0]}, no TTA (max |cached - uncached| = {diff:.1e})")
        print(f"   uncached {len(clip) / t_full:7.2f} frames/s")
        print(f"   cached   {len(clip) / t_cached:7.2f} frames/s")
        print(f"   cached / uncached speed: {t_full / t_cached:.2f}x  (target >= 3x)")

        print("\n2. steady-state cached frames/s of the default model on this CPU")
        sizes = [(368, 640)] + ([] if args.skip_full else [(736, 1280)])
        for s in sizes:
            for tta in (False, True):
                print(f"   {s[1]}x{s[0]} {'TTA   ' if tta else 'no TTA'} {steady_fps(s, tta):7.2f} frames/s")

        cap = cv2.VideoCapture(str(video))
        t = time.perf_counter()
        n_cv = 0
        while cap.read()[0]:
            n_cv += 1
        t_cv = time.perf_counter() - t
        t = time.perf_counter()
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            raw = sum(1 for _ in container.decode(stream))
        t_raw = time.perf_counter() - t
        t = time.perf_counter()
        with FrameReader(video, (736, 1280)) as reader:
            read = sum(1 for _ in reader)
        t_read = time.perf_counter() - t
        print(f"\n3. decoding {raw} frames of 1280x720 H.264")
        print(f"   raw decode, OpenCV (to BGR)        {n_cv / t_cv:7.1f} frames/s")
        print(f"   raw decode, PyAV (threaded)        {raw / t_raw:7.1f} frames/s")
        print(f"   FrameReader (grey, fit 736x1280)   {read / t_read:7.1f} frames/s")
        ratio = (read / t_read) / max(raw / t_raw, n_cv / t_cv)
        print(f"   reader / fastest raw decode: {ratio:.2f}  (target >= 0.80)")

    print("\n4. 2D encoder stacks/s by memory format")
    small = TrainConfig.load(ROOT / "core" / "configs" / "cpu_small.yaml").model
    for name, config, n in (("default 640x368", ModelConfig(input_size=(368, 640)), 16),
                            (f"cpu_small {small.input_size[1]}x{small.input_size[0]}", small, 256)):
        contiguous, channels_last = (encoder_rate(config, n, last) for last in (False, True))
        print(f"   {name:20s} contiguous {contiguous:7.1f}  channels-last {channels_last:7.1f}  "
              f"ratio {channels_last / contiguous:.2f}")


if __name__ == "__main__":
    main()
