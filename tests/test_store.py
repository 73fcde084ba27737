"""The store: operations, conflicts, undo/redo that survives a restart, concurrency, durability."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, annotation, make_game
from core.errors import BallspotError, ConflictError, NotFoundError, SchemaError
from core.ingest import import_source
from core.store import SCHEMA_VERSION, Store

GAME = "league_x/2024-2025/2024-08-01 - Alpha - Beta"


@pytest.fixture
def game(store, workspace, tmp_path):
    make_game(tmp_path / "src", GAME, [annotation(5), annotation(9, "SHOT", "away")], video_frames=100)
    import_source(store, tmp_path / "src", workspace=workspace)
    return GAME


def state(store: Store) -> list[tuple]:
    """What a reviewer sees: labels and prediction decisions, without bookkeeping columns."""
    g = store.game(GAME)["id"]
    labels = [(r["id"], r["frame"], r["label"], r["team"], r["visibility"], r["source"]) for r in store.labels(g)]
    preds = [(r["id"], r["status"], r["reviewer"]) for r in store.predictions(g)]
    return labels + preds


def test_schema_is_versioned_and_pragmas_are_set(store):
    assert store.schema_version == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = set(store.db.table_names())
    assert {"games", "labels", "predictions", "models", "jobs", "actions", "changes"} <= tables


def test_newer_schema_is_refused(workspace):
    with Store.open(workspace) as s:
        s.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match="newer"):
        Store.open(workspace)


def test_add_update_delete_with_revisions(store, game):
    lab = store.add_label(game, 50, "HEADER", "away", author="ana")
    assert (lab["revision"], lab["source"], lab["author"]) == (1, "human", "ana")
    moved = store.update_label(lab["id"], 1, frame=51, author="ben")
    assert (moved["frame"], moved["revision"], moved["author"]) == (51, 2, "ben")
    with pytest.raises(ConflictError, match="revision 1, now 2") as info:
        store.update_label(lab["id"], 1, team="home")
    assert info.value.current["frame"] == 51
    assert store.label(lab["id"])["team"] == "away"  # the stale edit overwrote nothing
    with pytest.raises(ConflictError):
        store.delete_label(lab["id"], 1)
    store.delete_label(lab["id"], 2, author="ana")
    with pytest.raises(NotFoundError):
        store.label(lab["id"])


def test_add_refuses_duplicates_and_bad_values(store, game):
    with pytest.raises(ConflictError, match="already exists at frame 5"):
        store.add_label(game, 5, "PASS", "home")
    with pytest.raises(BallspotError, match="unknown label"):
        store.add_label(game, 7, "PAS", "home")
    with pytest.raises(BallspotError, match="unknown team"):
        store.add_label(game, 7, "PASS", "nobody")
    with pytest.raises(BallspotError, match="past the end of the video"):
        store.add_label(game, 100, "PASS", "home")
    with pytest.raises(BallspotError, match="not a frame number"):
        store.add_label(game, -1, "PASS", "home")


def test_history_is_append_only(store, game):
    store.add_label(game, 50, "HEADER", "away")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("DELETE FROM changes")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("UPDATE changes SET after = NULL")
    ops = [c["op"] for a in store.history(game) for c in a["changes"]]
    assert ops[0] == "insert"


def test_accept_and_reject(store, game):
    store.register_model("v1")
    store.add_predictions("v1", game, [(20, "CROSS", "home", 0.8), (30, "OUT", "away", 0.4), (5, "PASS", "home", 0.9)])
    p_pass, p_cross, p_out = store.predictions(game, "v1")[:3]
    accepted = store.accept(p_cross["id"], reviewer="ana", base_revision=1)
    assert accepted["status"] == "accepted" and accepted["reviewer"] == "ana"
    made = [r for r in store.labels(game) if r["prediction_id"] == p_cross["id"]]
    assert len(made) == 1 and made[0]["source"] == "model" and made[0]["frame"] == 20
    # Accepting a prediction that matches an existing label links to it instead of duplicating.
    store.accept(p_pass["id"], reviewer="ana")
    assert len([r for r in store.labels(game) if r["frame"] == 5]) == 1
    with pytest.raises(ConflictError):
        store.reject(p_cross["id"], reviewer="ben", base_revision=1)  # stale: it was accepted meanwhile
    store.reject(p_cross["id"], reviewer="ben", base_revision=2)
    assert not [r for r in store.labels(game) if r["frame"] == 20]
    assert store.reject(p_out["id"], reviewer="ben")["status"] == "rejected"


def test_carried_decisions_are_checked_against_their_own_game_and_written_whole(store, game, workspace, tmp_path):
    """A carry is one operation on one game: a prediction of another game in it (whose frames the
    game's video length would wrongly check) refuses the whole carry, and nothing is written."""
    make_game(tmp_path / "other", "league_x/2024-2025/2024-08-02 - Gamma - Delta", [annotation(5)], video_frames=400)
    import_source(store, tmp_path / "other", workspace=workspace)
    store.register_model("v1")
    store.add_predictions("v1", game, [(20, "CROSS", "home", 0.8)])
    store.add_predictions("v1", "league_x/2024-2025/2024-08-02 - Gamma - Delta", [(300, "OUT", "away", 0.4)])
    mine, theirs = store.predictions(game, "v1")[0], store.predictions(
        "league_x/2024-2025/2024-08-02 - Gamma - Delta", "v1")[0]
    before = state(store)
    with pytest.raises(BallspotError, match="predictions of league_x/2024-2025/2024-08-01 - Alpha - Beta only"):
        store.carry_decisions(game, [(mine["id"], "rejected", "ana", {}), (theirs["id"], "accepted", "ana", {})],
                              "carry")
    assert state(store) == before
    assert store.carry_decisions(game, [(mine["id"], "accepted", "ana", {"frame": 21})], "carry") == 1
    made = [(r["frame"], r["source"]) for r in store.labels(game) if r["prediction_id"] == mine["id"]]
    assert made == [(21, "model")]


def test_undo_redo_survive_reopening_the_store(workspace, tmp_path):
    make_game(tmp_path / "src", GAME, [annotation(5), annotation(9, "SHOT", "away")], video_frames=100)
    states = []
    with Store.open(workspace) as s:
        import_source(s, tmp_path / "src", workspace=workspace)
        s.register_model("v1")
        s.add_predictions("v1", GAME, [(40, "CROSS", "home", 0.7), (60, "OUT", "away", 0.3)])
        states.append(state(s))
        lab = s.add_label(GAME, 50, "HEADER", "away", author="ana")
        states.append(state(s))
        s.update_label(lab["id"], 1, frame=52, team="home", author="ana")
        states.append(state(s))
        first = s.labels(GAME)[0]
        s.delete_label(first["id"], first["revision"], author="ana")
        states.append(state(s))
        p1, p2 = s.predictions(GAME, "v1")
        s.accept(p1["id"], reviewer="ana")
        states.append(state(s))
        s.reject(p2["id"], reviewer="ana")
        states.append(state(s))

    # Undo everything, one reopen of the store per step: each step restores the state before.
    for expected in reversed(states[:-1]):
        with Store.open(workspace) as s:
            assert s.undo(GAME) is not None
            assert state(s) == expected
            assert s.integrity_check() == "ok"
    with Store.open(workspace) as s:
        assert s.undo(GAME) is None, "undo stops at the import"
    # Redo everything, again across reopens.
    for expected in states[1:]:
        with Store.open(workspace) as s:
            assert s.redo(GAME) is not None
            assert state(s) == expected
    with Store.open(workspace) as s:
        assert s.redo(GAME) is None


def test_new_edit_clears_redo_and_undo_refuses_after_foreign_change(store, game):
    lab = store.add_label(game, 50, "HEADER", "away", author="ana")
    store.undo(game)
    store.add_label(game, 70, "GOAL", "home", author="ana")
    assert store.redo(game) is None, "a new edit after an undo drops the redo"

    goal = [r for r in store.labels(game) if r["label"] == "GOAL"][0]
    store.update_label(goal["id"], goal["revision"], frame=71, author="ben")
    before = store.dump()
    # Ana's undo is scoped to her own edits: her GOAL was changed by Ben since, so it refuses.
    with pytest.raises(ConflictError, match="was changed after it"):
        store.undo(game, author="ana")
    assert store.dump() == before
    assert lab["id"] not in [r["id"] for r in store.labels(game)]


def test_undo_restores_revision_monotonically(store, game):
    lab = store.add_label(game, 50, "HEADER", "away")
    store.update_label(lab["id"], 1, frame=51)
    store.undo(game)
    now = store.label(lab["id"])
    assert now["frame"] == 50 and now["revision"] == 3
    with pytest.raises(ConflictError):
        store.update_label(lab["id"], 2, frame=60)  # the tab that saw revision 2 is stale


def test_concurrent_writers_from_two_connections(workspace, tmp_path):
    """Two tabs (two connections) editing at once: every edit lands, conflicts are detected."""
    make_game(tmp_path / "src", GAME, [annotation(5)], video_frames=4000)
    with Store.open(workspace) as s:
        import_source(s, tmp_path / "src", workspace=workspace)
    errors: list[Exception] = []

    def writer(offset: int) -> None:
        try:
            with Store.open(workspace) as s:
                for i in range(60):
                    s.add_label(GAME, 100 + 2 * i + offset, "PASS", "home", author=f"tab{offset}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Store.open(workspace) as s:
        assert len(s.labels(GAME)) == 121
        lab = s.labels(GAME)[0]
        with Store.open(workspace) as other:
            other.update_label(lab["id"], lab["revision"], frame=6)
        with pytest.raises(ConflictError):
            s.update_label(lab["id"], lab["revision"], frame=7)


_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from core.store import Store
s = Store(sys.argv[2])
for i in range(100000):
    row = s.add_label(sys.argv[3], 10 + i, "DRIVE", "away", author="child")
    print(row["id"], flush=True)
"""


def test_sigkill_mid_writes_loses_nothing_that_returned(workspace, tmp_path):
    make_game(tmp_path / "src", GAME, [annotation(5)])
    with Store.open(workspace) as s:
        import_source(s, tmp_path / "src", workspace=workspace)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(ROOT), str(workspace.db_path), GAME],
                             stdout=subprocess.PIPE, text=True)
    returned = []
    deadline = time.monotonic() + 60
    while len(returned) < 150 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        returned.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert len(returned) >= 150, "the child wrote too little before being killed"
    with Store.open(workspace) as s:
        assert s.integrity_check() == "ok"
        ids = {r["id"] for r in s.labels(GAME)}
        assert set(returned) <= ids
        # Every surviving label has its history: no half-written operation.
        logged = {c["row_id"] for c in
                  s.conn.execute("SELECT row_id FROM changes WHERE tbl = 'labels' AND op = 'insert'")}
        assert ids <= logged


def test_label_fingerprint_changes_with_any_edit(store, game):
    a = store.label_fingerprint()
    lab = store.add_label(game, 50, "HEADER", "away")
    b = store.label_fingerprint()
    store.update_label(lab["id"], 1, team="home")
    c = store.label_fingerprint()
    store.undo(game)
    store.undo(game)
    assert len({a, b, c}) == 3 and store.label_fingerprint() == a


def test_models_and_jobs(store, game):
    store.register_model("v1", config={"epochs": 1}, label_fingerprint=store.label_fingerprint())
    store.register_model("v2", parent="v1", metrics={"mAP@1": 0.5})
    assert store.model("v2")["metrics"] == {"mAP@1": 0.5}
    with pytest.raises(ConflictError):
        store.register_model("v1")
    with pytest.raises(NotFoundError):
        store.register_model("v3", parent="nope")
    assert store.model("v1")["config"] == {"epochs": 1} and store.models()[1]["metrics"] == {"mAP@1": 0.5}
    job = store.create_job("train", {"epochs": 2})
    assert job["status"] == "queued" and job["params"] == {"epochs": 2} and job["result"] is None
    done = store.transition_job(job["id"], ["queued"], status="done", progress=1.0, result={"version": "v2"})
    assert done["status"] == "done" and done["result"] == {"version": "v2"}
    assert store.jobs()[0]["result"] == {"version": "v2"}
    assert store.transition_job(job["id"], ["queued"], status="running") is None  # no longer queued
    with pytest.raises(sqlite3.IntegrityError):
        store.transition_job(job["id"], ["done"], status="exploded")
    with pytest.raises(BallspotError, match="no field params"):
        store.transition_job(job["id"], ["done"], params={})


def test_json_columns_come_back_decoded_and_the_change_log_keeps_rows_as_stored(store, workspace, tmp_path):
    """A label's extra keys (kept from its file) read as a dict everywhere rows are handed out;
    the change log holds the row as stored, which undo compares and restores."""
    make_game(tmp_path / "x", "a/b/c", [annotation(5, comment="kept")])
    import_source(store, tmp_path / "x", workspace=workspace)
    lab = store.labels("a/b/c")[0]
    assert lab["extra"] == {"comment": "kept"} and store.label(lab["id"])["extra"] == {"comment": "kept"}
    cursor = store.change_cursor()
    assert store.update_label(lab["id"], 1, frame=6)["extra"] == {"comment": "kept"}
    with pytest.raises(ConflictError) as info:
        store.update_label(lab["id"], 1, frame=7)
    assert info.value.current["extra"] == {"comment": "kept"}
    latest, _ = store.changes_since("a/b/c", cursor)
    assert latest[("labels", lab["id"])]["extra"] == {"comment": "kept"}
    logged = store.history("a/b/c", limit=1)[0]["changes"][0]
    assert json.loads(logged["after"])["extra"] == '{"comment": "kept"}'
    store.undo("a/b/c")
    assert store.label(lab["id"])["frame"] == 5 and store.label(lab["id"])["extra"] == {"comment": "kept"}
    store.redo("a/b/c")
    assert store.label(lab["id"])["frame"] == 6


def test_importing_the_store_does_not_import_the_video_decoders():
    """The store only reads a VideoInfo's fields: opening a workspace's database (the CLI, a
    job) must not pay for loading PyAV and OpenCV."""
    code = "import sys, core.store; print(sorted(m for m in ('av', 'cv2', 'core.video') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_failed_operation_inside_a_transaction_leaves_no_trace(store, game):
    """Nested operations are savepoints: a refused add inside a larger unit writes nothing,
    so undo finds the real last edit, not an empty phantom."""
    with store.transaction():
        store.add_label(game, 60, "OUT", "home", author="ana")
        with pytest.raises(ConflictError):
            store.add_label(game, 5, "PASS", "home", author="ana")  # a duplicate
    assert store.undo(game)["summary"].startswith("add OUT")
    assert 60 not in [r["frame"] for r in store.labels(game)]


def test_import_is_a_barrier_for_undo_and_redo_of_everyone(store, workspace, game, tmp_path):
    goal = store.add_label(game, 50, "GOAL", "home", author="ana")
    store.undo(game)
    header = store.add_label(game, 60, "HEADER", "away", author="ana")
    store.delete_label(header["id"], 1, author="ana")
    make_game(tmp_path / "v2", GAME, [annotation(7)])
    import_source(store, tmp_path / "v2", workspace=workspace, replace=True, author="importer")
    assert store.undo(game, author="ana") is None  # would resurrect the HEADER into the new import
    assert store.redo(game) is None and store.redo(game, author="ana") is None
    assert [r["frame"] for r in store.labels(game)] == [7]
    assert goal["id"] not in [r["id"] for r in store.labels(game)]


def test_scoped_redo_finds_an_unscoped_undo(store, game):
    store.add_label(game, 50, "GOAL", "home", author="ana")
    undo = store.undo(game)  # pressed without naming an author
    assert undo["author"] == "ana"
    assert store.redo(game, author="ana") is not None
    assert 50 in [r["frame"] for r in store.labels(game)]


def test_readers_in_other_threads_never_see_half_a_game(workspace):
    """The app's handlers share one store across threads: a reader sees each game of an
    import whole or not at all (an import writes game by game, so others need not wait for
    all of it)."""
    from conftest import REAL_DATA, REAL_LABELS

    store = Store.open(workspace)
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(len(store._query("SELECT id FROM labels")))

    t = threading.Thread(target=reader)
    t.start()
    try:
        report = import_source(store, REAL_DATA, workspace=workspace)
    finally:
        stop.set()
        t.join()
    whole, total = {0}, 0
    for g in report.games:  # written in this order
        total += len(g.annotations)
        whole.add(total)
    assert total == REAL_LABELS and len(whole) == 6
    assert seen <= whole


def test_rerunning_predictions_unlinks_accepted_labels_through_the_history(store, game):
    store.register_model("v1")
    store.add_predictions("v1", game, [(20, "CROSS", "home", 0.8)])
    p = store.predictions(game, "v1")[0]
    store.accept(p["id"], reviewer="ana")
    store.add_predictions("v1", game, [(21, "CROSS", "home", 0.7)])  # a re-run replaces them
    lab = [r for r in store.labels(game) if r["frame"] == 20][0]
    assert lab["prediction_id"] is None and lab["revision"] == 2
    last = store.conn.execute("SELECT after FROM changes WHERE tbl = 'labels' AND row_id = ? ORDER BY id DESC",
                              (lab["id"],)).fetchone()[0]
    assert json.loads(last)["prediction_id"] is None


def test_video_without_a_length_in_its_header(store, workspace, tmp_path):
    """A streamed MKV has no duration in its header: the probe reads packet times instead."""
    import av
    import numpy as np

    class Sink:
        def __init__(self):
            self.buf = bytearray()

        def write(self, b):
            self.buf += bytes(b)
            return len(b)

        def seekable(self):
            return False

    sink = Sink()
    with av.open(sink, "w", format="matroska") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for i in range(100):
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    folder = make_game(tmp_path / "src", GAME, [annotation(90)])
    (folder / "224p.mkv").write_bytes(sink.buf)
    import_source(store, folder, workspace=workspace)
    g = store.game(GAME)
    assert g["frame_count"] == 100 and abs(g["duration_s"] - 4.0) < 0.05
