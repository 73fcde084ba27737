"""Event scripts for synthetic matches: which ball actions happen, when, and by which team.

A Markov chain over the 12 classes with the transition counts, gaps and team changes of
real games (``match_stats.json``, see ``stats``). Rare classes are boosted, and a rare class grows
"hungry" the longer it has not occurred, so that even a 10-minute game shows every class
while the mix of the frequent classes stays close to the real one. Boosting shifts the mix
towards classes with long pauses after them (an OUT, a GOAL), so the gaps are then scaled
by one factor to keep the real number of events per minute.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.labels import CLASS_INDEX, FPS, NUM_CLASSES

C = CLASS_INDEX
#: Multipliers on the chance of moving into a class, rare classes up (real shares in comments).
RARE_BOOST = {
    C["PLAYER SUCCESSFUL TACKLE"]: 2.5,  # 0.9 %
    C["FREE KICK"]: 5.0,  # 0.25 %
    C["GOAL"]: 4.0,  # 0.15 %, only after SHOT or BLOCK
    C["SHOT"]: 1.5,  # 2.0 %
}
#: Classes rarer than this share of events grow hungry.
RARE_SHARE = 0.021
#: Minutes without a rare class after which its chance has doubled (then keeps growing).
HUNGER_MINUTES = 2.5
#: Pause after a goal before the kick-off (celebration), in seconds.
GOAL_PAUSE_S = (20.0, 35.0)
#: Frames the ball rests on the spot before a free kick (the wall forms meanwhile).
FREE_KICK_MIN_GAP = 3 * FPS
#: Smallest gap the renderer needs between two events, in frames.
MIN_GAP = 4


@dataclass
class ScriptedEvent:
    frame: int
    cls: int
    #: 0 = home, 1 = away.
    team: int


def _sample_gap(quantiles: list[float], levels: list[float], rng: np.random.Generator) -> int:
    return max(MIN_GAP, int(round(np.interp(rng.random(), levels, quantiles))))


def script_events(stats: dict, n_frames: int, rng: np.random.Generator) -> list[ScriptedEvent]:
    """Events from the first kick-off to the end of ``n_frames`` frames."""
    transitions = np.asarray(stats["transitions"], float)
    team_changes = np.asarray(stats["team_changes"], float)
    levels = stats["gap_quantiles"]
    boost = np.ones(NUM_CLASSES)
    for cls, factor in RARE_BOOST.items():
        boost[cls] = factor
    counts = np.asarray(stats["counts"], float)
    rare = counts / counts.sum() < RARE_SHARE
    last_seen = np.zeros(NUM_CLASSES)

    # Draw well past the end, then scale the gaps so the game has the real event rate.
    target = stats["events_per_minute"] * n_frames / FPS / 60
    events = [ScriptedEvent(int(rng.integers(FPS // 2, 2 * FPS)), C["PASS"], int(rng.integers(2)))]
    gaps = [0]
    while len(events) < 1.5 * target + 10:
        prev = events[-1]
        minutes = prev.frame / FPS / 60
        hunger = np.where(rare, (1 + (minutes - last_seen) / HUNGER_MINUTES) ** 2, 1.0)
        if prev.cls == C["GOAL"]:
            cls = C["PASS"]
            gap = int(rng.uniform(*GOAL_PAUSE_S) * FPS)
            team = 1 - prev.team  # the team that conceded kicks off
        else:
            weights = transitions[prev.cls] * boost * hunger
            cls = int(rng.choice(NUM_CLASSES, p=weights / weights.sum()))
            gap = _sample_gap(stats["gaps"][prev.cls], levels, rng)
            pair = transitions[prev.cls, cls]
            change = team_changes[prev.cls, cls] / pair if pair else 0.3
            team = prev.team ^ int(rng.random() < change)
        events.append(ScriptedEvent(prev.frame + gap, cls, team))
        gaps.append(gap)
        last_seen[cls] = events[-1].frame / FPS / 60
    n = max(1, int(round(target)))
    scale = (n_frames - 2 * FPS - events[0].frame) / max(1, events[n - 1].frame - events[0].frame) if n > 1 else 1.0
    frame = events[0].frame
    for event, gap in zip(events[1:], gaps[1:]):
        gap = max(MIN_GAP, int(round(gap * scale)))
        if event.cls == C["FREE KICK"]:
            gap = max(gap, FREE_KICK_MIN_GAP)
        frame += gap
        event.frame = frame
    events = [e for e in events if e.frame < n_frames - 2 * FPS]
    # OUT belongs to the team awarded the restart (as in SoccerNet's labels): the next event's.
    for a, b in zip(events, events[1:]):
        if a.cls == C["OUT"]:
            a.team = b.team
    if events and events[-1].cls in (C["OUT"], C["GOAL"]):
        events.pop()  # every OUT and GOAL is followed by its restart
    return events
