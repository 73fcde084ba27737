#!/usr/bin/env python3
"""Synthetic match rendering speed on one core, side by side in one run.

Times, on one CPU core (affinity pinned, OpenCV and x264 single-threaded), planning a game,
drawing its frames, and drawing + encoding them as ``launch.py synth`` does (exact mode, the
default, and fast mode), and prints each as a multiple of real time (25 frames/s).
Target: drawing + encoding at 640x360 at least 2x real time.

    python bench/synth.py [--seconds 20] [--size 640x360]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2

from core.labels import FPS
from core.synth.game import SynthConfig, _rng, plan, write_video
from core.synth.render import Renderer, RenderOptions

TARGET = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    width, height = (int(v) for v in args.size.split("x"))
    config = SynthConfig(minutes=args.seconds / 60, seed=1, render=RenderOptions(width, height), threads=1)
    n = config.n_frames

    t = time.perf_counter()
    world = plan(config)
    t_plan = time.perf_counter() - t

    renderer = Renderer(world, config.render, _rng(config, 1))
    t = time.perf_counter()
    for i in range(n):
        renderer.frame(i)
    t_draw = time.perf_counter() - t

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in (("draw+encode (exact)", config), ("draw+encode (fast)", replace(config, exact=False))):
            renderer = Renderer(world, cfg.render, _rng(cfg, 1))
            t = time.perf_counter()
            write_video(Path(tmp) / f"{name[-5:-1]}.mp4", renderer, cfg)
            results[name] = time.perf_counter() - t

    video_s = n / FPS
    print(f"{n} frames ({video_s:.0f} s of video) at {width}x{height} on one core")
    print(f"  plan (events, positions)  {t_plan:6.2f} s   {video_s / t_plan:7.1f}x real time")
    print(f"  draw only                 {t_draw:6.2f} s   {video_s / t_draw:7.1f}x real time")
    for name, seconds in results.items():
        print(f"  {name:25s} {seconds:6.2f} s   {video_s / seconds:7.1f}x real time")
    speed = video_s / results["draw+encode (exact)"]
    print(f"exact draw+encode / {TARGET:.0f}x target: {speed / TARGET:.2f}  (>= 1 passes)")


if __name__ == "__main__":
    main()
