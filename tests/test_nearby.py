"""core.nearby.FrameIndex gives the answers of a plain scan of the rows, which carry-over, the
queue, the diff and the analyst-time judge relied on before it, ties included."""
from __future__ import annotations

import random

from core.labels import CLASSES
from core.nearby import FrameIndex


def scan_nearest(rows: list[dict], frame: int, window: int, label: str | None, exclude: set) -> dict | None:
    """The scan the index replaced: the closest row in the window, the first of equals in the rows' order."""
    best = None
    for r in rows:
        if (label is not None and r["label"] != label) or r["id"] in exclude:
            continue
        d = abs(r["frame"] - frame)
        if d <= window and (best is None or d < abs(best["frame"] - frame)):
            best = r
    return best


def random_rows(rng: random.Random, n: int) -> list[dict]:
    # Few frames, few classes: many rows share a frame or a distance, so ties are exercised.
    return [{"id": i, "frame": rng.randrange(60), "label": rng.choice(CLASSES[:3])} for i in range(n)]


def test_nearest_is_the_scans_answer_ties_and_exclusions_included():
    rng = random.Random(7)
    for _ in range(200):
        rows = random_rows(rng, rng.randrange(0, 40))
        index = FrameIndex(rows)
        exclude = {r["id"] for r in rows if rng.random() < 0.2}
        for _ in range(20):
            frame, window = rng.randrange(-5, 65), rng.choice([0, 1, 2, 12])
            label = rng.choice([None, *CLASSES[:3]])
            assert index.nearest(frame, window, label, exclude) is scan_nearest(rows, frame, window, label, exclude)


def test_rows_added_later_are_found_in_their_order():
    rng = random.Random(3)
    rows = random_rows(rng, 50)
    index = FrameIndex()
    for k, row in enumerate(rows):
        index.add(row)
        seen = rows[:k + 1]
        for frame in range(0, 60, 7):
            assert index.within(frame, 3) == [r for r in seen if abs(r["frame"] - frame) <= 3]
            assert index.between(frame, frame + 5, "PASS") == \
                [r for r in seen if r["label"] == "PASS" and frame <= r["frame"] <= frame + 5]
            assert index.nearest(frame, 3, "PASS") is scan_nearest(seen, frame, 3, "PASS", set())


def test_rows_without_an_id_are_told_apart_by_the_key_given():
    truth = [{"frame": 10, "label": "PASS"}, {"frame": 10, "label": "PASS"}]  # equal, yet two events
    index = FrameIndex(truth, key=id)
    first = index.nearest(10, 2, "PASS")
    assert first is truth[0]
    assert index.nearest(10, 2, "PASS", {id(first)}) is truth[1]
    assert index.nearest(10, 2, "PASS", {id(t) for t in truth}) is None
    assert FrameIndex().nearest(10, 2) is None and FrameIndex().within(10, 2, "GOAL") == []
