"""The one source of truth for what a ball-action label is.

Classes, their order (the index used by models and metrics), team and visibility values,
and the conversions between label frames, milliseconds and SoccerNet's ``gameTime``.

Label time is kept as an integer frame of a 25 fps grid because that is what SoccerNet's
annotations are (every ``position`` is a multiple of 40 ms) and what a reviewer steps
through. Milliseconds exist only at the file boundary.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from core.errors import BallspotError

#: The 12 classes of SoccerNet Ball Action Spotting 2024, in the reference order.
#: A class's index in this tuple is its index in every model output and metric table.
CLASSES: tuple[str, ...] = (
    "PASS",
    "DRIVE",
    "HEADER",
    "HIGH PASS",
    "OUT",
    "CROSS",
    "THROW IN",
    "SHOT",
    "BALL PLAYER BLOCK",
    "PLAYER SUCCESSFUL TACKLE",
    "FREE KICK",
    "GOAL",
)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}
NUM_CLASSES = len(CLASSES)

#: BAS-2024 names the team by role; the 2025 team task by the side of the video.
TEAMS_ROLE: tuple[str, ...] = ("home", "away")
TEAMS_SIDE: tuple[str, ...] = ("left", "right")
TEAMS: tuple[str, ...] = TEAMS_ROLE + TEAMS_SIDE
#: A model's ``team_mode`` and the team names its team head predicts (first name: the head's 1).
TEAM_MODES: dict[str, tuple[str, str]] = {"role": TEAMS_ROLE, "side": TEAMS_SIDE}
#: The team a reviewer's new label gets unless they pick another.
DEFAULT_TEAM = "home"

VISIBILITIES: tuple[str, ...] = ("visible", "not shown")
DEFAULT_VISIBILITY = "visible"

#: Where a label came from: a file, a person, or an accepted model prediction.
SOURCES: tuple[str, ...] = ("imported", "human", "model")
#: Label sources that are training targets: all of them (rejected predictions are no labels).
TARGET_SOURCES: tuple[str, ...] = SOURCES
#: Labels that are review work (not imported): what retraining takes from games outside the
#: training splits.
REVIEW_SOURCES: tuple[str, ...] = ("human", "model")
#: The review state of a model prediction.
REVIEW_STATUSES: tuple[str, ...] = ("pending", "accepted", "rejected")

#: The label time grid (SoccerNet positions are multiples of 40 ms) and the metric's framerate.
FPS = 25
MS_PER_FRAME = 1000 // FPS

#: SoccerNet's label files and prediction files, one of each per game folder.
LABEL_FILE = "Labels-ball.json"
PREDICTION_FILE = "results_spotting.json"

_GAME_TIME = re.compile(r"^\s*(\d+)\s*-\s*(\d+):(\d{2})\s*$")


def frame_to_ms(frame: int) -> int:
    """Milliseconds from the video start of a label frame."""
    return int(frame) * MS_PER_FRAME


def ms_to_frame(ms: int | float) -> int:
    """The label frame nearest to ``ms`` (exact for SoccerNet's multiples of 40 ms)."""
    return int(round(float(ms) / MS_PER_FRAME))


def metric_frame(ms: int | float, framerate: int = FPS) -> int:
    """The frame SoccerNet's evaluation puts a position on: ``int(framerate * ms / 1000)``."""
    return int(framerate * (float(ms) / 1000))


def game_time(frame: int, half: int = 1) -> str:
    """SoccerNet's ``gameTime`` of a frame: ``"<half> - MM:SS"``, seconds truncated.

    BAS games are one video, so every event is in half 1 and minutes run past 60.
    """
    seconds = frame_to_ms(frame) // 1000
    return f"{half} - {seconds // 60:02d}:{seconds % 60:02d}"


def parse_game_time(text: str) -> tuple[int, int]:
    """``"1 - 94:55"`` -> ``(1, 5695)``: the half and whole seconds. ValueError if malformed."""
    match = _GAME_TIME.match(str(text))
    if not match:
        raise ValueError(f"gameTime {text!r} is not '<half> - MM:SS'")
    half, minutes, seconds = (int(g) for g in match.groups())
    if seconds >= 60:
        raise ValueError(f"gameTime {text!r} has {seconds} seconds")
    return half, minutes * 60 + seconds


def clock(frame: int) -> str:
    """The game clock a reviewer reads, ``MM:SS.ff`` where ff is the frame within the second."""
    seconds, rest = divmod(int(frame), FPS)
    return f"{seconds // 60:02d}:{seconds % 60:02d}.{rest:02d}"


def _team_names(values: Iterable) -> set:
    """The distinct values (a JSON list or object, which cannot be in a set, as its text)."""
    return {v if v is None or isinstance(v, (str, int, float)) else repr(v) for v in values}


def team_vocabulary(values: Iterable, where: str = "the labels") -> tuple[str, str] | None:
    """The pair of team names ``values`` come from: :data:`TEAMS_ROLE` (home/away, BAS-2024)
    or :data:`TEAMS_SIDE` (left/right, the 2025 team task); None when there are no values.

    The one place that answers "which vocabulary does this game use" (evaluation, training,
    review, export). A value of neither pair, or values of both (a game names a team by role
    or by side, never both), raise :class:`BallspotError` naming ``where`` and the values.
    """
    names = _team_names(values)
    if not names:
        return None
    unknown = sorted((v for v in names if v not in TEAMS), key=str)
    if unknown:
        raise BallspotError(f"{where}: unknown team {', '.join(map(repr, unknown))} (known: "
                            f"{'/'.join(TEAMS_ROLE)} in BAS-2024, {'/'.join(TEAMS_SIDE)} in the 2025 team task)")
    for pair in TEAM_MODES.values():
        if names <= set(pair):
            return pair
    raise BallspotError(f"{where}: the teams mix {'/'.join(TEAMS_ROLE)} (BAS-2024) and {'/'.join(TEAMS_SIDE)} "
                        f"(the 2025 team task): {', '.join(sorted(names))}; a game names its teams one way")


def common_team_vocabulary(sources: Mapping[str, Iterable], what: str = "games") -> tuple[str, str] | None:
    """The vocabulary shared by several sources (name -> team values, e.g. games): each must
    have one (:func:`team_vocabulary`) and all the same one, else :class:`BallspotError` naming
    which use which. Sources without values do not count; None when none has any."""
    found: dict[tuple[str, str], list[str]] = {}
    for name, values in sources.items():
        pair = team_vocabulary(values, name)
        if pair is not None:
            found.setdefault(pair, []).append(name)
    if len(found) > 1:
        def listing(names: list[str]) -> str:
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        uses = "; ".join(f"{'/'.join(pair)}: {listing(names)}" for pair, names in found.items())
        raise BallspotError(f"the {what} mix team vocabularies ({uses}); use {'/'.join(TEAMS_ROLE)} (BAS-2024) "
                            f"or {'/'.join(TEAMS_SIDE)} (the 2025 team task) throughout")
    return next(iter(found), None)


def team_mode_of(vocabulary: tuple[str, str] | None) -> str:
    """A model's ``team_mode`` for labels of ``vocabulary`` (no labels: role, BAS-2024's)."""
    return next((mode for mode, pair in TEAM_MODES.items() if pair == vocabulary), "role")
