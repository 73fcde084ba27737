"""Events near a frame: the "same event" lookup of carry-over, the review queue, the version
diff and the analyst-time judge, by bisection.

A full match holds thousands of labels and predictions per version. A scan of all of them for
each one made carry-over, the queue and the diff quadratic, several seconds on a 100-minute match
(``tests/test_nearby.py`` checks the answers against the plain scan)."""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Container, Hashable, Iterable
from operator import itemgetter

_ALL = object()  # the index of every class


class FrameIndex:
    """Rows (dicts with ``frame`` and ``label``) by class and frame. Ties between equally close
    rows go to the one added first, as a scan of the rows in their order would answer."""

    def __init__(self, rows: Iterable[dict] = (), key: Callable[[dict], Hashable] = itemgetter("id")):
        self.key = key
        self._frames: dict[object, list[int]] = {}
        self._entries: dict[object, list[tuple[int, int, dict]]] = {}  # (frame, order, row), sorted
        self._added = 0
        for row in rows:
            self.add(row)

    def add(self, row: dict) -> None:
        entry = (row["frame"], self._added, row)
        self._added += 1
        for group in (row["label"], _ALL):
            entries = self._entries.setdefault(group, [])
            at = bisect_right(self._frames.setdefault(group, []), entry[0])
            self._frames[group].insert(at, entry[0])
            entries.insert(at, entry)

    def between(self, first: float, last: float, label: str | None = None) -> list[dict]:
        """The rows from frame ``first`` to ``last``, both included (of class ``label``, if
        given), in the order they were added."""
        group = _ALL if label is None else label
        frames = self._frames.get(group)
        if not frames:
            return []
        lo, hi = bisect_left(frames, first), bisect_right(frames, last)
        return [row for _, _, row in sorted(self._entries[group][lo:hi], key=itemgetter(1))]

    def within(self, frame: int, window: int, label: str | None = None) -> list[dict]:
        """The rows within ``window`` frames of ``frame`` (of class ``label``, if given), in the
        order they were added."""
        return self.between(frame - window, frame + window, label)

    def nearest(self, frame: int, window: int, label: str | None = None, exclude: Container = ()) -> dict | None:
        """The row closest to ``frame`` within ``window`` frames (of class ``label``, if given)
        whose key is not in ``exclude``; None if there is none."""
        best, best_d = None, None
        for row in self.within(frame, window, label):
            d = abs(row["frame"] - frame)
            if (best_d is None or d < best_d) and not (exclude and self.key(row) in exclude):
                best, best_d = row, d
        return best
