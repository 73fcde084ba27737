"""Trust: no review decision is lost to a retrain or a re-run, whatever stops it and when.

A new version becomes active only in the job's last write, one transaction that also carries the
review decisions over (as they are at that moment); a cancel or a kill at any phase leaves the
previous version active with its predictions and decisions exactly as they were.

The workspace (a tiny trained v1, its predictions on two games, 20 decisions) is built once and
copied per test. Inference is replaced by fixed events in the in-process tests, so every version
predicts the same events and each decision has exactly one event to carry over to; training is
real (tiny.yaml, seconds). The last tests run real job processes and stop them mid-inference.
"""
from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from contextlib import closing

from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, make_game, stop_job, trained_splits, wait_for_job
from core.infer import Event, GameScores
from core.ingest import import_source
from core.jobs import Cancelled, InferParams, RetrainParams, refresh, reinfer, retrain, submit
from core.labels import CLASSES
from core.progress import Step, quiet
from core.store import Store
from core.versions import ACTIVE_SETTING, active_version
from core.workspace import Workspace

TINY = ROOT / "core" / "configs" / "tiny.yaml"
FRAMES = 375  # each synthetic game: 0.25 min
#: What every version "predicts" on every game (fake inference): 12 events, 30 frames apart.
EVENTS = [Event(15 + 30 * k, CLASSES[k % 12], ("home", "away")[k % 2], 0.6) for k in range(12)]
DECIDED = 10  # per review game


def predict(store: Store, version: str, game: str) -> None:
    store.add_predictions(version, game, [(e.frame, e.label, e.team, e.confidence) for e in EVENTS])


class Killed(BaseException):
    """Stands for kill -9 in-process: nothing catches it, nothing after it runs."""


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    """Games a (train), b (valid), c (test); v1 trained on a (tiny), its predictions on b and c,
    20 decisions on them (accepted, accepted corrected, rejected). v1's validation score is
    cleared, so any v2 counts as not worse and a retrain goes on to infer and activate."""
    ws, config, v1 = trained_splits(tmp_path_factory.mktemp("trust"), minutes=0.25, seed=61, epochs=1,
                                    samples_per_epoch=32)
    with Store.open(ws) as store:
        games = [g["url_local"] for g in store.games() if g["split"] in ("valid", "test")]
        for name in games:
            predict(store, v1, name)
            for k, p in enumerate(store.predictions(name, v1)[:DECIDED]):
                if k % 3 == 0:
                    store.accept(p["id"], reviewer="ana", frame=p["frame"] + 1, team="away")
                elif k % 3 == 1:
                    store.accept(p["id"], reviewer="ben")
                else:
                    store.reject(p["id"], reviewer="ana")
        assert active_version(store) == v1 and store.setting(ACTIVE_SETTING) == v1
    return {"ws": ws, "config": str(config), "v1": v1, "games": games}


@pytest.fixture
def ws(template, tmp_path) -> Workspace:
    """A copy of the template workspace (its models' folders re-pointed at the copy)."""
    copy = Workspace.at(shutil.copytree(template["ws"].root, tmp_path / "ws"))
    with closing(sqlite3.connect(copy.db_path)) as db, db:
        db.execute("UPDATE models SET path = replace(path, ?, ?)", (str(template["ws"].root), str(copy.root)))
    return copy


