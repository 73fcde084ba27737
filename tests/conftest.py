"""Shared fixtures: workspaces in tmp folders, tiny synthetic videos, SoccerNet trees."""
from __future__ import annotations

import json
import time
from pathlib import Path

import av
import numpy as np
import pytest

from bench.serve import free_port, running_app  # noqa: F401 (the tests' launcher lives with the benches)
from core.labels import LABEL_FILE, game_time
from core.store import Store
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


#: The five real BAS-2024 label files every developer and CI run has beside the project.
REAL_DATA = ROOT.parent / "shared" / "data" / "soccernet-ball-2024"
REAL_GAMES = 5
REAL_LABELS = 8453


def real_label_files() -> list[Path]:
    files = sorted(REAL_DATA.rglob(LABEL_FILE))
    assert len(files) == REAL_GAMES, f"expected the {REAL_GAMES} real label files under {REAL_DATA}"
    return files


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "ws").ensure()


@pytest.fixture
def store(workspace: Workspace):
    with Store.open(workspace) as s:
        yield s


def make_video(path: Path, frames: int = 50, size: tuple[int, int] = (64, 48), fps: int = 25) -> Path:
    """A tiny H.264 file whose frames differ (a moving bright square)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"g": "5", "preset": "ultrafast"}
        for i in range(frames):
            img = np.full((h, w, 3), 40, np.uint8)
            x = (i * 3) % (w - 8)
            img[10:18, x:x + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def annotation(frame: int, label: str = "PASS", team: str = "home", **extra) -> dict:
    return {"gameTime": game_time(frame), "label": label, "position": str(frame * 40), "team": team,
            "visibility": "visible", **extra}


def make_game(root: Path, url_local: str, annotations: list[dict] | None, *, video_frames: int | None = None,
              raw: str | None = None) -> Path:
    """A SoccerNet game folder under ``root``: a label file (or ``raw`` text) and an optional video."""
    folder = root / url_local
    folder.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        (folder / LABEL_FILE).write_text(raw)
    elif annotations is not None:
        doc = {"UrlLocal": url_local, "UrlYoutube": "", "annotations": annotations}
        (folder / LABEL_FILE).write_text(json.dumps(doc, indent=2))
    if video_frames is not None:
        make_video(folder / "224p.mp4", frames=video_frames)
    return folder


def trained_splits(root: Path, *, minutes: float, seed: int, retrain_epochs: int | None = None,
                   **config: object) -> tuple[Workspace, Path, str]:
    """A workspace with synthetic games a (train), b (valid) and c (test), a tiny config with
    ``config``'s settings (no pretraining), and v1 retrained on a with it (``retrain_epochs``: the
    retrain's override). v1's validation score is cleared, so any later version counts as not
    worse and a retrain goes on to infer and activate. Returns (workspace, config file, v1)."""
    import yaml

    from core.ingest import import_source
    from core.jobs import RetrainParams, retrain
    from core.progress import quiet
    from core.synth import RenderOptions, SynthConfig, generate_game

    synth = SynthConfig(minutes=minutes, seed=seed, render=RenderOptions(160, 90, ball_scale=4), exact=False)
    folders = [generate_game(root / name, synth, index=k) for k, name in enumerate("abc")]
    data = yaml.safe_load((ROOT / "core" / "configs" / "tiny.yaml").read_text())
    data.update(config)
    data["pretrain"]["steps"] = 0
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    ws = Workspace.at(root / "ws").ensure()
    with Store.open(ws) as store:
        for folder, split in zip(folders, ("train", "valid", "test")):
            import_source(store, folder, workspace=ws, split=split)
        params = RetrainParams(config=str(path), epochs=retrain_epochs, infer_games=[])
        v1 = retrain(store, ws, params, quiet)["version"]
        store.set_model_metrics(v1, {**store.model(v1)["metrics"], "valid_map@1": None})
    return ws, path, v1


def wait_for_job(store: Store, job_id: int, pred, timeout: float = 240) -> dict:
    """Poll a job's row until ``pred(job)`` holds (its process runs beside the test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.job(job_id)
        if pred(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stuck: {store.job(job_id)}")


def stop_job(store: Store, workspace: Workspace, job: dict, how: str) -> dict:
    """Stop a running job as a user would (``cancel``: SIGTERM through ``core.jobs.cancel``) or
    as a crash does (``kill``: SIGKILL to its process group); returns its row, checked."""
    import os
    import signal

    from core.jobs import cancel, refresh

    if how == "cancel":
        stopped = cancel(store, job["id"])
        assert stopped["status"] == "cancelled", stopped
        return stopped
    os.killpg(job["pid"], signal.SIGKILL)
    time.sleep(0.5)
    refresh(store, workspace, start=False)
    stopped = store.job(job["id"])
    assert stopped["status"] == "failed" and "killed" in stopped["error"], stopped
    return stopped


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can see whether the test failed
    (the browser tests save a screenshot then)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
