"""The review screen's edit paths, as the browser calls them: each reaches the store, with history."""
from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from conftest import annotation, make_game
from core.infer import GameScores, save_curves
from core.ingest import import_source
from core.video import open_game_video
from core.review import delta, edit, filmstrip, game_choices, open_game, score_curve
from core.store import Store


@pytest.fixture
def game(workspace, tmp_path):
    make_game(tmp_path / "src", "league/2024/a v b", [annotation(10), annotation(40, "SHOT", "away")], video_frames=100)
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="valid")
        store.register_model("v1")
        gid = store.game("league/2024/a v b")["id"]
        store.add_predictions("v1", gid, [(20, "PASS", "home", 0.9), (60, "HEADER", "away", 0.4)])
    return gid


def _edit(store, gid, action, author="ana"):
    return edit(store, gid, action, author=author, cursor=store.change_cursor(), version="v1")


def _pred(store, gid, frame):
    return next(p for p in store.predictions(gid, "v1") if p["frame"] == frame)


def test_open_game_sends_labels_predictions_and_video(store, game):
    data = open_game(store, game, "v1")
    kinds = sorted((e["kind"], e["frame"]) for e in data["events"])
    assert kinds == [("label", 10), ("label", 40), ("prediction", 20), ("prediction", 60)]
    assert data["game"]["frames"] == 100 and data["game"]["video"].endswith(".mp4")
    assert data["classes"][0] == "PASS" and len(data["colours"]) == 12
    name, gid = game_choices(store)[0]
    assert gid == game and "2 labels" in name and "0/2 reviewed" in name


def test_add_stores_the_label_with_its_author_and_history(store, game):
    result = _edit(store, game, {"op": "add", "frame": 33, "label": "CROSS", "team": "away"})
    assert result.ok, result.message
    row = next(r for r in store.labels(game) if r["frame"] == 33)
    assert (row["label"], row["team"], row["source"], row["author"]) == ("CROSS", "away", "human", "ana")
    assert result.select == f"l{row['id']}"
    assert [e["id"] for e in result.delta["upsert"]] == [f"l{row['id']}"]
    assert store.history(game, limit=1)[0]["kind"] == "add"


@pytest.mark.parametrize("action, expect", [
    ({"op": "move", "by": 1}, {"frame": 11}),
    ({"op": "move", "by": -1}, {"frame": 9}),
    ({"op": "move", "frame": 17}, {"frame": 17}),
    ({"op": "relabel", "label": "DRIVE"}, {"label": "DRIVE"}),
    ({"op": "team"}, {"team": "away"}),
])
def test_label_edits_reach_the_store(store, game, action, expect):
    lab = next(r for r in store.labels(game) if r["frame"] == 10)
    result = _edit(store, game, {**action, "id": f"l{lab['id']}", "revision": lab["revision"]})
    assert result.ok, result.message
    row = store.label(lab["id"])
    assert {k: row[k] for k in expect} == expect and row["revision"] == lab["revision"] + 1
    assert row["author"] == "ana" and store.history(game, limit=1)[0]["kind"] == "update"
    assert result.delta["upsert"][0]["revision"] == row["revision"]


def test_delete_then_undo_and_redo_from_the_history(store, game):
    lab = next(r for r in store.labels(game) if r["frame"] == 40)
    result = _edit(store, game, {"op": "delete", "id": f"l{lab['id']}", "revision": lab["revision"]})
    assert result.ok and result.delta["removed"] == [f"l{lab['id']}"]
    assert [r["frame"] for r in store.labels(game)] == [10]
    undone = _edit(store, game, {"op": "undo"})
    assert undone.ok and "undo" in undone.message and [r["frame"] for r in store.labels(game)] == [10, 40]
    assert [e["id"] for e in undone.delta["upsert"]] == [f"l{lab['id']}"]
    redone = _edit(store, game, {"op": "redo"})
    assert redone.ok and [r["frame"] for r in store.labels(game)] == [10]
    nothing = _edit(store, game, {"op": "redo"})
    assert nothing.ok and nothing.message == "nothing to redo"


