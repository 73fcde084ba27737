"""Background jobs (retrain, re-infer): queued in the store, each run by its own process.

Why processes: a job outlives the page that started it (and a reload), a crash or a kill of
the job cannot take the app down, and cancelling is a signal. The store's ``jobs`` table is
the registry every view polls. One job runs at a time (they share the GPU); the others wait
in the queue. ``refresh`` (called by the app's timer and by ``launch.py jobs``) notices dead
processes, marks their jobs failed, and starts the next queued job.

A job's process runs ``python -m core.jobs WORKSPACE ID``: the same ``run_job`` a CLI command runs in the
foreground. Training registers a model only at its very end, and never as the active one; a
new version becomes active only in the job's last write, one transaction that also carries the
review decisions over (``versions.hand_over``). So a failed, killed or cancelled run, at any
phase, leaves the previous model active with its predictions and decisions; the new version may
stay registered, inactive, with part of its predictions.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from core.errors import BallspotError
from core.progress import Progress, Step, at, part
from core.store import Store, now
from core.workspace import Workspace

if TYPE_CHECKING:
    from core.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
#: The training configs the app offers, and the one a retrain uses unless told otherwise.
CONFIGS = ROOT / "core" / "configs"
DEFAULT_RETRAIN_CONFIG = CONFIGS / "cpu_small.yaml"
KINDS = ("retrain", "infer")


class Cancelled(BallspotError):
    """The user cancelled the job."""


@dataclass
class RetrainParams:
    config: str = str(DEFAULT_RETRAIN_CONFIG)
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
    #: The game under review (url_local; the app passes ``review_focus``): inferred first, and
    #: inferred even if the previous version never scored it. None: the games in their order.
    focus_game: str | None = None


@dataclass
class InferParams:
    version: str = ""
    games: list[str] = field(default_factory=list)
    tta: bool = True
    #: Carry review decisions over from this version's predictions (None: the active one).
    carry_from: str | None = None
    #: Make ``version`` the active model when the inference and the carry-over are done (in
    #: the same transaction as the carry-over), if ``carry_from`` is still active then.
    activate: bool = False
    author: str | None = None
    #: Worker processes, one per GPU (``core.shard``); 1: infer in the job's own process.
    gpus: int = 1


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


#: Job processes this process started and has not yet waited for (see ``_reap``).
_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap() -> None:
    """Collect the exit status of finished job processes this process started, so none stays
    a zombie (``<defunct>``) under the app once its job is over."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def refresh(store: Store, workspace: Workspace, *, start: bool = True) -> list[dict]:
    """Mark running jobs whose process is gone, start the next queued one; returns the jobs."""
    _reap()
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
    log = workspace.job_log(job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "core.jobs", str(workspace.root), str(job_id)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    _CHILDREN[proc.pid] = proc
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


#: A job's progress: each step goes to its row and its log (``run_job``).
Report = Progress


def _on_term(signum, frame) -> None:
    """A job process's SIGTERM (``cancel``): stop where it is; the store rolls back what the
    current transaction did, and nothing is active that was not before (see ``_last_write``)."""
    raise Cancelled("cancelled")


@contextmanager
def _last_write(store: Store, report: Report, message: str) -> Iterator[None]:
    """A job's last write: one transaction, and the point past which a cancel changes nothing.

    Inside it the job is checked to be still running (``report`` raises ``Cancelled``
    otherwise): a cancel that came first wins and the transaction rolls back. From that check to
    the commit SIGTERM is held, and afterwards ignored: the job's work is in the store, so it ends
    as done (``run_job``), not as a cancel that undid nothing. A cancel meanwhile waits for the
    store's write lock, then finds the job finished. Signals are touched only in a job's process
    (``run_job`` installed ``_on_term``); elsewhere it is just the transaction."""
    ours = signal.getsignal(signal.SIGTERM) is _on_term
    if ours:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with store.transaction():
            report(at(0.99, message))
            yield
        if ours:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        if ours:  # a SIGTERM held until here: ignored if committed, else Cancelled now
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def run_job(store: Store, workspace: Workspace, job_id: int) -> dict:
    """Run one job in this process (``python -m core.jobs``): progress into the jobs table.
    Every status change is conditional on the job still running, so a cancel wins, up to the
    job's last write (``_last_write``); a job that got past it is done even if a cancel came."""
    store.transition_job(job_id, ["queued"], status="running", pid=os.getpid(), started=now())
    if store.job(job_id)["status"] != "running":
        return store.job(job_id)
    signal.signal(signal.SIGTERM, _on_term)

    def report(step: Step) -> None:
        if store.transition_job(job_id, ["running"], progress=round(step.fraction, 4), message=step.text) is None:
            raise Cancelled("cancelled")
        print(f"{time.strftime('%H:%M:%S')} {step.fraction:6.1%} {step.text}", flush=True)

    params = store.job(job_id)["params"]
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
    store.transition_job(job_id, ["running", "cancelled"], status="done", progress=1.0, finished=now(),
                         result=result, message=result.get("summary", "done"))
    return store.job(job_id)


#: A retrain from the active model fine-tunes what it already knows: on one device, unless the
#: user asks for epochs, at most this schedule instead of the config's from-scratch length
#: (a config asking for less keeps its own), at a tenth of cpu_small's rate: at a third, the
#: demo's retrain on about a minute of labels forgot what the demo model knew (the README has
#: the schedules measured). The ball track's branch stays as the model has it (one step at rate
#: 0, after which training keeps it fixed): retrained on a few labelled minutes it forgot the
#: rare classes the model had learnt from many more. The weights' average forgets faster than
#: cpu_small's (0.995 over a fine-tune's few steps would keep most of the starting weights).
#: bench/active.py's rounds are this schedule; the README has what it gives and the wait.
FINE_TUNE = {"epochs": 3, "samples_per_epoch": 400, "track_steps": 1, "track_lr": 0.0, "lr": 0.0003, "ema": 0.95}


def fine_tune(config: TrainConfig) -> TrainConfig:
    """``config`` with at most the ``FINE_TUNE`` schedule."""
    for key, most in FINE_TUNE.items():
        setattr(config, key, min(getattr(config, key), most))
    return config


def review_focus(store: Store) -> str | None:
    """The game of the latest review edit (accept, reject, add, ...): the one being reviewed."""
    from core.store import UNDOABLE

    for action in store.history(None, limit=50):
        if action["kind"] in UNDOABLE and action["game_id"] is not None:
            return store.game(action["game_id"])["url_local"]
    return None


def focus_first(games: list[str], focus: str | None) -> list[str]:
    """``games`` with the game under review first (also when it is not among them), so that its
    predictions are the first ready."""
    if not focus:
        return games
    return [focus, *(g for g in games if g != focus)]


def _train_progress(config: TrainConfig, report: Report) -> Callable[[dict], None]:
    """Training's records (pretraining, the track, epochs) as the job's progress, 0 to 0.9 (then
    inference), in the words the command line uses (``core.training.progress.describe``)."""
    from core.training.progress import describe

    last = [0.0]

    def progress(r: dict) -> None:
        step = describe(r, config.epochs)
        last[0] = max(last[0], 0.9 * step.fraction)  # a note keeps the bar where it is
        report(at(last[0], step.text, step.kind))
    return progress


def _map(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def map_change(new: float | None, old: float | None, previous: str | None) -> str:
    """``valid mAP@1 0.532 (was 0.501 with v1)``, as a person reads it: three decimals, n/a for
    a score that was not measured, and no comparison on a first model."""
    if previous is None:
        return f"valid mAP@1 {_map(new)} (the first model)"
    return f"valid mAP@1 {_map(new)} (was {_map(old)} with {previous})"


def retrain_dir(workspace: Workspace, job_id: int | None) -> Path:
    """Where a retrain keeps its run (checkpoints, progress.jsonl): named by its job, if any."""
    return workspace.run_dir("retrain", f"job-{job_id}" if job_id else None)


def retrain(store: Store, workspace: Workspace, params: RetrainParams, report: Report,
            job_id: int | None = None) -> dict:
    """Fine-tune the active model on all labels (rejected predictions as hard negatives),
    register the new version (inactive), and, when it is not worse, infer with it and make it
    active at the end, with the review decisions carried over, in one transaction."""
    from core.runner import resolve_model
    from core.training import TrainConfig, train
    from core.versions import active_version, compare, hand_over, not_worse, unscored_games

    config = TrainConfig.load(params.config, epochs=params.epochs)
    if params.games:
        chosen = [store.game(g) for g in params.games]  # unknown names fail here, clearly
        config.train_splits = sorted({g["split"] for g in chosen if g["split"]})
        config.train_games = [g["url_local"] for g in chosen]
    previous = active_version(store)
    init = resolve_model(store, previous)[1] if previous else None
    if init is not None and params.epochs is None and params.gpus <= 1:
        fine_tune(config)
    out = retrain_dir(workspace, job_id)
    report(at(0.0, f"training from {previous or 'scratch'} with {Path(params.config).name}"))
    if params.gpus > 1:
        row = _torchrun(store, workspace, params, config, out, previous, report)
    else:
        row = train(config, store, workspace, out=out, init=init, parent=previous,
                    progress=_train_progress(config, report))
    version = row["version"]
    comparison = compare(store, version, previous)
    wanted = params.auto_activate and not_worse(store, version, previous)
    games = [] if not wanted else (params.infer_games if params.infer_games is not None
                                   else focus_first(unscored_games(store, previous, version), params.focus_game))
    result = {"version": version, "previous": previous, "comparison": comparison, "run": str(out)}
    if games:
        sub = reinfer(store, workspace, InferParams(version=version, games=games, carry_from=previous,
                                                    activate=True, author=params.author, gpus=params.gpus),
                      part(report, 0.9, 1.0))
        result["inference"] = sub
        activated, note = sub["activated"], f"; {sub['summary']}"
    else:
        with _last_write(store, report, f"registering {version}" + (" as the active model" if wanted else "")):
            activated = hand_over(store, version, previous, [], activate=wanted, author=params.author).activated
        note = ""
    state = ("now active" if activated else "not activated: confirm it in Models" if not wanted
             else f"not activated: {active_version(store)} became active meanwhile")
    summary = f"{version}: {map_change(comparison['map_new'], comparison['map_old'], previous)}; {state}{note}"
    _report_done(report, summary)
    return {**result, "activated": activated, "summary": summary}


def _report_done(report: Report, summary: str) -> None:
    """The last progress line. Past the job's last write a cancel changes nothing, so one that
    came meanwhile is not raised here (``run_job`` records the job as done)."""
    try:
        report(at(1.0, summary))
    except Cancelled:
        pass


def _torchrun(store: Store, workspace: Workspace, params: RetrainParams, config, out: Path, previous: str | None,
              report: Report) -> dict:
    """Several GPUs: the same training under torchrun; rank 0 registers the model."""
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", str(params.gpus),
           "-m", "core.training", "--workspace", str(workspace.root), "--config", params.config,
           "--out", str(out)]
    if params.epochs:
        cmd += ["--epochs", str(params.epochs)]
    if previous:
        cmd += ["--init", previous]
    report(at(0.05, f"torchrun on {params.gpus} GPUs"))
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode != 0:
        raise BallspotError(f"torchrun training failed (exit {done.returncode}); see the log")
    folder = (out / "model").resolve()
    rows = [m for m in store.models() if m["path"] and Path(m["path"]).resolve() == folder]
    if not rows:
        raise BallspotError(f"{out}: training ended without registering a model")
    return rows[-1]


def reinfer(store: Store, workspace: Workspace, params: InferParams, report: Report) -> dict:
    """TTA inference with a version on games. Each game's new predictions keep the version's own
    review decisions (``runner.store_run``); at the end, in one transaction (``_last_write``),
    the decisions of ``carry_from`` (the active version) as they are then carry over and, with
    ``activate``, the version becomes the active one."""
    from core.infer import InferConfig
    from core.runner import infer_games, resolve_model
    from core.versions import active_version, hand_over, measure_review_cut

    version, folder = resolve_model(store, params.version)
    source = params.carry_from if params.carry_from is not None else active_version(store)
    games = params.games or [g["url_local"] for g in store.games() if g["video_path"]]
    kept: dict[str, int] = {}
    report(at(0.0, f"inference with {version} on {len(games)} game(s)"))
    done = infer_games(store, workspace, version, folder, games, InferConfig(tta=params.tta),
                       progress=lambda step: report(at(0.95 * step.fraction, f"inference {step.text}")),
                       on_stored=kept.__setitem__, gpus=params.gpus)
    inferred = [name for name, _ in done]
    measured = [g for g in store.model(version)["metrics"].get("valid_games", []) if g in inferred]
    cut = measure_review_cut(store, version, measured) if measured else None
    if cut is not None:  # the cut of the confidences now stored (flip TTA or not), not validation's own
        store.set_model_metrics(version, {**store.model(version)["metrics"], "review_cut": cut})
    step = "carrying review decisions over" + (f" and activating {version}" if params.activate else "")
    with _last_write(store, report, step):
        handed = hand_over(store, version, source, inferred, activate=params.activate, author=params.author)
    carried = sum(kept.values()) + handed.carried
    summary = (f"{version}: {sum(n for _, n in done)} predictions on {len(done)} game(s)"
               + (f", {carried} review decisions carried over from {source}" if carried else "")
               + ("" if not params.activate else "; now active" if handed.activated
                  else f"; not activated: {handed.active} became active meanwhile"))
    return {"version": version, "games": inferred, "carried": carried, "activated": handed.activated,
            "summary": summary}


def run_and_hand_over(workspace: Workspace, job_id: int) -> dict:
    """A job process's whole life: run the job, then start the next queued one (whether or not
    a page is open to notice). ``python -m core.jobs`` and ``launch.py job-run`` both do this."""
    with Store.open(workspace) as store:
        job = run_job(store, workspace, job_id)
        refresh(store, workspace)
    return job


def main(argv: list[str] | None = None) -> int:
    """``python -m core.jobs WORKSPACE JOB_ID``: what ``spawn`` starts."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not (args[1].isdigit() and args[1].isascii()):
        print("usage: python -m core.jobs WORKSPACE JOB_ID", file=sys.stderr)
        return 2
    job = run_and_hand_over(Workspace.at(args[0]), int(args[1]))
    return 0 if job["status"] in ("done", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
