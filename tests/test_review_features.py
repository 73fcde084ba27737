"""The analyst's review features as the screen calls them: visibility, a game's fully-reviewed
mark, bulk accept / reject, the game's team vocabulary, the game opened first, and how the
Models tab reads a job (core.jobview)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import annotation, make_game
from core.export import export
from core.ingest import import_source
from core.review import edit, first_game, game_choices, open_game, start_game, team_vocabulary
from core.store import Store

GAME = "league/2024/a v b"


@pytest.fixture
def game(workspace, tmp_path):
    make_game(tmp_path / "src", GAME, [annotation(10), annotation(40, "SHOT", "away")], video_frames=100)
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="valid")
        store.register_model("v1")
        gid = store.game(GAME)["id"]
        store.add_predictions("v1", gid, [(20, "PASS", "home", 0.9), (30, "DRIVE", "away", 0.85),
                                          (60, "HEADER", "away", 0.4), (70, "OUT", "home", 0.1),
                                          (80, "CROSS", "home", 0.15)])
    return gid


def _edit(store, gid, action, author="ana"):
    return edit(store, gid, action, author=author, cursor=store.change_cursor(), version="v1")


def _pending(store, gid):
    return {p["frame"]: p for p in store.predictions(gid, "v1") if p["status"] == "pending"}


# --------------------------------------------------------------------------- visibility


def test_v_marks_a_label_not_shown_with_history_undo_and_export(store, game, tmp_path):
    lab = next(r for r in store.labels(game) if r["frame"] == 10)
    result = _edit(store, game, {"op": "visibility", "id": f"l{lab['id']}", "revision": lab["revision"]})
    assert result.ok, result.message
    assert store.label(lab["id"])["visibility"] == "not shown" and "not shown" in result.message
    assert result.delta["upsert"][0]["visibility"] == "not shown"  # the list and marker follow the delta
    assert store.history(game, limit=1)[0]["kind"] == "update"
    shown = next(e for e in open_game(store, game, "v1")["events"] if e["id"] == f"l{lab['id']}")
    assert shown["visibility"] == "not shown"

    export(store, tmp_path / "out", games=[GAME])
    doc = json.loads((tmp_path / "out" / GAME / "Labels-ball.json").read_text())
    assert {(a["position"], a["visibility"]) for a in doc["annotations"]} == {("400", "not shown"),
                                                                                ("1600", "visible")}

    assert _edit(store, game, {"op": "undo"}).ok
    assert store.label(lab["id"])["visibility"] == "visible"
    again = store.label(lab["id"])  # pressing v twice comes back to visible
    assert _edit(store, game, {"op": "visibility", "id": f"l{lab['id']}", "revision": again["revision"]}).ok
    after = store.label(lab["id"])
    assert _edit(store, game, {"op": "visibility", "id": f"l{lab['id']}", "revision": after["revision"]}).ok
    assert store.label(lab["id"])["visibility"] == "visible"


def test_v_on_a_pending_prediction_is_refused_and_on_an_accepted_one_marks_its_label(store, game):
    p = _pending(store, game)[20]
    before = store.dump()
    refused = _edit(store, game, {"op": "visibility", "id": f"p{p['id']}", "revision": p["revision"]})
    assert not refused.ok and "accept the prediction first" in refused.message and store.dump() == before
    assert _edit(store, game, {"op": "accept", "id": f"p{p['id']}", "revision": p["revision"]}).ok
    made = store.label_made_by(p["id"])
    assert _edit(store, game, {"op": "visibility", "id": f"l{made['id']}", "revision": made["revision"]}).ok
    assert store.label(made["id"])["visibility"] == "not shown"


# --------------------------------------------------------------------------- fully reviewed


def test_marking_a_game_fully_reviewed_is_an_undoable_edit_shown_everywhere(store, game):
    from core.overview import games_table

    cursor = store.change_cursor()
    result = edit(store, game, {"op": "reviewed", "marked": True, "seen": None}, author="ana", cursor=cursor,
                  version="v1")
    assert result.ok, result.message
    mark = store.game(game)["fully_reviewed"]
    stamp, _, who = mark.partition(" ")
    assert who == "ana" and datetime.fromisoformat(stamp).tzinfo is not None
    assert store.fully_reviewed_games() == {game: mark}
    assert result.delta["reviewed"] == mark  # other tabs learn it through the delta
    assert "fully reviewed" in game_choices(store)[0][0]
    assert games_table(store).iloc[0]["fully reviewed"].startswith("ana, ")
    assert open_game(store, game, "v1")["reviewed"] == mark

    # Marking again changes nothing (no new history entry).
    n = len(store.history(game))
    assert _edit(store, game, {"op": "reviewed", "marked": True, "seen": mark}).ok and len(store.history(game)) == n

    undone = _edit(store, game, {"op": "undo"})
    assert undone.ok and "fully reviewed" in undone.message
    assert store.game(game)["fully_reviewed"] is None and store.fully_reviewed_games() == {}
    assert "fully reviewed" not in game_choices(store)[0][0]
    assert _edit(store, game, {"op": "redo"}).ok and store.game(game)["fully_reviewed"] == mark


def test_a_stale_fully_reviewed_mark_is_a_conflict(store, game):
    assert _edit(store, game, {"op": "reviewed", "marked": True, "seen": None}, author="ben").ok
    before = store.dump()
    stale = _edit(store, game, {"op": "reviewed", "marked": False, "seen": None})  # this tab saw it unmarked
    assert not stale.ok and stale.current["fully_reviewed"].endswith(" ben") and store.dump() == before
    assert "video_path" not in stale.current  # only the mark goes back to the browser
    bad = _edit(store, game, {"op": "reviewed", "marked": "yes"})
    assert not bad.ok and "true or false" in bad.message and store.dump() == before


# --------------------------------------------------------------------------- bulk actions


def _ids(preds):
    return [{"id": f"p{p['id']}", "revision": p["revision"]} for p in preds]


def test_bulk_accept_at_or_above_a_confidence_is_one_undo_step(store, game):
    pending = _pending(store, game)
    chosen = [pending[20], pending[30]]  # 0.9 and 0.85: what the client shows at or above 0.8
    labels_before = len(store.labels(game))
    result = _edit(store, game, {"op": "bulk", "decision": "accept", "threshold": 0.8, "events": _ids(chosen)})
    assert result.ok, result.message
    assert "accepted 2" in result.message and "one undo step" in result.message
    assert [store.prediction(p["id"])["status"] for p in chosen] == ["accepted", "accepted"]
    assert len(store.labels(game)) == labels_before + 2
    action = store.history(game, limit=1)[0]
    assert action["kind"] == "accept" and len([c for c in action["changes"] if c["tbl"] == "predictions"]) == 2
    assert {f"p{p['id']}" for p in chosen} <= set(result.delta["removed"])  # shown as the labels they made

    assert _edit(store, game, {"op": "undo"}).ok  # one step takes both back
    assert [store.prediction(p["id"])["status"] for p in chosen] == ["pending", "pending"]
    assert len(store.labels(game)) == labels_before


def test_bulk_reject_at_or_below_a_confidence(store, game):
    pending = _pending(store, game)
    chosen = [pending[70], pending[80]]
    result = _edit(store, game, {"op": "bulk", "decision": "reject", "threshold": 0.2, "events": _ids(chosen)})
    assert result.ok, result.message
    assert [store.prediction(p["id"])["status"] for p in chosen] == ["rejected", "rejected"]
    assert store.prediction(chosen[0]["id"])["reviewer"] == "ana"


@pytest.mark.parametrize("spoil, words", [
    ("stale", "changed since you loaded it"),      # another tab decided one meanwhile
    ("threshold", "changed since you loaded it"),  # one is below the accept threshold
    ("label", "is a label"),
    ("twice", "named twice"),
    ("empty", "none were shown"),
    ("decision", "'accept' or 'reject'"),
])
def test_a_bulk_action_with_a_bad_or_stale_entry_changes_nothing(store, game, spoil, words):
    pending = _pending(store, game)
    events = _ids([pending[20], pending[30]])
    action = {"op": "bulk", "decision": "accept", "threshold": 0.8, "events": events}
    if spoil == "stale":
        store.reject(pending[30]["id"], reviewer="ben")
    elif spoil == "threshold":
        action["events"] = _ids([pending[20], pending[60]])  # 0.4 < 0.8
    elif spoil == "label":
        lab = store.labels(game)[0]
        action["events"] = [*events, {"id": f"l{lab['id']}", "revision": lab["revision"]}]
    elif spoil == "twice":
        action["events"] = [events[0], events[0]]
    elif spoil == "empty":
        action["events"] = []
    else:
        action["decision"] = "maybe"
    before = store.dump()
    result = _edit(store, game, action)
    assert not result.ok and words in result.message, result.message
    assert store.dump() == before


def test_shift_a_accepts_the_watched_stretch_as_one_undo_step(store, game):
    """Watching through: the pending predictions shown in the frames played (Shift+A's span),
    whatever their confidence, become labels in one edit; the message names the stretch."""
    pending = _pending(store, game)
    chosen = [pending[20], pending[30], pending[60]]  # 0.9, 0.85, 0.4: watched 15-65
    result = _edit(store, game, {"op": "bulk", "decision": "accept", "span": [15, 65], "events": _ids(chosen)})
    assert result.ok, result.message
    assert "accepted 3" in result.message and "watched 00:00.15-00:02.15" in result.message
    assert [store.prediction(p["id"])["status"] for p in chosen] == ["accepted"] * 3
    assert store.prediction(pending[70]["id"])["status"] == "pending"  # not watched: left alone
    assert store.history(game, limit=1)[0]["summary"] == "accept 3 pending predictions watched 00:00.15-00:02.15"
    assert _edit(store, game, {"op": "undo"}).ok
    assert [store.prediction(p["id"])["status"] for p in chosen] == ["pending"] * 3


@pytest.mark.parametrize("span, spoil, words", [
    ([15, 50], None, "outside the watched stretch"),  # the HEADER at 60 was not played
    ([15, 65], "reject", "accepted, not rejected"),
    ([65, 15], None, "not within the game's frames"),
    ([15, 100], None, "not within the game's frames"),  # the game has 100 frames: 0-99
    ([15], None, "[first frame, last frame]"),
    ([15.0, 65], None, "[first frame, last frame]"),
    ("15-65", None, "[first frame, last frame]"),
    ([15, 65], "stale", "changed since you loaded it"),
])
def test_a_watched_stretch_that_does_not_hold_changes_nothing(store, game, span, spoil, words):
    pending = _pending(store, game)
    action = {"op": "bulk", "decision": "accept", "span": span, "events": _ids([pending[20], pending[60]])}
    if spoil == "reject":
        action["decision"] = "reject"
    elif spoil == "stale":
        store.accept(pending[60]["id"], reviewer="ben")  # another tab decided it meanwhile
    before = store.dump()
    result = _edit(store, game, action)
    assert not result.ok and words in result.message, result.message
    assert store.dump() == before


# --------------------------------------------------------------------------- teams, first game


def test_a_side_labelled_game_reviews_left_and_right(store, workspace, tmp_path, game):
    make_game(tmp_path / "src2", "league/2025/c v d", [annotation(5, team="left"), annotation(9, "SHOT", "right")])
    import_source(store, tmp_path / "src2", workspace=workspace, split="test")
    side = store.game("league/2025/c v d")["id"]
    assert team_vocabulary(store, side) == ("left", "right") and team_vocabulary(store, game) == ("home", "away")
    assert open_game(store, side, "v1")["teams"] == ["left", "right"]
    added = _edit(store, side, {"op": "add", "frame": 20, "label": "PASS"})  # no team: the game's first
    assert added.ok and store.label(int(added.select[1:]))["team"] == "left"
    lab = store.label(int(added.select[1:]))
    assert _edit(store, side, {"op": "team", "id": added.select, "revision": lab["revision"]}).ok
    assert store.label(lab["id"])["team"] == "right"
    before = store.dump()
    wrong = _edit(store, side, {"op": "add", "frame": 30, "label": "PASS", "team": "home"})
    assert not wrong.ok and "left / right" in wrong.message and store.dump() == before
    assert store.label(int(_edit(store, game, {"op": "add", "frame": 25, "label": "OUT"}).select[1:]))["team"] == "home"
    # A game that mixes both still opens (to be put right), but gets no new label in either vocabulary.
    store.add_label(side, 50, "OUT", "home")
    assert open_game(store, side, "v1")["teams"] == ["home", "away"]
    before = store.dump()
    mixed = _edit(store, side, {"op": "add", "frame": 60, "label": "PASS"})
    assert not mixed.ok and "mix" in mixed.message and store.dump() == before


def test_a_game_opens_with_its_models_review_cut(store, game):
    """The review screen offers the active version's review cut (measured in training); a
    version trained before it was measured, or no version, offers none."""
    assert open_game(store, game, "v1")["review_cut"] is None
    store.set_model_metrics("v1", {**store.model("v1")["metrics"], "review_cut": 0.45})
    assert open_game(store, game, "v1")["review_cut"] == 0.45
    store.set_model_metrics("v1", {k: v for k, v in store.model("v1")["metrics"].items() if k != "review_cut"})


def test_the_screen_opens_on_the_game_with_the_most_pending_predictions(store, workspace, tmp_path, game):
    assert start_game(store, None) is None
    make_game(tmp_path / "src2", "league/2024/e v f", [annotation(5)])
    import_source(store, tmp_path / "src2", workspace=workspace, split="test")
    other = store.game("league/2024/e v f")["id"]
    store.add_predictions("v1", other, [(f, "PASS", "home", 0.5) for f in range(10, 70, 10)])
    assert start_game(store, "v1") == other  # 6 pending against 5
    for p in store.predictions(other, "v1")[:3]:
        store.reject(p["id"])
    assert start_game(store, "v1") == game  # 5 pending against 3
    for p in store.predictions(game, "v1") + store.predictions(other, "v1"):
        if p["status"] == "pending":
            store.reject(p["id"])
    assert start_game(store, "v1") is None  # nothing pending: the screen reopens its last game
    assert first_game(store, "v1", last=other) == other
    first = store.games()[0]["id"]
    assert first_game(store, "v1", last=None) == first  # no last game: the picker's first
    assert first_game(store, "v1", last=999) == first  # a last game since deleted: the same
    store.add_predictions("v1", other, [(90, "SHOT", "home", 0.4)])
    assert first_game(store, "v1", last=game) == other  # pending predictions come before the last game


# --------------------------------------------------------------------------- jobs as the Models tab shows them


def _job(**fields):
    base = {"id": 3, "kind": "retrain", "status": "running", "progress": 0.0, "message": "", "error": None,
            "started": None, "finished": None, "created": "2024-10-01T12:00:00.000+00:00"}
    return {**base, **fields}


def test_a_jobs_phase_epoch_and_time_left_come_from_its_progress_line():
    from core.jobview import job_view
    from core.training.progress import describe

    now = datetime(2024, 10, 1, 12, 10, tzinfo=timezone.utc)
    started = (now - timedelta(seconds=120)).isoformat()
    step = describe({"epoch": 3, "step": 5, "steps": 10, "loss": 0.5}, 20)  # training's own words
    view = job_view(_job(message=step.text, progress=0.25, started=started), now)
    assert (view["phase"], view["epoch"], view["percent"]) == ("training", "3/20", 25)
    assert view["left"] == "about 6 min left" and view["cancellable"]
    pre = describe({"phase": "pretrain", "step": 10, "steps": 100}, 20)
    assert job_view(_job(message=pre.text, progress=0.01, started=started), now)["phase"] == "pretraining"
    assert job_view(_job(message=pre.text, progress=0.01, started=started), now)["left"] == ""  # too early
    track = describe({"phase": "track", "step": 4, "steps": 50, "loss": 0.2}, 20)
    assert job_view(_job(message=track.text, started=started), now)["phase"] == "ball track"
    infer = job_view(_job(kind="infer", message="inference 2/3 game(s)", progress=0.5, started=started), now)
    assert infer["phase"] == "inference" and infer["epoch"] is None and infer["left"] == "about 2 min left"

    done = job_view(_job(status="done", progress=1.0, message="v2: valid mAP@1 0.532 (was 0.501 with demo)",
                         started=started, finished=now.isoformat()), now)
    assert (done["phase"], done["percent"], done["took"], done["cancellable"]) == ("done", 100, "2 min", False)
    failed = job_view(_job(status="failed", message="failed", error="BallspotError: /srv/x is gone",
                           started=started), now, public=lambda t: t.replace("/srv/", "…/"))
    assert failed["message"] == "BallspotError: …/x is gone" and not failed["cancellable"]
    queued = job_view(_job(status="queued"), now)
    assert queued["phase"] == "queued" and queued["cancellable"] and queued["started"]


def test_the_models_tab_shows_readable_numbers_and_a_chart_that_says_when_there_is_no_run(store, workspace):
    from app.models import _curve_value, _models_frame

    assert "no run yet" in _curve_value(None)["empty"]
    run = workspace.run_dir("retrain", "job-1")
    run.mkdir(parents=True, exist_ok=True)
    (run / "progress.jsonl").write_text(json.dumps({"epoch": 1, "loss": 0.123456789, "valid_map@1": 0.4567891})
                                        + "\n")
    job = {"id": 1, "kind": "retrain", "result": {"run": str(run)}}
    value = _curve_value(job, workspace)
    assert value["empty"] == "" and sorted(r["series"] for r in value["rows"]) == ["loss", "valid mAP@1"]
    assert all(r["value"] == round(r["value"], 4) for r in value["rows"])
    empty_run = _curve_value({"id": 2, "kind": "retrain", "result": None}, workspace)
    assert empty_run["rows"] == [] and "no epoch finished yet" in empty_run["empty"]

    store.register_model("v1", metrics={"valid_map@1": 0.123456789, "reviewed_labels": 120})
    row = _models_frame(store).iloc[0]
    assert row["valid mAP@1"] == "0.123" and row["labels"] == "120"
    assert len(row["created"]) in (5, 16)  # 14:02 today, else 2024-10-01 14:02