def test_accept_and_reject_predictions(store, game):
    p = _pred(store, game, 20)
    assert _edit(store, game, {"op": "accept", "id": f"p{p['id']}", "revision": p["revision"]}).ok
    assert store.prediction(p["id"])["status"] == "accepted" and store.prediction(p["id"])["reviewer"] == "ana"
    made = [r for r in store.labels(game) if r["prediction_id"] == p["id"]]
    assert [(r["frame"], r["label"], r["source"]) for r in made] == [(20, "PASS", "model")]
    q = _pred(store, game, 60)
    result = _edit(store, game, {"op": "reject", "id": f"p{q['id']}", "revision": q["revision"]})
    assert result.ok and store.prediction(q["id"])["status"] == "rejected"
    assert not [r for r in store.labels(game) if r["prediction_id"] == q["id"]]
    assert _edit(store, game, {"op": "undo"}).ok and store.prediction(q["id"])["status"] == "pending"


def test_correcting_a_prediction_accepts_it_corrected_in_one_undo_step(store, game):
    p = _pred(store, game, 60)
    result = _edit(store, game, {"op": "move", "id": f"p{p['id']}", "by": 1, "revision": p["revision"]})
    assert result.ok, result.message
    label = next(r for r in store.labels(game) if r["prediction_id"] == p["id"])
    assert (label["frame"], label["label"], label["team"]) == (61, "HEADER", "away")
    assert store.prediction(p["id"])["frame"] == 60 and store.prediction(p["id"])["status"] == "accepted"
    assert result.select == f"l{label['id']}"
    # Correcting it again edits the label it made: the earlier correction (frame 61) stays.
    result = _edit(store, game, {"op": "team", "id": f"p{p['id']}", "revision": store.prediction(p["id"])["revision"],
                                 "made_revision": label["revision"]})
    assert result.ok, result.message
    labels = [r for r in store.labels(game) if r["prediction_id"] == p["id"]]
    assert [(r["frame"], r["team"]) for r in labels] == [(61, "home")]
    again = _edit(store, game, {"op": "accept", "id": f"p{p['id']}", "revision": store.prediction(p["id"])["revision"]})
    assert again.ok and "already accepted" in again.message
    assert [(r["frame"], r["team"]) for r in store.labels(game) if r["prediction_id"] == p["id"]] == [(61, "home")]
    assert _edit(store, game, {"op": "undo"}).ok
    assert [(r["frame"], r["team"]) for r in store.labels(game) if r["prediction_id"] == p["id"]] == [(61, "away")]


def test_a_stale_edit_is_a_conflict_and_overwrites_nothing(store, game):
    lab = next(r for r in store.labels(game) if r["frame"] == 10)
    cursor = store.change_cursor()
    assert _edit(store, game, {"op": "move", "id": f"l{lab['id']}", "by": 2, "revision": lab["revision"]}).ok
    before = store.dump()
    stale = edit(store, game, {"op": "relabel", "id": f"l{lab['id']}", "label": "GOAL", "revision": lab["revision"]},
                 author="ben", cursor=cursor, version="v1")
    assert not stale.ok and "changed since you loaded it" in stale.message
    assert stale.current["frame"] == 12 and store.dump() == before
    assert [e["frame"] for e in stale.delta["upsert"]] == [12]  # the tab gets the fresh row


