"""Analyst time: what labelling a game and reviewing a model's predictions cost, in one place.

How many keys each action takes is read off the review screen's key handling
(``assets/review.js``; ``KEYMAP`` below names them, and a test checks them against the file):
accept ``a``, reject ``r``, move one frame ``[``/``]`` (a correction accepts), flip the team
``t``, add a class at the playhead ``1``..``=`` (for the team of the toggle, Shift+T switches
it), next queue item ``u``, next event ``n``, previous event ``p``, play/pause Space, one second back
Shift+Left, accept the watched stretch Shift+A.
What one key and one decision take are the Keystroke-Level Model's operators (Card, Moran and
Newell, *The Psychology of Human-Computer Interaction*, 1983: K 0.28 s for an average
non-secretarial typist, M 1.35 s of mental preparation); the playback speeds, the glance at a
selected event and the frame steps to find a contact frame are stated assumptions, not
measurements of analysts. Every figure the benches print comes from these constants, so a
different assumption is one field away (``Effort(review_speed=1.0)``).

The judge (``judge``) says what a correct analyst does with each prediction, given the true
events: accept (moved and team-flipped as needed), relabel (another class happened there),
or reject; and which true events nobody predicted (to be added). The benches' simulated
reviewer uses the same judge, so their decisions and their costs agree.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from core.labels import FPS
from core.nearby import FrameIndex

#: The review screen's keys for each action (``assets/review.js``'s keydown handler).
KEYMAP: dict[str, str] = {"accept": "a", "reject": "r", "move_back": "[", "move_on": "]", "team": "t",
                          "next_item": "u", "next_event": "n", "previous_event": "p", "play": " ",
                          "team_toggle": "T", "accept_watched": "A"}
#: "The same event" for the judge: SoccerNet's mAP@1 tolerance (+-12 frames at 25 fps).
NEAR = 12


@dataclass(frozen=True)
class Effort:
    """Seconds per analyst action; each field says where its value comes from."""

    #: One keystroke: KLM's K for an average non-secretarial typist (assumption, literature).
    key_s: float = 0.28
    #: Deciding what to do with what is on screen: KLM's M (assumption, literature).
    think_s: float = 1.35
    #: Looking at a selected event: the paused frame and the filmstrip of +-4 frames around it
    #: (assumption).
    look_s: float = 1.0
    #: Playback while labelling from scratch: every touch (one every 1.6 s in real games) has
    #: to be seen as it happens (assumption).
    scratch_speed: float = 1.0
    #: Playback while watching a game whose events the model marked, for what it missed: the
    #: markers carry the load, the analyst watches for touches without one (assumption; the
    #: player offers 0.25x to 4x).
    review_speed: float = 2.0
    #: Frame steps (Left/Right) to the contact frame after one Shift+Left back from where the
    #: analyst paused (assumption: a reaction of about half a second, then stepping).
    locate_steps: float = 8.0
    #: Share of added events whose team is not the toggle's (one Shift+T): two teams (assumption).
    team_switch_p: float = 0.5
    #: Watching through (:func:`watch_through`): how many frames off a prediction's marker can be
    #: and still look right at review speed, so that the analyst lets it pass (80 ms of game at
    #: 25 fps, 40 ms of viewing at 2x; assumption). Such a label keeps the model's frame.
    pass_frames: int = 2
    #: Watching through, what a marker let pass costs beyond the watching: nothing (assumption:
    #: the analyst checks it as it plays, as (b) assumes they spot missed events while watching;
    #: ``think_s`` here is the cautious reading, which the bench prints beside it).
    pass_s: float = 0.0

    def keys(self, n: float) -> float:
        return n * self.key_s

    def jump(self) -> float:
        """To the next item or event (``u`` / ``n``: selects it, seeks there) and a look at it."""
        return self.keys(1) + self.look_s

    def accept(self, moved: int = 0, team_flip: bool = False) -> float:
        """Accept, corrected as needed: each frame moved is one ``[``/``]``, a team flip one ``t``
        (a correction accepts it, so no ``a`` then)."""
        corrections = abs(moved) + int(team_flip)
        return self.think_s + self.keys(corrections or 1)

    def reject(self) -> float:
        return self.think_s + self.keys(1)

    def relabel(self, moved: int = 0) -> float:
        """Another class happened there: reject (``r``), add the right class at the playhead (its
        key, Shift+T first where the toggle holds the other team), move it to the contact frame."""
        return self.think_s + self.keys(2 + abs(moved) + self.team_switch_p)

    def add_at(self, moved: int = 0) -> float:
        """Add a missed event where the screen already is (a queue's missed-event item): its class
        key, the team toggle where needed, frames to the contact frame."""
        return self.think_s + self.keys(1 + abs(moved) + self.team_switch_p)

    def stop(self) -> float:
        """Watching through, a marker that looks wrong: pause (Space), select it (``p``, the event
        just passed, seeks back to it), look at it, and (after the decision) play on (Space)."""
        return self.keys(3) + self.look_s

    def accept_watched(self) -> float:
        """Shift+A: accept the pending predictions of the watched stretch (two keys)."""
        return self.keys(2)

    def dismiss(self) -> float:
        """A missed-event item with nothing there: decide so and go on (the next ``u`` is the jump)."""
        return self.think_s

    def add_while_watching(self) -> float:
        """An event seen while the video plays: pause, one second back, step to the contact frame,
        its class key (and the team toggle), play on."""
        return self.think_s + self.keys(1 + 1 + self.locate_steps + 1 + self.team_switch_p + 1)

    def watch(self, seconds: float, speed: float) -> float:
        return seconds / speed

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Verdict:
    """What a correct analyst does with one prediction."""

    action: str  # accept | relabel | reject
    #: The true event it becomes (accept, relabel), else None.
    truth: dict | None = None
    moved: int = 0
    team_flip: bool = False


@dataclass
class Judgement:
    """``judge``'s answer: a verdict per prediction id and the true events nobody predicted."""

    verdicts: dict[int, Verdict] = field(default_factory=dict)
    missed: list[dict] = field(default_factory=list)


def judge(predictions: list[dict], truth: list[dict], near: int = NEAR, claimed: Iterable[dict] = ()) -> Judgement:
    """Each prediction's verdict against the true events (dicts with frame, label, team).

    Same class within ``near`` frames: accepted (the most confident prediction claims the event,
    as SoccerNet's matching does), moved to the true frame, team flipped where wrong. Otherwise,
    a true event of another class within ``near`` that no prediction of its class claims: that
    class happened there (relabel). Otherwise rejected. True events already labelled
    (``claimed``, the same dict objects as in ``truth``) are taken. ``missed``: true events left."""
    taken = {id(t) for t in claimed}
    events = FrameIndex(truth, key=id)  # truth rows need no id: taken by identity
    out = Judgement()
    ordered = sorted(predictions, key=lambda p: -p.get("confidence", 0.0))
    pending = []
    for p in ordered:
        t = events.nearest(p["frame"], near, p["label"], taken)
        if t is None:
            pending.append(p)
            continue
        taken.add(id(t))
        out.verdicts[p["id"]] = Verdict("accept", t, t["frame"] - p["frame"], t["team"] != p["team"])
    for p in pending:
        t = events.nearest(p["frame"], near, None, taken)
        if t is not None:
            taken.add(id(t))
            out.verdicts[p["id"]] = Verdict("relabel", t, t["frame"] - p["frame"])
        else:
            out.verdicts[p["id"]] = Verdict("reject")
    out.missed = [t for t in truth if id(t) not in taken]
    return out


def decision_seconds(verdict: Verdict, effort: Effort) -> float:
    """Seconds of the decision itself (the jump to the item comes on top)."""
    if verdict.action == "accept":
        return effort.accept(verdict.moved, verdict.team_flip)
    if verdict.action == "relabel":
        return effort.relabel(verdict.moved)
    return effort.reject()


@dataclass
class Cost:
    """An analyst's time on one game, by part (seconds)."""

    watch: float = 0.0
    jumps: float = 0.0
    decisions: float = 0.0
    adds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.watch + self.jumps + self.decisions + self.adds

    @property
    def minutes(self) -> float:
        return self.seconds / 60


def game_seconds(n_frames: int) -> float:
    return n_frames / FPS


def from_scratch(truth: list[dict], n_frames: int, effort: Effort = Effort()) -> Cost:
    """(a) Label a game with no model: watch all of it at ``scratch_speed``, adding every event."""
    return Cost(watch=effort.watch(game_seconds(n_frames), effort.scratch_speed),
                adds=len(truth) * effort.add_while_watching())


def review_in_time_order(predictions: list[dict], truth: list[dict], n_frames: int,
                         effort: Effort = Effort()) -> Cost:
    """(b) Review a model's predictions in time order: watch the game at ``review_speed``,
    stopping at each prediction (``n``, a look, the decision), adding what it missed."""
    verdicts = judge(predictions, truth)
    return Cost(watch=effort.watch(game_seconds(n_frames), effort.review_speed),
                jumps=len(predictions) * effort.jump(),
                decisions=sum(decision_seconds(v, effort) for v in verdicts.verdicts.values()),
                adds=len(verdicts.missed) * effort.add_while_watching())


def follow_queue(items: list[dict], predictions: list[dict], truth: list[dict], n_frames: int,
                 effort: Effort = Effort(), near: int = NEAR) -> Cost:
    """(c) Follow the review queue, then watch the game for what neither the predictions nor the
    queue's missed-event items found. ``items``: the queue's (kind, frame, label, event_id
    ``p<id>`` for a prediction), in queue order; the predictions the queue does not list (none,
    with every pending one in it) are decided during the watch, as in (b)."""
    verdicts = judge(predictions, truth)
    by_id = {p["id"]: p for p in predictions}
    found = {id(v.truth) for v in verdicts.verdicts.values() if v.truth is not None}
    cost = Cost(watch=effort.watch(game_seconds(n_frames), effort.review_speed))
    asked: set[int] = set()
    for it in items:
        if it["kind"] == "uncertain" and it.get("event_id") and int(it["event_id"][1:]) in by_id:
            pid = int(it["event_id"][1:])
            asked.add(pid)
            cost.jumps += effort.jump()
            cost.decisions += decision_seconds(verdicts.verdicts[pid], effort)
        elif it["kind"] == "missed":
            cost.jumps += effort.jump()
            hit = next((t for t in verdicts.missed if id(t) not in found and t["label"] == it["label"]
                        and abs(t["frame"] - it["frame"]) <= near), None)
            if hit is None:
                cost.decisions += effort.dismiss()
            else:
                found.add(id(hit))
                cost.adds += effort.add_at(hit["frame"] - it["frame"])
    for pid, v in verdicts.verdicts.items():
        if pid not in asked:  # left for the watch: decided in passing, as in time order
            cost.jumps += effort.jump()
            cost.decisions += decision_seconds(v, effort)
    cost.adds += sum(effort.add_while_watching() for t in verdicts.missed if id(t) not in found)
    return cost


def watch_through(predictions: list[dict], truth: list[dict], n_frames: int, effort: Effort = Effort()) -> Cost:
    """(d) Watch the game at ``review_speed`` with the predictions' markers, stopping only where
    one looks wrong: a false alarm, another class, the other team, or a frame further off than
    ``pass_frames`` (:meth:`Effort.stop`, then the decision); the right ones are let pass
    (``pass_s`` each). Stops go back inside the watched stretch and play on from there, so the
    stretch runs on, and one Shift+A at the end accepts, as one edit, every prediction let pass
    (the review screen's "accept the watched stretch"). Missed events are added while watching,
    as in (b). The predictions let pass keep the model's frame, at most ``pass_frames`` off:
    :func:`passed` counts them."""
    verdicts = judge(predictions, truth)
    cost = Cost(watch=effort.watch(game_seconds(n_frames), effort.review_speed))
    let_pass = 0
    for v in verdicts.verdicts.values():
        if _passes(v, effort):
            let_pass += 1
            continue
        cost.jumps += effort.stop()
        cost.decisions += decision_seconds(v, effort)
    cost.decisions += let_pass * effort.pass_s + (effort.accept_watched() if let_pass else 0.0)
    cost.adds = len(verdicts.missed) * effort.add_while_watching()
    return cost


def _passes(verdict: Verdict, effort: Effort) -> bool:
    return verdict.action == "accept" and not verdict.team_flip and abs(verdict.moved) <= effort.pass_frames


def passed(predictions: list[dict], truth: list[dict], effort: Effort = Effort()) -> dict[int, int]:
    """Watching through (:func:`watch_through`): how many predictions are let pass, by how many
    frames off the true event they stay (0 .. ``pass_frames``)."""
    out: dict[int, int] = {}
    for v in judge(predictions, truth).verdicts.values():
        if _passes(v, effort):
            out[abs(v.moved)] = out.get(abs(v.moved), 0) + 1
    return out


def per_minutes(cost: Cost, n_frames: int, minutes: float = 10.0) -> float:
    """``cost`` in analyst minutes per ``minutes`` of game (every part scales with the game)."""
    return cost.minutes * minutes * 60 / max(game_seconds(n_frames), 1e-9)


#: The confidences a review cut is chosen among (predictions are stored from 0.20).
CUT_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9)


def best_cut(games: Iterable[tuple[list[dict], list[dict], int]], effort: Effort = Effort(),
             grid: Iterable[float] = CUT_GRID,
             review: Callable[[list[dict], list[dict], int, Effort], Cost] | None = None) -> float | None:
    """The confidence at or above which reviewing games' predictions costs the analyst least,
    all ``(predictions, true events, frames)`` games together, reviewed by ``review``
    (:func:`review_in_time_order` unless named; :func:`watch_through`): a higher cut leaves
    fewer false alarms to reject and more missed events to add while watching. The lowest of
    equal costs. A game without true events says nothing (every prediction would count as a
    false alarm): None when no game has any."""
    review = review or review_in_time_order
    games = [g for g in games if g[1]]
    if not games:
        return None

    def cost(cut: float) -> float:
        return sum(review([p for p in preds if p["confidence"] >= cut], truth, n, effort).minutes
                   for preds, truth, n in games)
    return min(sorted(grid), key=cost)
