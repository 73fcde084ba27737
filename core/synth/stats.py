"""Statistics of real ball-action sequences, for drawing synthetic matches that read like real ones.

Run on SoccerNet label files, it writes the small table ``match_stats.json`` beside it that the
synthetic match generator reads (class frequencies, class-to-class transitions, gaps between
events, how often the team changes between two classes, events per minute):

    python -m core.synth.stats ../shared/data/soccernet-ball-2024
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from core.labels import CLASSES, CLASS_INDEX, LABEL_FILE, MS_PER_FRAME

STATS_FILE = Path(__file__).with_name("match_stats.json")
#: Gap quantiles stored per class: 0, 1, ..., 100 % (fine steps: the tails are long).
GAP_QUANTILES = np.linspace(0, 1, 101)


def compute(files: list[Path]) -> dict:
    """Counts and distributions over every consecutive pair of annotations in ``files``."""
    n = len(CLASSES)
    counts = np.zeros(n, int)
    transitions = np.zeros((n, n), int)
    team_changes = np.zeros((n, n), int)
    gaps: list[list[int]] = [[] for _ in CLASSES]
    minutes = 0.0
    for path in files:
        items = json.loads(Path(path).read_text())["annotations"]
        items.sort(key=lambda a: int(a["position"]))
        for a in items:
            counts[CLASS_INDEX[a["label"]]] += 1
        for a, b in zip(items, items[1:]):
            i, j = CLASS_INDEX[a["label"]], CLASS_INDEX[b["label"]]
            transitions[i, j] += 1
            team_changes[i, j] += a["team"] != b["team"]
            gaps[i].append((int(b["position"]) - int(a["position"])) // MS_PER_FRAME)
        minutes += int(items[-1]["position"]) / 60000
    all_gaps = [g for per in gaps for g in per]
    return {
        "source_games": len(files),
        "minutes": round(minutes, 2),
        "events_per_minute": round(int(counts.sum()) / minutes, 4),
        "classes": list(CLASSES),
        "counts": counts.tolist(),
        "transitions": transitions.tolist(),
        "team_changes": team_changes.tolist(),
        "gap_quantiles": GAP_QUANTILES.round(2).tolist(),
        # Per class (the earlier event of a pair), gaps in frames; classes with few pairs use all gaps.
        "gaps": [np.quantile(g if len(g) >= 10 else all_gaps, GAP_QUANTILES).round(1).tolist() for g in gaps],
    }


def load(path: Path = STATS_FILE) -> dict:
    return json.loads(Path(path).read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="a SoccerNet tree of Labels-ball.json files")
    parser.add_argument("--out", type=Path, default=STATS_FILE)
    args = parser.parse_args(argv)
    files = sorted(args.root.rglob(LABEL_FILE))
    stats = compute(files)
    args.out.write_text(json.dumps(stats, indent=1) + "\n")
    print(f"{args.out}: {len(files)} games, {sum(stats['counts'])} events, "
          f"{stats['events_per_minute']:.2f} events/min")


if __name__ == "__main__":
    main()