@pytest.mark.parametrize("action, words", [
    ({"op": "add", "frame": 5, "label": "DIVE"}, "unknown class"),
    ({"op": "add", "frame": 5000, "label": "PASS"}, "past the end of the video"),
    ({"op": "add", "label": "PASS"}, "malformed edit"),
    ({"op": "fly"}, "unknown edit"),
    ({"op": "delete", "id": "x1"}, "not an event id"),
    ({"op": "accept", "id": "l1", "revision": 1}, "apply to predictions"),
    ({"op": "delete", "id": "l999999", "revision": 1}, "does not exist"),
    ({"op": "add", "frame": 2**63, "label": "PASS"}, "past the end of the video"),
    ({"op": "add", "frame": "12x", "label": "PASS"}, "not a whole number"),
    ({"op": "add", "frame": True, "label": "PASS"}, "not a whole number"),
    ({"op": "add", "frame": [1], "label": "PASS"}, "not a whole number"),
])
def test_bad_edits_are_refused_with_a_message_and_store_nothing(store, game, action, words):
    before = store.dump()
    result = _edit(store, game, action)
    assert not result.ok and words in result.message
    assert store.dump() == before


def test_delta_brings_edits_made_elsewhere(store, game):
    cursor = store.change_cursor()
    store.add_label(game, 70, "OUT", "home", author="cli")
    p = _pred(store, game, 20)
    store.reject(p["id"], reviewer="ben")
    d = delta(store, game, cursor, "v1")
    assert sorted(e["id"] for e in d["upsert"]) == sorted([f"l{store.labels(game)[-1]['id']}", f"p{p['id']}"])
    assert d["cursor"] == store.change_cursor()
    assert delta(store, game, d["cursor"], "v1") == {"upsert": [], "removed": [], "cursor": d["cursor"]}


def test_filmstrip_frames_are_the_exact_frames(store, game):
    g = store.game(game)
    with open_game_video(g) as f:
        strip = filmstrip(f, 50, g["frame_count"])
    assert [f["frame"] for f in strip] == list(range(46, 55)) and strip[4]["offset"] == 0
    for f in strip:  # conftest's video: a bright square at x = 3 * frame % 56
        jpg = base64.b64decode(f["src"].split(",", 1)[1])
        img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_GRAYSCALE)
        scale = img.shape[0] / 48
        cols = np.where(img[int(14 * scale)] > 150)[0]
        assert abs(cols.min() / scale - (3 * f["frame"]) % 56) <= 1.5, f["frame"]
    with open_game_video(g) as f:
        edge = filmstrip(f, 1, g["frame_count"])
    assert [f["frame"] for f in edge] == [0, 1, 2, 3, 4, 5]


def test_score_curve_per_class(store, game, workspace):
    assert score_curve(workspace, "v1", game, "PASS") is None
    scores = np.zeros((100, 12), np.float32)
    scores[20, 0] = 1.0
    save_curves(workspace.scores_path("v1", game), GameScores(scores, np.zeros_like(scores)))
    curve = np.frombuffer(base64.b64decode(score_curve(workspace, "v1", game, "PASS")), np.uint8)
    assert len(curve) == 100 and curve[20] == 255 and curve.sum() == 255


@pytest.mark.parametrize("op", ["move", "relabel", "team", "delete"])
def test_an_edit_of_an_existing_event_must_name_its_revision(store, game, op):
    lab = next(r for r in store.labels(game) if r["frame"] == 10)
    before = store.dump()
    result = _edit(store, game, {"op": op, "id": f"l{lab['id']}", "by": 1, "label": "GOAL"})
    assert not result.ok and "must name the revision" in result.message
    assert store.dump() == before