@pytest.fixture
def fake_inference(monkeypatch):
    """Inference returns ``EVENTS`` for any version and game, reporting progress half-way."""
    def infer_video(model, path, config=None, progress=None):
        if progress is not None:
            progress(Step(FRAMES // 2, FRAMES))
            progress(Step(FRAMES, FRAMES))
        zeros = np.zeros((FRAMES, 12), np.float32)
        return GameScores(zeros, zeros), list(EVENTS)

    monkeypatch.setattr("core.runner.infer_video", infer_video)


def reviewed(store: Store, version: str, games: list[str]) -> list[dict]:
    """Every row of a version's predictions on the games, and every label: what must not change."""
    return [dict(p) for g in games for p in store.predictions(g, version)] + \
           [dict(lab) for g in games for lab in store.labels(g)]


def decided(store: Store, version: str, games: list[str]) -> dict:
    """(game, frame, label) -> (status, reviewer) of a version's decided predictions."""
    return {(g, p["frame"], p["label"]): (p["status"], p["reviewer"])
            for g in games for p in store.predictions(g, version) if p["status"] != "pending"}


def stop_at(phase: str, games: list[str], error: type[BaseException]):
    """A report callback that raises ``error`` when the job reaches ``phase``."""
    starts = {"training": "epoch", "inference": f"inference {games[1]}",  # the first game is stored by then
              "carry-over": "carrying review decisions over"}.get(phase)

    def report(step: Step) -> None:
        if starts and step.text.startswith(starts):
            raise error(f"stopped at {phase}")
    return report


def assert_v1_intact(ws: Workspace, template: dict, before: list[dict]) -> None:
    """From a fresh connection, as after a crash: v1 active, its predictions and decisions and
    the labels exactly as before; any v2 registered but inactive, and nothing decided on it."""
    v1, games = template["v1"], template["games"]
    with Store.open(ws) as store:
        assert active_version(store) == v1 and store.setting(ACTIVE_SETTING) == v1
        assert reviewed(store, v1, games) == before
        assert len(decided(store, v1, games)) == 2 * DECIDED
        for m in store.models():
            if m["version"] != v1:
                assert decided(store, m["version"], games) == {}, "decisions carried to an inactive version"
        from app.models import _models_frame
        table = _models_frame(store)
        assert table.loc[table["active"] == "yes", "version"].tolist() == [v1]


# --------------------------------------------------------------------------- stopped retrains


@pytest.mark.parametrize("phase,error", [("training", Cancelled), ("registration", Cancelled),
                                         ("inference", Cancelled), ("carry-over", Cancelled),
                                         ("inference", Killed), ("carry-over", Killed)])
def test_a_retrain_stopped_at_any_phase_leaves_the_previous_version_active(ws, template, fake_inference,
                                                                           monkeypatch, phase, error):
    games = template["games"]
    if phase == "registration":  # inside the registration's transaction, after the insert
        original = Store.register_model

        def register_then_stop(self, *args, **kwargs):
            original(self, *args, **kwargs)
            raise error("stopped at registration")
        monkeypatch.setattr(Store, "register_model", register_then_stop)
    with Store.open(ws) as store:
        before = reviewed(store, template["v1"], games)
        with pytest.raises(error):
            retrain(store, ws, RetrainParams(config=template["config"]), stop_at(phase, games, error))
    assert_v1_intact(ws, template, before)
    with Store.open(ws) as store:
        versions = [m["version"] for m in store.models()]
        if phase in ("training", "registration"):
            assert versions == [template["v1"]]
        else:
            v2 = versions[-1]
            assert versions == [template["v1"], v2]
            # Stopped after the first game: v2 keeps that game's predictions, all pending.
            expected = [len(EVENTS), 0] if phase == "inference" else [len(EVENTS)] * 2
            assert [len(store.predictions(g, v2)) for g in games] == expected


def test_a_decision_made_on_v1_while_v2_infers_is_carried_to_v2(ws, template, fake_inference):
    """The carry-over reads the decisions when it runs, not before the inference started."""
    v1, games = template["v1"], template["games"]
    late = {}

    def review_meanwhile(step: Step) -> None:
        if step.text.startswith(f"inference {games[1]}") and not late:  # v2 has stored games[0] already
            for g, op in zip(games, ("reject", "accept")):
                p = next(p for p in store.predictions(g, v1) if p["status"] == "pending")
                getattr(store, op)(p["id"], reviewer="cleo")
                late[(g, p["frame"], p["label"])] = ("rejected" if op == "reject" else "accepted", "cleo")

    with Store.open(ws) as store:
        result = retrain(store, ws, RetrainParams(config=template["config"]), review_meanwhile)
        v2 = result["version"]
        assert result["activated"] and active_version(store) == v2
        carried = decided(store, v2, games)
        assert {k: carried.get(k) for k in late} == late
        assert carried == decided(store, v1, games) and len(carried) == 2 * DECIDED + 2


def test_a_finished_retrain_activates_v2_and_carries_every_decision_in_one_transaction(ws, template,
                                                                                      fake_inference, monkeypatch):
    """When v2 is made active, the carried decisions are already written in the same,
    uncommitted transaction: another connection sees neither until both are committed."""
    import core.versions

    v1, games = template["v1"], template["games"]
    seen = {}
    original = core.versions.set_active

    def watch(store: Store, version: str) -> None:
        if version != v1:
            with closing(sqlite3.connect(f"file:{ws.db_path}?mode=ro", uri=True)) as other:  # committed only
                seen["other"] = (other.execute("SELECT value FROM settings WHERE key = ?", (ACTIVE_SETTING,))
                                 .fetchone()[0],
                                 other.execute("SELECT COUNT(*) FROM predictions WHERE model_version = ? AND "
                                               "status != 'pending'", (version,)).fetchone()[0])
            seen["this"] = (store.conn.in_transaction, len(decided(store, version, games)))
        original(store, version)
    monkeypatch.setattr(core.versions, "set_active", watch)

    with Store.open(ws) as store:
        labels = [dict(lab) for g in games for lab in store.labels(g)]
        result = retrain(store, ws, RetrainParams(config=template["config"]), quiet)
        v2 = result["version"]
        assert result["activated"] and active_version(store) == v2 and store.setting(ACTIVE_SETTING) == v2
        assert seen == {"other": (v1, 0), "this": (True, 2 * DECIDED)}
        assert result["inference"]["carried"] == 2 * DECIDED
        assert decided(store, v2, games) == decided(store, v1, games)
        # Accepted-corrected decisions reuse their labels: none added, none lost.
        assert [dict(lab) for g in games for lab in store.labels(g)] == labels
        for g in games:  # one carry operation per game, after v2's predictions
            kinds = [a["kind"] for a in store.history(g, limit=5)]
            assert kinds[0] == "carry" and kinds.count("carry") == 1, kinds


def test_re_running_the_active_version_keeps_decisions_made_while_it_infers(ws, template, fake_inference):
    """The same version's re-run replaces its predictions game by game, reading that game's
    decisions at the moment it replaces them (not a snapshot from before the inference)."""
    v1, games = template["v1"], template["games"]
    late = {}

    def review_meanwhile(step: Step) -> None:
        if step.text.startswith(f"inference {games[1]}") and not late:  # games[1] not replaced yet
            p = next(p for p in store.predictions(games[1], v1) if p["status"] == "pending")
            store.reject(p["id"], reviewer="cleo")
            late[(games[1], p["frame"], p["label"])] = ("rejected", "cleo")

    with Store.open(ws) as store:
        before = decided(store, v1, games)
        result = reinfer(store, ws, InferParams(version=v1, games=games), review_meanwhile)
        after = decided(store, v1, games)
        assert after == {**before, **late} and result["carried"] == 2 * DECIDED + 1
        assert active_version(store) == v1


def test_an_inference_on_the_validation_game_measures_the_review_cut_of_what_it_stored(ws, template,
                                                                                      fake_inference):
    """Training measures a version's review cut on its own (no TTA) validation confidences; an
    inference that stores the version's predictions on its validation game measures it again on
    those, the confidences the review screen filters."""
    from core.effort import CUT_GRID
    from core.versions import measure_review_cut, review_cut

    v1, games = template["v1"], template["games"]
    with Store.open(ws) as store:
        valid = store.model(v1)["metrics"]["valid_games"]
        assert valid and set(valid) <= set(games)
        store.set_model_metrics(v1, {**store.model(v1)["metrics"], "review_cut": 0.123})  # not on the grid
        reinfer(store, ws, InferParams(version=v1, games=[g for g in games if g not in valid]), quiet)
        assert review_cut(store, v1) == 0.123  # the validation game not inferred: nothing to measure
        reinfer(store, ws, InferParams(version=v1, games=games), quiet)
        assert review_cut(store, v1) in CUT_GRID and review_cut(store, v1) == measure_review_cut(store, v1, valid)


# --------------------------------------------------------------------------- activating by hand


def test_activating_a_version_without_the_previous_ones_predictions_waits_for_its_inference(
        ws, template, fake_inference, monkeypatch):
    """``versions.activate``: v2 (registered, never inferred) is not made active at once; an
    inference job that activates it at its end is queued (once), and v1 stays active till then.
    Switching back to v1, which has predictions everywhere, is at once."""
    from core.jobs import run_job
    from core.versions import activate, register_version

    v1, games = template["v1"], template["games"]
    monkeypatch.setattr("core.jobs.refresh", lambda *a, **k: [])  # the test runs the job itself
    with Store.open(ws) as store:
        register_version(store, "v2", path=store.model(v1)["path"], parent=v1)
        assert active_version(store) == v1
        first = activate(store, ws, "v2", author="dan")
        assert not first.activated and first.job is not None and active_version(store) == v1
        assert "becomes the active model when that job finishes" in first.message
        assert activate(store, ws, "v2").job["id"] == first.job["id"]  # a second click adds no job
        handler = signal.getsignal(signal.SIGTERM)
        try:
            job = run_job(store, ws, first.job["id"])
        finally:
            signal.signal(signal.SIGTERM, handler)
        assert job["status"] == "done", job
        assert active_version(store) == "v2"
        assert decided(store, "v2", games) == decided(store, v1, games)
        back = activate(store, ws, v1)
        assert back.activated and back.job is None and active_version(store) == v1


# --------------------------------------------------------------------------- real job processes


@pytest.mark.parametrize("how", ["cancel", "kill"])
def test_a_retrain_job_stopped_during_inference_leaves_the_previous_version_active(ws, template, tmp_path, how):
    """A real job process (real inference), cancelled (SIGTERM) or killed (SIGKILL) while it
    infers the last of three games: v1 is active with everything as it was; v2 is registered,
    inactive, with the predictions of the games it finished, none of them decided."""
    v1 = template["v1"]
    make_game(tmp_path / "long", "zz/long", [], video_frames=2500)  # sorts last: inferred last
    with Store.open(ws) as store:
        import_source(store, tmp_path / "long", workspace=ws, split="test")
        predict(store, v1, "zz/long")
        games = template["games"] + ["zz/long"]
        before = reviewed(store, v1, template["games"])
        job = submit(store, "retrain", {"config": template["config"]})
        refresh(store, ws)
        running = wait_for_job(store, job["id"],
                               lambda j: j["message"] == "inference zz/long" or j["status"] != "running")
        assert running["status"] == "running", running
        stop_job(store, ws, running, how)
    assert_v1_intact(ws, template, before)
    with Store.open(ws) as store:
        v2 = store.models()[-1]["version"]
        assert v2 != v1 and store.integrity_check() == "ok"
        assert [bool(store.predictions(g, v2)) for g in games] == [True, True, False]
        assert len(store.predictions("zz/long", v1)) == len(EVENTS)


def test_a_version_left_half_inferred_by_a_cancel_gets_every_decision_when_activated(ws, template, fake_inference,
                                                                                      monkeypatch):
    """Cancelled after its first game, v2 keeps that game's predictions; activating it later
    infers only the other game, and still carries the decisions on both."""
    from core.jobs import run_job
    from core.versions import activate

    v1, games = template["v1"], template["games"]
    monkeypatch.setattr("core.jobs.refresh", lambda *a, **k: [])
    with Store.open(ws) as store:
        with pytest.raises(Cancelled):
            retrain(store, ws, RetrainParams(config=template["config"]), stop_at("inference", games, Cancelled))
        v2 = store.models()[-1]["version"]
        pending = activate(store, ws, v2)
        assert pending.job["params"]["games"] == games[1:]
        handler = signal.getsignal(signal.SIGTERM)
        try:
            assert run_job(store, ws, pending.job["id"])["status"] == "done"
        finally:
            signal.signal(signal.SIGTERM, handler)
        assert active_version(store) == v2
        assert decided(store, v2, games) == decided(store, v1, games) and len(decided(store, v2, games)) == 20


def test_a_finished_job_process_is_not_left_a_zombie(tmp_path):
    """The app starts job processes; once one has ended, the next refresh collects it."""
    from core.jobs import refresh, submit

    ws = Workspace.at(tmp_path / "W").ensure()
    with Store.open(ws) as store:
        job = submit(store, "infer", {"version": "no-such-version"})
        refresh(store, ws)
        done = wait_for_job(store, job["id"], lambda j: j["status"] != "running" and j["pid"], timeout=120)
        assert done["status"] == "failed" and "no-such-version" in done["error"]
        pid = done["pid"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            refresh(store, ws)
            if not Path(f"/proc/{pid}/stat").exists():
                break
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}/stat").exists(), "the finished job's process is still a zombie"


def test_the_retrain_summary_reads_as_a_person_would_write_it():
    from core.jobs import map_change

    assert map_change(0.501501860712387, 0.5620580808, "v1") == "valid mAP@1 0.502 (was 0.562 with v1)"
    assert map_change(0.5, None, None) == "valid mAP@1 0.500 (the first model)"
    assert map_change(None, 0.25, "v3") == "valid mAP@1 n/a (was 0.250 with v3)"
