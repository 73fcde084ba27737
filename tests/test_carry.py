"""Review decisions survive new versions, and a retrain re-infers the game under review first.

Item 4 of issue 17: on activation, acceptances and rejections carry to the new version's
prediction of the same event (same class within 2 frames); a decided event the new version no
longer predicts keeps its decision and is not asked again; a rejected false positive predicted
again arrives rejected, even two versions later; the picker's count of reviewed items never drops.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import annotation, make_game, trained_splits
from core.active import QueueConfig, dismiss_missed, review_queue
from core.infer import Event, GameScores, save_curves
from core.ingest import import_source
from core.jobs import FINE_TUNE, RetrainParams, retrain, review_focus
from core.labels import CLASSES
from core.progress import quiet
from core.review import game_choices
from core.store import Store
from core.versions import activate, active_version, register_version, remembered, review_progress


@pytest.fixture
def game(workspace, tmp_path):
    labels = [annotation(50 + 40 * k, "PASS") for k in range(5)]  # PASS is common, the rest rare
    make_game(tmp_path / "src", "l/s/g", labels, video_frames=3000)
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="test")
        gid = store.games()[0]["id"]
        store.register_model("v1")
        store.add_predictions("v1", gid, [(1000, "PASS", "home", 0.6), (1300, "SHOT", "home", 0.5),
                                          (1500, "HEADER", "away", 0.4), (1700, "DRIVE", "home", 0.5)])
    return gid


def _by(store, gid, version):
    return {(p["frame"], p["label"]): p for p in store.predictions(gid, version)}


def _new_version(store, gid, version, parent, events):
    register_version(store, version, parent=parent)
    store.add_predictions(version, gid, events)


def test_decisions_outlive_a_version_that_no_longer_predicts_them(store, game, workspace):
    v1 = _by(store, game, "v1")
    store.accept(v1[(1000, "PASS")]["id"], reviewer="ana", frame=1004)  # moved to the contact frame
    store.reject(v1[(1300, "SHOT")]["id"], reviewer="ana")
    store.accept(v1[(1500, "HEADER")]["id"], reviewer="ben")
    assert review_progress(store)[game] == (3, 4)
    labels_before = len(store.labels(game))

    # v2 predicts the PASS where the analyst put it (5 frames from v1's guess), and neither the
    # rejected SHOT nor the accepted HEADER.
    _new_version(store, game, "v2", "v1", [(1005, "PASS", "home", 0.7), (1701, "DRIVE", "home", 0.5),
                                            (2500, "CROSS", "away", 0.5)])
    done = activate(store, workspace, "v2")
    assert done.activated and done.carried == 1
    v2 = _by(store, game, "v2")
    assert v2[(1005, "PASS")]["status"] == "accepted" and v2[(1005, "PASS")]["reviewer"] == "ana"
    assert [(lab["frame"], lab["label"]) for lab in store.labels(game, sources=("model",))] == \
        [(1004, "PASS"), (1500, "HEADER")]  # the accepted events, once each
    assert len(store.labels(game)) == labels_before
    # The decisions v2 no longer predicts stand: in the store, and in the picker's count.
    assert _by(store, game, "v1")[(1300, "SHOT")]["status"] == "rejected"
    assert review_progress(store)[game] == (3, 5)  # 1 of v2's 3, plus the SHOT and HEADER decided
    assert "3/5 reviewed" in game_choices(store)[0][0]

    # The queue does not ask about the rejected SHOT again (a peak just under the cut there),
    # while a peak where nothing was decided is asked.
    scores = np.zeros((3000, 12), np.float32)
    scores[1295:1310, CLASSES.index("SHOT")] = 0.15
    scores[2195:2210, CLASSES.index("PLAYER SUCCESSFUL TACKLE")] = 0.15
    save_curves(workspace.scores_path("v2", game), GameScores(scores, scores, None))
    missed = {(it.frame, it.label) for it in review_queue(store, workspace, "v2") if it.kind == "missed"}
    assert (2202, "PLAYER SUCCESSFUL TACKLE") in missed
    assert not any(label == "SHOT" for _, label in missed)

    # v3 predicts the SHOT again (v1's rejection, two versions back) and the HEADER and PASS.
    _new_version(store, game, "v3", "v2", [(1002, "PASS", "home", 0.8), (1301, "SHOT", "home", 0.6),
                                            (1499, "HEADER", "home", 0.5), (2500, "CROSS", "away", 0.4)])
    done = activate(store, workspace, "v3")
    v3 = _by(store, game, "v3")
    assert v3[(1301, "SHOT")]["status"] == "rejected"
    assert v3[(1499, "HEADER")]["status"] == "accepted"
    assert store.label_made_by(v3[(1499, "HEADER")]["id"]) is None  # the HEADER label is v1's, not a copy
    assert [(lab["frame"], lab["label"], lab["team"]) for lab in store.labels(game, sources=("model",))] == \
        [(1004, "PASS", "home"), (1500, "HEADER", "away")]  # the corrections carried, no duplicates
    assert v3[(2500, "CROSS")]["status"] == "pending"
    assert done.carried == 3 and review_progress(store)[game] == (3, 4)


def test_a_label_added_by_hand_is_the_event_a_new_version_predicts(store, game, workspace):
    store.add_label(game, 2000, "GOAL", "away", author="ana")
    _new_version(store, game, "v2", "v1", [(2001, "GOAL", "home", 0.9), (2600, "GOAL", "home", 0.9)])
    assert activate(store, workspace, "v2").carried == 1
    v2 = _by(store, game, "v2")
    assert v2[(2001, "GOAL")]["status"] == "accepted" and v2[(2600, "GOAL")]["status"] == "pending"
    goals = [(lab["frame"], lab["team"], lab["source"]) for lab in store.labels(game) if lab["label"] == "GOAL"]
    assert goals == [(2000, "away", "human")]  # the analyst's label, not a second one


def test_the_newest_decision_on_an_event_wins(store, game, workspace):
    store.reject(_by(store, game, "v1")[(1300, "SHOT")]["id"], reviewer="ana")
    _new_version(store, game, "v2", "v1", [(1301, "SHOT", "home", 0.7)])
    activate(store, workspace, "v2")
    shot = _by(store, game, "v2")[(1301, "SHOT")]
    assert shot["status"] == "rejected"
    store.accept(shot["id"], reviewer="ben")  # ben looked again: it was a shot
    _new_version(store, game, "v3", "v2", [(1299, "SHOT", "home", 0.6)])
    activate(store, workspace, "v3")
    assert _by(store, game, "v3")[(1299, "SHOT")]["status"] == "accepted"
    assert [d["status"] for d in remembered(store, game) if d["label"] == "SHOT"] == ["accepted"]


def test_a_dismissed_missed_event_is_not_asked_again_and_stays_rejected(store, game, workspace):
    scores = np.zeros((3000, 12), np.float32)
    scores[2195:2210, CLASSES.index("BALL PLAYER BLOCK")] = 0.12
    save_curves(workspace.scores_path("v1", game), GameScores(scores, scores, None))
    item = next(it for it in review_queue(store, workspace, "v1") if it.kind == "missed")
    assert (item.frame, item.label) == (2202, "BALL PLAYER BLOCK")
    row = dismiss_missed(store, "v1", item, reviewer="ana")
    assert row["status"] == "rejected" and row["confidence"] == pytest.approx(item.confidence)
    assert not any(it.kind == "missed" for it in review_queue(store, workspace, "v1"))
    _new_version(store, game, "v2", "v1", [(2203, "BALL PLAYER BLOCK", "home", 0.3)])
    activate(store, workspace, "v2")
    assert _by(store, game, "v2")[(2203, "BALL PLAYER BLOCK")]["status"] == "rejected"
    with pytest.raises(Exception, match="only a missed-event candidate"):
        dismiss_missed(store, "v1", next(it for it in review_queue(store, workspace, "v1")))


def test_the_queue_spreads_its_items_and_favours_rare_classes(store, game, workspace):
    store.add_predictions("v1", game, [(1000, "PASS", "home", 0.5), (1040, "DRIVE", "home", 0.5),
                                       (2000, "PASS", "away", 0.45), (2600, "SHOT", "home", 0.3)])
    plain = QueueConfig(rare_boost=0, spacing_s=0)
    order = [(it.frame, it.label) for it in review_queue(store, workspace, "v1", config=plain)]
    assert order[:3] == [(1000, "PASS"), (1040, "DRIVE"), (2000, "PASS")]
    spread = [(it.frame, it.label) for it in review_queue(store, workspace, "v1", config=QueueConfig(rare_boost=0))]
    assert spread[:3] == [(1000, "PASS"), (2000, "PASS"), (2600, "SHOT")]  # the DRIVE 1.6 s away waits
    assert spread.index((1040, "DRIVE")) == 3
    rare = review_queue(store, workspace, "v1", config=QueueConfig(spacing_s=0))
    assert (rare[0].frame, rare[0].label) == (1040, "DRIVE")  # no DRIVE labelled, five PASS
    shot = next(it for it in rare if it.label == "SHOT")
    assert any("rare" in r for r in shot.reasons)
    assert rare.index(shot) < [(it.frame, it.label) for it in rare].index((2000, "PASS"))


# --------------------------------------------------------------------------- the wait after Retrain


@pytest.fixture(scope="module")
def three_games(tmp_path_factory):
    """Tiny games a (train), b (valid), c (test), a tiny v1 and its predictions on b and c."""
    ws, config, v1 = trained_splits(tmp_path_factory.mktemp("focus"), minutes=0.2, seed=7, retrain_epochs=1, epochs=6,
                                    samples_per_epoch=32, valid_every=6)
    with Store.open(ws) as store:
        names = [g["url_local"] for g in store.games()]
        for name in names[1:]:
            store.add_predictions(v1, name, [(30, "PASS", "home", 0.6), (90, "DRIVE", "away", 0.5)])
    return {"ws": ws, "config": str(config), "v1": v1, "names": names}


def test_a_retrain_infers_the_game_under_review_first_and_activates_after_all(three_games, monkeypatch):
    ws, names = three_games["ws"], three_games["names"]
    active_meanwhile: list[str | None] = []

    def infer_video(model, video, config=None, progress=None):
        with Store.open(ws) as other:  # what the review screen shows while inference runs
            active_meanwhile.append(active_version(other))
        zeros = np.zeros((300, 12), np.float32)
        return GameScores(zeros, zeros), [Event(31, "PASS", "home", 0.7)]

    monkeypatch.setattr("core.runner.infer_video", infer_video)
    with Store.open(ws) as store:
        p = store.predictions(names[2], three_games["v1"])[0]
        store.reject(p["id"], reviewer="ana")  # the analyst is on game c
        assert review_focus(store) == names[2]  # what the app's Retrain passes
        in_order = retrain(store, ws, RetrainParams(config=three_games["config"], epochs=1), quiet)
        assert in_order["inference"]["games"] == [names[1], names[2]]  # no focus: the games' order
        store.set_model_metrics(in_order["version"], {**store.model(in_order["version"])["metrics"],
                                                      "valid_map@1": None})
        result = retrain(store, ws, RetrainParams(config=three_games["config"], focus_game=names[2]), quiet)
        assert result["activated"] and active_version(store) == result["version"]
        assert result["inference"]["games"] == [names[2], names[1]]  # c first, then the rest
        # One activation, after every game: the previous version was active throughout.
        assert active_meanwhile[2:] == [in_order["version"]] * 2
        # Fine-tuning takes the short schedule, not the config's six epochs.
        assert store.model(result["version"])["metrics"]["epochs"] == min(6, FINE_TUNE["epochs"])
        # A game named as the focus is inferred first even if the previous version never scored it.
        store.set_model_metrics(result["version"], {**store.model(result["version"])["metrics"], "valid_map@1": None})
        again = retrain(store, ws, RetrainParams(config=three_games["config"], epochs=1, focus_game=names[0]), quiet)
        assert again["inference"]["games"] == names
