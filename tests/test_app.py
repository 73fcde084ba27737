"""The app's workspace screen through Gradio's own client, against a real server process."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import pytest

from conftest import REAL_DATA, REAL_LABELS, ROOT, annotation, make_game


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--workspace", str(tmp_path / "W"),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "gradio_api/info", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode())
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("the app did not start in 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


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

    path, message = client.predict([], "(labels)", api_name="/export")
    assert "Exported 5 game(s)" in message
    with zipfile.ZipFile(path) as zf:
        assert len(zf.namelist()) == 5
