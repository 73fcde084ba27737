#!/usr/bin/env python3
"""Review history on a full match: carry-over, the review queue and the version diff.

Builds a 100-minute game (labels only, no video) with 2,000 labels, a version "v1" with 5,800
predictions of which 3,000 are decided (half accepted, half rejected), and a version "v2" that
predicts the same events a frame off. Times, each the median of 3:
  * ``remembered`` (every decision on the game) and ``carry_over`` to v2 (what activation does,
    in its transaction),
  * the review queue for v2 (``core.active.review_queue``),
  * the diff between v1 and v2,
and, side by side in this run, the same-event matching of carry-over with ``core.nearby``'s
index against the scan of every prediction it replaced. Target: each path under 1 s.

    python bench/history.py
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.ui import labelled_match
from core.active import review_queue
from core.labels import CLASSES, FPS
from core.store import Store
from core.versions import carry_over, diff, remembered, same_events
from core.workspace import Workspace

MINUTES, LABELS, PREDICTIONS, DECIDED = 100, 2000, 5800, 3000
TARGET_S = 1.0


def build(root: Path) -> tuple[Workspace, int]:
    rng = np.random.default_rng(0)
    n = MINUTES * 60 * FPS
    ws, gid = labelled_match(root, n, LABELS, rng)
    with Store.open(ws) as store:
        frames = rng.choice(n - 100, PREDICTIONS, replace=False)
        classes = [CLASSES[int(rng.integers(12))] for _ in frames]
        store.register_model("v1")
        store.add_predictions("v1", gid, [(int(f), c, "home", float(rng.random())) for f, c in zip(frames, classes)])
        for i, p in enumerate(store.predictions(gid, "v1")[:DECIDED]):
            (store.accept if i % 2 else store.reject)(p["id"])
        store.register_model("v2")
        store.add_predictions("v2", gid, [(int(f) + int(rng.integers(-1, 2)), c, "home", float(rng.random()))
                                          for f, c in zip(frames, classes)])
    return ws, gid


def scan_same_events(decided: list[dict], predictions: list[dict], window: int = 2) -> int:
    """``same_events`` as it was: for each decision, a scan of every prediction."""
    taken: set[int] = set()
    for d in decided:
        for frame, label in d.get("keys") or [(d["frame"], d["label"])]:
            best = None
            for r in predictions:
                if r["label"] != label or r["id"] in taken:
                    continue
                dist = abs(r["frame"] - frame)
                if dist <= window and (best is None or dist < abs(best["frame"] - frame)):
                    best = r
            if best is not None:
                taken.add(best["id"])
                break
    return len(taken)


def timed(fn, runs: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws, gid = build(Path(tmp))
        print(f"built a {MINUTES}-minute game: {LABELS} labels, {PREDICTIONS} predictions a version, "
              f"{DECIDED} decided ({time.perf_counter() - t0:.0f} s)")
        with Store.open(ws) as store:
            t_rem, decided = timed(lambda: remembered(store, gid))
            t_queue, queue = timed(lambda: review_queue(store, ws, "v2"))
            t_diff, changes = timed(lambda: diff(store, gid, "v1", "v2"))
            v2 = store.predictions(gid, "v2")
            t_index, (pairs, _) = timed(lambda: same_events(decided, v2))
            t_scan, matched = timed(lambda: scan_same_events(decided, v2), runs=1)
            assert matched == len(pairs), "the index and the scan must match the same events"
            t_carry, carried = timed(lambda: carry_over(store, gid, decided, "v2"), runs=1)  # writes: once
        print(f"remembered {t_rem:.2f} s ({len(decided)} decisions); carry-over {t_carry:.2f} s ({carried} carried)")
        print(f"review queue {t_queue:.2f} s ({len(queue)} items); "
              f"diff v1 -> v2 {t_diff:.2f} s ({len(changes)} changes)")
        print(f"same-event matching: index {t_index * 1000:.0f} ms, scan {t_scan * 1000:.0f} ms: "
              f"{t_scan / t_index:.0f}x faster with the index")
        worst = max(t_rem + t_carry, t_queue, t_diff)
        print(f"target: each path under {TARGET_S:.1f} s: slowest {worst:.2f} s "
              f"({worst / TARGET_S:.2f}x) {'MET' if worst <= TARGET_S else 'NOT MET'}")


if __name__ == "__main__":
    main()
