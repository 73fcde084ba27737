"""Background jobs (retrain, re-infer): queued in the store, each run by its own process.

Why processes: a job outlives the page that started it (and a reload), a crash or a kill of
the job cannot take the app down, and cancelling is a signal. The store's ``jobs`` table is
the registry every view polls. One job runs at a time (they share the GPU); the others wait
in the queue. ``refresh`` (called by the app's timer and by ``launch.py jobs``) notices dead
processes, marks their jobs failed, and starts the next queued job.

A job's process runs ``launch.py job-run ID``: the same ``run_job`` a CLI command runs in the
foreground. Training registers a model only at its very end, so a failed, killed or cancelled
run leaves the previous model active and the store intact.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.errors import BallspotError
from core.store import Store, now
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("retrain", "infer")


class Cancelled(BallspotError):
    """The user cancelled the job."""


@dataclass
class RetrainParams:
    config: str = str(ROOT / "core" / "configs" / "cpu_small.yaml")
    epochs: int | None = None
    gpus: int = 1
    #: Games to train on (url_local); None: the config's splits.
    games: list[str] | None = None
    #: After training: infer with the new version on these games (None: the games the
    #: previous version has predictions on), if it becomes active.
    infer_games: list[str] | None = None
    #: Make the new version active without asking only when it is not worse.
    auto_activate: bool = True
    author: str | None = None


@dataclass
class InferParams:
    version: str = ""
    games: list[str] = field(default_factory=list)
    tta: bool = True
    #: Carry review decisions over from this version's predictions (None: the active one).
    carry_from: str | None = None
    author: str | None = None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child of this process is dead too
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def submit(store: Store, kind: str, params: dict) -> dict:
    if kind not in KINDS:
        raise BallspotError(f"unknown job kind {kind!r} (known: {', '.join(KINDS)})")
    try:
        (RetrainParams if kind == "retrain" else InferParams)(**params)  # refuse unknown options now
    except TypeError as exc:
        raise BallspotError(f"{kind} job: {exc}") from None
    return store.create_job(kind, params)


def refresh(store: Store, workspace: Workspace, *, start: bool = True) -> list[dict]:
    """Mark running jobs whose process is gone, start the next queued one; returns the jobs."""
    running = False
    for job in store.jobs(limit=200):
        if job["status"] == "running":
            if _alive(job["pid"]) or (job["pid"] is None and job["started"] is None):
                running = True  # alive, or being spawned right now
            else:
                store.transition_job(job["id"], ["running"], status="failed", finished=now(),
                                     error=job["error"] or "the job's process ended without finishing (killed?)")
    if start and not running:
        queued = [j for j in store.jobs(limit=200) if j["status"] == "queued"]
        if queued:
            spawn(store, workspace, queued[-1]["id"])  # the oldest
    return store.jobs()


def spawn(store: Store, workspace: Workspace, job_id: int) -> dict | None:
    """Start a queued job in its own process (its own session: it outlives the caller). The job
    is reserved first, atomically, so two callers never start it twice."""
    if store.transition_job(job_id, ["queued"], status="running", message="starting") is None:
        return None
    log = workspace.runs_dir / f"job-{job_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--workspace", str(workspace.root),
                                 "job-run", str(job_id)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)
    return store.transition_job(job_id, ["running", "cancelled"], pid=proc.pid, started=now(), log_path=str(log))


def cancel(store: Store, job_id: int, grace_s: float = 10.0) -> dict:
    """Cancel a queued job, or stop a running one (SIGTERM to its process group, then SIGKILL)."""
    if store.transition_job(job_id, ["queued"], status="cancelled", finished=now(),
                            message="cancelled before it started"):
        return store.job(job_id)
    job = store.transition_job(job_id, ["running"], status="cancelled", finished=now(), message="cancelled")
    if job is None:
        return store.job(job_id)  # finished meanwhile: nothing to cancel
    if job["pid"] and _alive(job["pid"]):
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace_s
        while _alive(job["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(job["pid"]):
            os.killpg(job["pid"], signal.SIGKILL)
    return store.job(job_id)


def log_tail(job: dict, lines: int = 40) -> str:
    if not job["log_path"] or not Path(job["log_path"]).is_file():
        return ""
    return "\n".join(Path(job["log_path"]).read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- running a job


Report = Callable[[float, str], None]


def run_job(store: Store, workspace: Workspace, job_id: int) -> dict:
    """Run one job in this process (``launch.py job-run``): progress into the jobs table.
    Every status change is conditional on the job still running, so a cancel always wins."""
    store.transition_job(job_id, ["queued"], status="running", pid=os.getpid(), started=now())
    if store.job(job_id)["status"] != "running":
        return store.job(job_id)

    def on_term(signum, frame):  # cancel: stop at once; nothing half-registered can exist
        raise Cancelled("cancelled")

    signal.signal(signal.SIGTERM, on_term)

    def report(fraction: float, message: str) -> None:
        if store.transition_job(job_id, ["running"], progress=round(min(max(fraction, 0.0), 1.0), 4),
                                message=message) is None:
            raise Cancelled("cancelled")
        print(f"{time.strftime('%H:%M:%S')} {fraction:6.1%} {message}", flush=True)

    params = json.loads(store.job(job_id)["params"] or "{}")
    kind = store.job(job_id)["kind"]
    try:
        if kind == "retrain":
            result = retrain(store, workspace, RetrainParams(**params), report, job_id=job_id)
        else:
            result = reinfer(store, workspace, InferParams(**params), report)
    except Cancelled:
        print("cancelled", flush=True)
        store.transition_job(job_id, ["running"], status="cancelled", finished=now(), message="cancelled")
        return store.job(job_id)
    except Exception as exc:  # the job's outcome is its record: keep the message, then stop
        traceback.print_exc()
        store.transition_job(job_id, ["running"], status="failed", finished=now(),
                             error=f"{type(exc).__name__}: {exc}", message="failed")
        return store.job(job_id)
    store.transition_job(job_id, ["running"], status="done", progress=1.0, finished=now(), result=result,
                         message=result.get("summary", "done"))
    return store.job(job_id)


def retrain(store: Store, workspace: Workspace, params: RetrainParams, report: Report,
            job_id: int | None = None) -> dict:
    """Fine-tune the active model on all labels (rejected predictions as hard negatives),
    register the new version, make it active when it is not worse, then re-infer."""
    from core.runner import resolve_model
    from core.train import TrainConfig, train
    from core.versions import active_version, compare, not_worse, set_active, unscored_games

    config = TrainConfig.load(params.config, epochs=params.epochs)
    if params.games:
        chosen = [store.game(g) for g in params.games]  # unknown names fail here, clearly
        config.train_splits = sorted({g["split"] for g in chosen if g["split"]})
        config.train_games = [g["url_local"] for g in chosen]
    previous = active_version(store)
    init = None
    if previous:
        _, folder = resolve_model(store, previous)
        init = folder
    out = workspace.runs_dir / (f"retrain-job-{job_id}" if job_id else f"retrain-{time.strftime('%Y%m%d-%H%M%S')}")
    report(0.0, f"training from {previous or 'scratch'} with {Path(params.config).name}")
    if params.gpus > 1:
        row = _torchrun(store, workspace, params, config, out, previous, report)
    else:
        def progress(r: dict) -> None:
            if r.get("phase") == "pretrain":
                if "step" in r:
                    report(0.1 * r["step"] / r["steps"], f"pretraining the encoder {r['step']}/{r['steps']}")
                return
            if r.get("phase") == "track":
                report(0.1, r["skipped"] if "skipped" in r else
                       f"the track classifier on every frame: step {r['step']}/{r['steps']}, loss {r['loss']:.4f}"
                       if "step" in r else f"the ball's track of the training games: {r['game']}/{r['games']}")
                return
            done = (r["epoch"] - 1 + (r.get("step", r.get("steps", 1)) / max(1, r.get("steps", 1))
                                      if "valid_map" not in r else r["epoch"])) / config.epochs
            if "valid_map" in r:
                vm = r["valid_map"]
                report(0.1 + 0.8 * done, f"epoch {r['epoch']}/{config.epochs}: loss {r['loss']:.4f}, "
                                         f"valid mAP@1 {'-' if vm is None else f'{vm:.4f}'}")
            else:
                report(0.1 + 0.8 * done, f"epoch {r['epoch']}/{config.epochs} step {r['step']}/{r['steps']} "
                                         f"loss {r['loss']:.4f}")

        row = train(config, store, workspace, out=out, init=init, parent=previous, progress=progress)
    version = row["version"]
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # registered: finish activating, do not stop half-way
    comparison = compare(store, version, previous)
    activated = params.auto_activate and not_worse(store, version, previous)
    if activated:
        set_active(store, version)
    summary = (f"{version}: valid mAP@1 {comparison['map_new']} (was {comparison['map_old']} with {previous}); "
               + ("now active" if activated else "not activated: confirm it in Models"))
    result = {"version": version, "previous": previous, "activated": activated, "comparison": comparison,
              "run": str(out), "summary": summary}
    if activated:
        games = params.infer_games
        if games is None:
            games = unscored_games(store, previous, version)
        if games:
            sub = reinfer(store, workspace, InferParams(version=version, games=games, carry_from=previous,
                                                        author=params.author),
                          lambda f, m: report(0.9 + 0.1 * f, m))
            result["inference"] = sub
            summary += f"; {sub['summary']}"
            result["summary"] = summary
    report(1.0, summary)
    return result


def _torchrun(store: Store, workspace: Workspace, params: RetrainParams, config, out: Path, previous: str | None,
              report: Report) -> dict:
    """Several GPUs: the same training under torchrun; rank 0 registers the model."""
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", str(params.gpus),
           str(ROOT / "launch.py"), "train", "--workspace", str(workspace.root), "--config", params.config,
           "--out", str(out)]
    if params.epochs:
        cmd += ["--epochs", str(params.epochs)]
    if previous:
        cmd += ["--init", previous]
    report(0.05, f"torchrun on {params.gpus} GPUs")
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode != 0:
        raise BallspotError(f"torchrun training failed (exit {done.returncode}); see the log")
    folder = (out / "model").resolve()
    rows = [m for m in store.models() if m["path"] and Path(m["path"]).resolve() == folder]
    if not rows:
        raise BallspotError(f"{out}: training ended without registering a model")
    return rows[-1]


def reinfer(store: Store, workspace: Workspace, params: InferParams, report: Report) -> dict:
    """TTA inference with a version on games; decisions carry over from the previous version."""
    from core.infer import InferConfig
    from core.runner import infer_games, resolve_model
    from core.versions import active_version, carry_over, decisions

    version, folder = resolve_model(store, params.version)
    source = params.carry_from if params.carry_from is not None else active_version(store)
    games = params.games or [g["url_local"] for g in store.games() if g["video_path"]]
    # Snapshot the decisions first: re-running a version replaces its own predictions.
    before = {name: decisions(store, name, source) for name in games} if source else {}
    report(0.0, f"inference with {version} on {len(games)} game(s)")
    done = infer_games(store, workspace, version, folder, games, InferConfig(tta=params.tta),
                       progress=lambda d, n, name: report(0.95 * d / max(n, 1), f"inference {name}"))
    carried = 0
    for name, _ in done:
        if source:  # the same version re-run too: its old decisions were snapshotted first
            carried += carry_over(store, name, before.get(name, []), version, reviewer=params.author, source=source)
    summary = (f"{version}: {sum(n for _, n in done)} predictions on {len(done)} game(s)"
               + (f", {carried} review decisions carried over from {source}" if carried else ""))
    return {"version": version, "games": [name for name, _ in done], "carried": carried, "summary": summary}
