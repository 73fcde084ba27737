"""The app in a child process for benches and tests: ``running_app(workspace)`` yields its URL.

Shared by bench/ui.py and the tests' browser and HTTP checks, so both start the app exactly
as a user does (``launch.py``) and wait until it answers.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, url: str, log) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "gradio_api/info", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (401 with --auth): it is up
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(Path(log.name).read_text())
            time.sleep(0.5)
    raise RuntimeError("the app did not start in 120 s")


@contextmanager
def running_app(workspace: Path, *extra: str):
    """``launch.py`` serving ``workspace`` (no demo build) in a child process; yields its URL."""
    port = free_port()
    log = open(Path(workspace).parent / f"app-{port}.log", "wb")  # a file: a full pipe would block the app
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--workspace", str(workspace), "--port",
                             str(port), "--no-demo", *extra], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(proc, url, log)
    except BaseException:  # never leave the app running behind a failed start (or Ctrl+C)
        proc.kill()
        proc.wait(timeout=30)
        log.close()
        raise
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
