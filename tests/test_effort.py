"""The effort model: its key counts are the review screen's, its judge is a correct analyst's."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT
from core.effort import (KEYMAP, Effort, best_cut, follow_queue, from_scratch, judge, passed, per_minutes,
                         review_in_time_order, watch_through)

E = Effort()


def _ev(i: int, frame: int, label: str = "PASS", team: str = "home", confidence: float | None = None) -> dict:
    row = {"id": i, "frame": frame, "label": label, "team": team}
    if confidence is not None:
        row["confidence"] = confidence
    return row


def test_the_key_counts_are_the_review_screens_keys():
    """Each action the model counts one key for is that key in review.js's keydown handler:
    a renamed key fails here, so the effort model cannot drift from the screen."""
    source = (ROOT / "assets" / "review.js").read_text()
    handler = source[source.index("document.addEventListener('keydown'"):]
    branches = dict(re.findall(r"k === '(.{1,2})'\)?[^\n]*?\)? (.*)", handler))
    wants = {"accept": "op: 'accept'", "reject": "op: 'reject'", "move_back": "op: 'move', by: -1",
             "move_on": "op: 'move', by: 1", "team": "op: 'team'", "next_item": "nextItem()",
             "next_event": "jump(1)", "previous_event": "jump(-1)", "play": "togglePlay()",
             "team_toggle": "setTeam(", "accept_watched": "acceptWatched()"}
    for action, key in KEYMAP.items():
        assert key in branches, f"{action}: no branch for key {key!r} in review.js"
        assert wants[action] in branches[key], (action, key, branches[key])
    # The twelve class keys add at the playhead: one key per added event.
    keys = re.search(r"const KEYS = \[(.*?)\];", source).group(1)
    assert len(re.findall(r"'[^']'", keys)) == 12
    assert "KEYS.includes(k) && !ev.shiftKey) { video.pause(); send({ op: 'add', frame: S.frame" in handler


def test_the_judge_decides_as_a_correct_analyst():
    truth = [_ev(100, 50, "PASS", "home"), _ev(101, 200, "SHOT", "away"), _ev(102, 400, "DRIVE"),
             _ev(103, 600, "CROSS")]
    preds = [_ev(1, 53, "PASS", "away", 0.9),  # moved 3 frames back, team flipped
             _ev(2, 48, "PASS", "home", 0.4),  # the same event again, less sure: a duplicate
             _ev(3, 205, "HEADER", "away", 0.6),  # a SHOT happened there: relabel
             _ev(4, 900, "GOAL", "home", 0.7)]  # nothing there
    out = judge(preds, truth)
    v = out.verdicts
    assert (v[1].action, v[1].moved, v[1].team_flip) == ("accept", -3, True)
    assert v[2].action == "reject"
    assert (v[3].action, v[3].truth["label"], v[3].moved) == ("relabel", "SHOT", -5)
    assert v[4].action == "reject"
    assert [t["frame"] for t in out.missed] == [400, 600]
    assert [t["frame"] for t in judge(preds, truth, claimed=[truth[2]]).missed] == [600]


def test_action_costs_follow_the_keys():
    assert E.accept() == pytest.approx(E.think_s + E.key_s)
    assert E.accept(moved=-3, team_flip=True) == pytest.approx(E.think_s + 4 * E.key_s)  # [[[ t, no a
    assert E.relabel(moved=2) > E.reject()
    assert E.add_while_watching() > E.add_at(0)  # finding the frame costs what a queue item gives for free


def test_scratch_and_review_costs():
    n_frames = 25 * 60  # one minute
    truth = [_ev(100 + k, 100 + 70 * k, "PASS") for k in range(20)]
    scratch = from_scratch(truth, n_frames)
    assert scratch.seconds == pytest.approx(60 / E.scratch_speed + 20 * E.add_while_watching())
    perfect = [_ev(k, t["frame"], "PASS", "home", 0.9) for k, t in enumerate(truth)]
    time_order = review_in_time_order(perfect, truth, n_frames)
    assert time_order.seconds == pytest.approx(60 / E.review_speed + 20 * (E.jump() + E.accept()))
    assert time_order.seconds < scratch.seconds  # the markers save the locating and half the watching
    # A model that misses half the events and adds as many false ones costs more than a perfect one.
    worse = perfect[::2] + [_ev(100 + k, 35 + 140 * k, "DRIVE", "home", 0.5) for k in range(10)]
    assert review_in_time_order(worse, truth, n_frames).seconds > time_order.seconds
    # Ten minutes of it: every part scales with the game.
    assert per_minutes(scratch, n_frames) == pytest.approx(10 * scratch.minutes)


def test_following_the_queue():
    n_frames = 25 * 60
    truth = [_ev(100, 100, "PASS"), _ev(101, 500, "SHOT"), _ev(102, 900, "DRIVE")]
    preds = [_ev(1, 102, "PASS", "home", 0.9), _ev(2, 700, "PASS", "home", 0.5)]
    items = [{"kind": "uncertain", "frame": 700, "label": "PASS", "event_id": "p2"},
             {"kind": "missed", "frame": 498, "label": "SHOT"},  # found: added where the queue is
             {"kind": "missed", "frame": 300, "label": "CROSS"},  # nothing there
             {"kind": "uncertain", "frame": 102, "label": "PASS", "event_id": "p1"}]
    cost = follow_queue(items, preds, truth, n_frames)
    assert cost.watch == pytest.approx(60 / E.review_speed)
    assert cost.jumps == pytest.approx(4 * E.jump())
    assert cost.decisions == pytest.approx(E.reject() + E.accept(-2) + E.dismiss())
    assert cost.adds == pytest.approx(E.add_at(2) + E.add_while_watching())  # the DRIVE: found watching
    # Without its items the queue is the time-order review: the same decisions, the same misses.
    assert follow_queue([], preds, truth, n_frames).seconds == pytest.approx(
        review_in_time_order(preds, truth, n_frames).seconds)


def test_watching_through_stops_only_where_a_marker_looks_wrong():
    """(d): the right predictions pass (one Shift+A at the end accepts them), each wrong one
    costs a stop (Space, p, a look, Space) and its decision, as in time order; a perfect model
    costs the watching and a Shift+A, under half of time order, which pays a stop per event."""
    n_frames = 25 * 60
    truth = [_ev(100 + k, 100 + 70 * k, "PASS") for k in range(20)]
    perfect = [_ev(k, t["frame"], "PASS", "home", 0.9) for k, t in enumerate(truth)]
    cost = watch_through(perfect, truth, n_frames)
    assert cost.seconds == pytest.approx(60 / E.review_speed + E.accept_watched())
    assert cost.seconds < review_in_time_order(perfect, truth, n_frames).seconds / 2
    assert passed(perfect, truth) == {0: 20}
    careful = Effort(pass_s=E.think_s)  # a decision's thought for every marker let pass
    assert watch_through(perfect, truth, n_frames, careful).seconds == pytest.approx(
        cost.seconds + 20 * E.think_s)

    preds = [{**p} for p in perfect]
    preds[3]["frame"] += 2                     # 2 frames off: looks right at 2x, passes, keeps its frame
    preds[5]["frame"] += 5                     # 5 frames off: a stop, moved
    preds[9]["team"] = "away"                  # the other team: a stop, flipped
    preds.append(_ev(50, 1450, "SHOT", "home", 0.6))  # nothing there: a stop, rejected
    del preds[15]                              # missed: added while watching
    cost = watch_through(preds, truth, n_frames)
    assert cost.watch == pytest.approx(60 / E.review_speed)
    assert E.stop() == pytest.approx(3 * E.key_s + E.look_s)
    assert cost.jumps == pytest.approx(3 * E.stop())
    assert cost.decisions == pytest.approx(E.accept(-5) + E.accept(0, team_flip=True) + E.reject()
                                           + E.accept_watched())
    assert cost.adds == pytest.approx(E.add_while_watching())
    assert passed(preds, truth) == {0: 16, 2: 1}
    strict = Effort(pass_frames=0)  # only what is right to the frame passes: one more stop
    assert watch_through(preds, truth, n_frames, strict).jumps == pytest.approx(4 * strict.stop())
    # Nothing let pass: no Shift+A.
    assert watch_through(preds[5:6], truth[5:6], n_frames).decisions == pytest.approx(E.accept(-5))


def test_the_best_review_cut_leaves_out_the_false_alarms_and_keeps_the_events():
    """Twenty confident true predictions and forty false alarms at 0.3 or below: reviewing
    costs least from just above the false alarms; true events predicted at 0.25 (cheaper to
    accept than to add while watching) pull the cut down to keep them."""
    n = 25 * 600
    truth = [_ev(i, 500 + 600 * i) for i in range(20)]
    hits = [_ev(100 + i, t["frame"], confidence=0.9) for i, t in enumerate(truth)]
    alarms = [_ev(200 + i, 650 + 300 * i, "SHOT", confidence=0.2 + 0.1 * (i % 2)) for i in range(40)]
    assert best_cut([(hits + alarms, truth, n)]) == 0.35
    low = [{**h, "confidence": 0.25} for h in hits[:10]] + hits[10:]
    assert best_cut([(low, truth, n)]) == 0.2
    # Games are costed together, not each on its own: one true event at 0.25 in the second game
    # (alone: cheapest from 0.2) weighs less than ten false alarms at 0.3 in the first (alone:
    # from 0.35), so together, 0.35: not the lower of the two, nor the last game's.
    ten = [a for a in alarms if a["confidence"] > 0.25][:10]
    one = [{**h, "confidence": 0.25} for h in hits[:1]] + hits[1:]
    assert best_cut([(one, truth, n)]) == 0.2 and best_cut([(hits + ten, truth, n)]) == 0.35
    assert best_cut([(hits + ten, truth, n), (one, truth, n)]) == 0.35
    # A game without true events says nothing about a cut (its predictions are not all false
    # alarms: nobody labelled it); with none, there is no cut.
    assert best_cut([(hits + ten, truth, n), (alarms, [], n)]) == 0.35
    assert best_cut([(alarms, [], n)]) is None and best_cut([]) is None
    cost = review_in_time_order(hits, truth, n).minutes
    assert review_in_time_order(hits + alarms, truth, n).minutes > cost  # each false alarm costs a rejection