def test_a_stale_tab_cannot_overwrite_a_move_of_the_label_an_accept_made(store, game):
    """Tab A accepts p (making label l); tab B moves l; tab A, still showing p's revision,
    moves p: B's confirmed move must stay."""
    p = _pred(store, game, 60)
    assert _edit(store, game, {"op": "accept", "id": f"p{p['id']}", "revision": p["revision"]}).ok
    seen_p = store.prediction(p["id"])
    made = store.label_made_by(p["id"])
    assert _edit(store, game, {"op": "move", "id": f"l{made['id']}", "frame": 64, "revision": made["revision"]},
                 author="ben").ok
    before = store.dump()
    stale = _edit(store, game, {"op": "move", "id": f"p{p['id']}", "frame": 58, "revision": seen_p["revision"],
                                "made_revision": made["revision"]})
    assert not stale.ok and "changed since you loaded it" in stale.message
    assert store.label(made["id"])["frame"] == 64 and store.dump() == before
    # Without the label's revision the correction is refused too (an old client, a raw API call).
    blind = _edit(store, game, {"op": "move", "id": f"p{p['id']}", "frame": 58, "revision": seen_p["revision"]})
    assert not blind.ok and store.dump() == before


def test_deleting_the_label_an_accept_made_returns_the_prediction_to_pending(store, game):
    p = _pred(store, game, 20)
    assert _edit(store, game, {"op": "accept", "id": f"p{p['id']}", "revision": p["revision"]}).ok
    made = store.label_made_by(p["id"])
    result = _edit(store, game, {"op": "delete", "id": f"l{made['id']}", "revision": made["revision"]})
    assert result.ok, result.message
    assert store.prediction(p["id"])["status"] == "pending" and store.label_made_by(p["id"]) is None
    assert f"p{p['id']}" in {e["id"] for e in result.delta["upsert"]}  # the screen shows it pending at once
    assert _edit(store, game, {"op": "undo"}).ok  # one step brings back both
    assert store.prediction(p["id"])["status"] == "accepted" and store.label_made_by(p["id"]) is not None


def test_review_progress_is_the_active_versions_everywhere(store, game):
    from core.overview import games_table
    from core.versions import set_active

    p = _pred(store, game, 20)
    store.accept(p["id"])  # one decision on v1
    store.register_model("v2")
    store.add_predictions("v2", game, [(21, "PASS", "home", 0.8), (30, "SHOT", "away", 0.5), (70, "OUT", "home", 0.3)])
    for version, shown in (("v2", "0/3"), ("v1", "1/2")):
        set_active(store, version)
        assert f"{shown} reviewed" in game_choices(store)[0][0]
        row = games_table(store).iloc[0]
        assert row["reviewed"] == shown and row["predictions"] == int(shown.split("/")[1])


def test_an_accepted_prediction_is_one_event_its_label(store, game):
    """One row and one marker per event: after an accept the screen lists the label it made,
    with its current class and the model it came from, and no longer the prediction."""
    p = _pred(store, game, 60)
    cursor = store.change_cursor()
    result = _edit(store, game, {"op": "accept", "id": f"p{p['id']}", "revision": p["revision"]})
    made = store.label_made_by(p["id"])
    assert result.select == f"l{made['id']}"
    assert f"p{p['id']}" in result.delta["removed"]
    relabel = _edit(store, game, {"op": "relabel", "id": f"l{made['id']}", "label": "GOAL",
                                  "revision": made["revision"]})
    assert relabel.ok
    data = open_game(store, game, "v1")
    ids = [e["id"] for e in data["events"]]
    assert f"p{p['id']}" not in ids and ids.count(f"l{made['id']}") == 1
    event = next(e for e in data["events"] if e["id"] == f"l{made['id']}")
    assert (event["label"], event["status"], event["model"], event["confidence"]) == ("GOAL", "accepted", "v1", 0.4)
    assert [e for e in delta(store, game, cursor, "v1")["upsert"] if e["id"] == f"l{made['id']}"][0]["model"] == "v1"
    # Deleting it brings the prediction back, pending, as its own event again.
    current = store.label(made["id"])
    gone = _edit(store, game, {"op": "delete", "id": f"l{made['id']}", "revision": current["revision"]})
    assert gone.ok and f"p{p['id']}" in {e["id"] for e in gone.delta["upsert"]}
    assert f"p{p['id']}" in [e["id"] for e in open_game(store, game, "v1")["events"]]
