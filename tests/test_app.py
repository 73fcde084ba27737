"""The app's workspace screen through Gradio's own client, against a real server process."""
from __future__ import annotations

import zipfile

import pytest

from conftest import REAL_DATA, REAL_LABELS, annotation, make_game, running_app


@pytest.fixture
def app_url(tmp_path):
    with running_app(tmp_path / "W") as url:
        yield url


def test_import_table_and_export_through_the_app(app_url, tmp_path):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    table, *_ = client.predict(api_name="/games")
    assert table["data"] in ([], [[]]) or not any(table["data"][0])

    log, table, *_ = client.predict(str(REAL_DATA), None, "", False, "ana", api_name="/import")
    assert "Imported 5 game(s)" in log and f"{REAL_LABELS} labels" in log
    headers = table["headers"]
    rows = [dict(zip(headers, row)) for row in table["data"]]
    assert len(rows) == 5 and sum(int(r["labels"]) for r in rows) == REAL_LABELS

    # A bad file is reported in the log, naming file and entry, and changes nothing.
    make_game(tmp_path / "bad", "l/s/g", [annotation(3, "PAS")])
    log, table, *_ = client.predict(str(tmp_path / "bad"), None, "", False, "", api_name="/import")
    assert "unknown label 'PAS'" in log and "annotations[0]" in log
    assert len(table["data"]) == 5

    path, message = client.predict([], "(labels)", False, api_name="/export")
    assert "Exported 5 game(s)" in message
    with zipfile.ZipFile(path) as zf:
        assert len(zf.namelist()) == 5


def test_videos_are_served_by_game_id_with_range_support_and_nothing_else_is(tmp_path):
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    from core.ingest import import_source
    from core.store import Store
    from core.workspace import Workspace

    make_game(tmp_path / "src", "l/s/g", [annotation(3)], video_frames=40)
    (tmp_path / "src" / "l" / "s" / "g" / "secret.txt").write_text("not for the browser")
    ws = Workspace.at(tmp_path / "W").ensure()
    with Store.open(ws) as store:
        import_source(store, tmp_path / "src", workspace=ws, split="test")
        video = store.games()[0]["video_path"]
    with running_app(ws.root) as url:
        req = urllib.request.Request(f"{url}ballspot/video/1", headers={"Range": "bytes=0-99"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 206 and len(resp.read()) == 100
        for other in (video, ws.db_path, tmp_path / "src" / "l" / "s" / "g" / "secret.txt",
                      tmp_path / "src" / "l" / "s" / "g" / "Labels-ball.json"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{url}gradio_api/file={quote(str(other))}", timeout=10)
            assert err.value.code in (403, 404), other


def test_a_non_local_host_needs_a_login():
    import subprocess
    import sys

    from conftest import ROOT
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--host", "0.0.0.0", "--no-demo"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0 and "--auth" in done.stderr


def test_export_of_one_game_as_its_json_file(tmp_path):
    import json

    from gradio_client import Client

    from core.ingest import import_source
    from core.store import Store
    from core.workspace import Workspace

    make_game(tmp_path / "src", "l/s/g", [annotation(3), annotation(9, "GOAL", "away")])
    ws = Workspace.at(tmp_path / "W").ensure()
    with Store.open(ws) as store:
        import_source(store, tmp_path / "src", workspace=ws, split="test")
    with running_app(ws.root) as url:
        path, message = Client(url, verbose=False).predict(["l/s/g"], "(labels)", True, api_name="/export")
    assert path.endswith("Labels-ball.json") and "Exported" in message
    doc = json.loads(open(path).read())
    assert doc["UrlLocal"] == "l/s/g" and [a["label"] for a in doc["annotations"]] == ["PASS", "GOAL"]


def test_a_start_interrupted_before_the_app_answers_leaves_no_app_running(tmp_path, monkeypatch):
    """Benches and tests start the app in a child process; Ctrl+C (or any failure) while it is
    still starting must not leave it serving the workspace in the background."""
    import subprocess

    import bench.serve

    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.serve.subprocess, "Popen", popen)
    monkeypatch.setattr(bench.serve, "_wait_until_up", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with running_app(tmp_path / "W"):
            pass
    assert len(started) == 1 and started[0].poll() is not None
