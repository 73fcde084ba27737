"""The Models screen: retrain and re-infer as background jobs, the job list with progress,
live log and training curves, model versions (compare, activate), the diff between two
versions' predictions and the learning curve. Layout and wiring only: logic is in
core.jobs and core.versions.
"""
from __future__ import annotations

from typing import Callable

import gradio as gr
import pandas as pd

from core.errors import BallspotError
from core.jobs import DEFAULT_RETRAIN_CONFIG, CONFIGS, cancel, log_tail, refresh, retrain_dir, submit
from core.store import Store
from core.training.progress import run_curve
from core.versions import activate, active_version, compare, diff, learning_curve, pending_activations, valid_map
from core.workspace import Workspace



def _jobs_frame(jobs: list[dict], public: Callable[[str], str] = str) -> pd.DataFrame:
    rows = [{"job": j["id"], "kind": j["kind"], "status": j["status"], "progress": f"{100 * j['progress']:.0f}%",
             "message": public(j["error"] or j["message"])[:160], "started": (j["started"] or "")[:19]} for j in jobs]
    return pd.DataFrame(rows, columns=["job", "kind", "status", "progress", "message", "started"])


def _models_frame(store: Store) -> pd.DataFrame:
    active, pending = active_version(store), pending_activations(store)
    rows = []
    for m in store.models():
        metrics = m["metrics"]
        rows.append({"version": m["version"], "active": _active_cell(m["version"], active, pending),
                     "parent": m["parent"] or "",
                     "valid mAP@1": None if valid_map(m) is None else round(valid_map(m), 4),
                     "labels": metrics.get("reviewed_labels"), "created": m["created"][:19]})
    return pd.DataFrame(rows, columns=["version", "active", "parent", "valid mAP@1", "labels", "created"])


def _active_cell(version: str, active: str | None, pending: dict[str, dict]) -> str:
    """'yes' for the active version; one waiting for its inference job to activate it says so
    (it is not active yet: the review screen still shows the active one)."""
    if version == active:
        return "yes"
    return f"after job {pending[version]['id']}" if version in pending else ""


def _curve_frame(job: dict | None, workspace: Workspace | None = None) -> pd.DataFrame:
    """Loss and validation mAP per epoch of a retrain job's run."""
    rows = []
    if job and job["kind"] == "retrain" and workspace is not None:
        run = (job["result"] or {}).get("run") or retrain_dir(workspace, job["id"])
        rows = run_curve(run)
    return pd.DataFrame(rows, columns=["epoch", "value", "series"])


def models_screen(store: Store, workspace: Workspace, public: Callable[[str], str] = str) -> None:
    """The Models tab's content; call inside a Blocks context."""
    # By name: where the configs lie on the server is not the browser's business.
    configs = {p.name: str(p) for p in sorted(CONFIGS.glob("*.yaml"))}
    default_config = DEFAULT_RETRAIN_CONFIG.name

    def choices():
        versions = [m["version"] for m in store.models()]
        games = [g["url_local"] for g in store.games()]
        return versions, games

    with gr.Row():
        with gr.Column(elem_id="retrain"):
            gr.Markdown("### Retrain\nFine-tunes the active model on every human, imported and accepted label "
                        "(rejected predictions as hard negatives), then re-infers with TTA.")
            config = gr.Dropdown(list(configs), value=default_config, label="Config")
            with gr.Row():
                epochs = gr.Number(value=0, precision=0, minimum=0, label="Epochs (0: the config's)")
                gpus = gr.Number(value=1, precision=0, minimum=1, label="GPUs (torchrun when > 1)")
            train_games = gr.Dropdown([], multiselect=True, label="Games (none: the config's splits)")
            retrain_btn = gr.Button("Retrain", variant="primary", elem_id="retrain-button")
        with gr.Column(elem_id="infer"):
            gr.Markdown("### Re-infer\nTTA inference with a version; review decisions carry over to the same "
                        "events (same class, within 2 frames).")
            infer_version = gr.Dropdown([], label="Version")
            infer_games = gr.Dropdown([], multiselect=True, label="Games (none: all with a video)")
            tta = gr.Checkbox(value=True, label="Flip TTA")
            infer_btn = gr.Button("Re-infer", elem_id="infer-button")
    submitted = gr.Markdown(elem_id="job-submitted")

    gr.Markdown("### Jobs")
    jobs_table = gr.Dataframe(_jobs_frame([]), interactive=False, elem_id="jobs")
    with gr.Row():
        job_pick = gr.Number(value=None, precision=0, label="Job", scale=1)
        cancel_btn = gr.Button("Cancel job", scale=1, elem_id="cancel-job")
        job_progress = gr.Slider(0, 100, value=0, label="Progress (%)", interactive=False, scale=3,
                                 elem_id="job-progress")
    with gr.Row():
        job_log = gr.Textbox(label="Live log", lines=10, max_lines=10, autoscroll=True, elem_id="job-log", scale=3)
        job_plot = gr.LinePlot(_curve_frame(None), x="epoch", y="value", color="series",
                               label="Loss and validation mAP@1", scale=2, elem_id="job-plot")

    gr.Markdown("### Versions")
    models_table = gr.Dataframe(_models_frame(store), interactive=False, elem_id="models")
    with gr.Row():
        pick = gr.Dropdown([], label="Version", elem_id="version-pick")
        activate_btn = gr.Button("Make active", elem_id="activate")
    comparison = gr.Dataframe(pd.DataFrame(columns=["class", "this version", "previous"]), interactive=False,
                              label="Validation mAP@1 per class beside its parent", elem_id="compare")
    curve = gr.ScatterPlot(pd.DataFrame(learning_curve(store), columns=["version", "labels", "valid_map", "parent",
                                                                         "created"]),
                           x="labels", y="valid_map", label="Learning curve: validation mAP@1 against reviewed labels",
                           elem_id="learning-curve")
    gr.Markdown("### Diff between two versions' predictions")
    with gr.Row():
        diff_old = gr.Dropdown([], label="Older version")
        diff_new = gr.Dropdown([], label="Newer version")
        diff_game = gr.Dropdown([], label="Game")
        diff_btn = gr.Button("Compare")
    diff_table = gr.Dataframe(pd.DataFrame(columns=["change", "clock", "frame", "label", "was"]), interactive=False,
                              elem_id="diff")
    timer = gr.Timer(1.0)

    # ----------------------------------------------------------------- handlers

    def fill():
        versions, games = choices()
        active = active_version(store)
        return (gr.update(choices=games), gr.update(choices=versions, value=active), gr.update(choices=games),
                gr.update(choices=versions, value=active), gr.update(choices=versions),
                gr.update(choices=versions, value=active), gr.update(choices=games))

    def do_retrain(config_name, n_epochs, n_gpus, games, request: gr.Request):
        if config_name not in configs:
            raise gr.Error(f"Choose a config ({', '.join(configs)}).")
        try:
            job = submit(store, "retrain", {"config": configs[config_name],
                                            "epochs": int(n_epochs) if n_epochs else None,
                                            "gpus": int(n_gpus or 1), "games": games or None,
                                            "author": getattr(request, "username", None)})
        except BallspotError as exc:
            raise gr.Error(public(str(exc))) from None
        refresh(store, workspace)
        return f"Queued retrain as job {job['id']}.", job["id"]

    def do_infer(version, games, use_tta, request: gr.Request):
        if not version or version not in {m["version"] for m in store.models()}:
            raise gr.Error("Choose a version.")
        unknown = set(games or []) - {g["url_local"] for g in store.games()}
        if unknown:
            raise gr.Error(f"No such game: {', '.join(sorted(unknown))}")
        job = submit(store, "infer", {"version": version, "games": games or [], "tta": bool(use_tta),
                                      "author": getattr(request, "username", None)})
        refresh(store, workspace)
        return f"Queued inference with {version} as job {job['id']}.", job["id"]

    def poll(job_id, known):
        jobs = refresh(store, workspace)
        versions = [m["version"] for m in store.models()]
        # New versions (a finished retrain) join the version pickers; unchanged ones are left
        # alone so a choice being made is not reset every second.
        pickers = [gr.update(choices=versions)] * 4 if versions != known else [gr.skip()] * 4
        job = next((j for j in jobs if j["id"] == job_id), jobs[0] if jobs else None)
        if job is None:
            return (_jobs_frame(jobs, public), 0, "", _curve_frame(None), _models_frame(store), gr.skip(),
                    *pickers, versions)
        text = public(log_tail(job) + (f"\nerror: {job['error']}" if job["error"] else ""))
        return (_jobs_frame(jobs, public), round(100 * job["progress"], 1), text, _curve_frame(job, workspace),
                _models_frame(store),
                pd.DataFrame(learning_curve(store), columns=["version", "labels", "valid_map", "parent", "created"]),
                *pickers, versions)

    def do_cancel(job_id):
        if not job_id:
            raise gr.Error("Give the job number.")
        try:
            job = cancel(store, int(job_id))
        except (BallspotError, OverflowError, ValueError):
            raise gr.Error(f"No job {job_id}.") from None
        return f"Job {job['id']}: {job['status']}."

    def do_activate(version, request: gr.Request):
        """``versions.activate``: at once when the version has predictions on every game the
        active one has, else after its inference job (whose number is picked, to follow it)."""
        if not version:
            raise gr.Error("Choose a version.")
        try:
            done = activate(store, workspace, version, author=getattr(request, "username", None))
        except BallspotError as exc:
            raise gr.Error(str(exc)) from None
        return _models_frame(store), done.message, done.job["id"] if done.job else gr.skip()

    def do_compare(version):
        if not version:
            return pd.DataFrame(columns=["class", "this version", "previous"])
        row = store.model(version)
        c = compare(store, version, row["parent"])
        r4 = lambda v: "n/a" if v is None else round(v, 4)  # noqa: E731 - n/a: nothing to measure
        rows = [{"class": "all (mAP@1)", "this version": r4(c["map_new"]), "previous": r4(c["map_old"])}]
        rows += [{"class": p["class"], "this version": r4(p["new"]), "previous": r4(p["old"])} for p in c["per_class"]]
        return pd.DataFrame(rows)

    def do_diff(old, new, game):
        if not (old and new and game):
            raise gr.Error("Choose two versions and a game.")
        try:
            entries = diff(store, game, old, new)
        except BallspotError as exc:
            raise gr.Error(str(exc)) from None
        from core.labels import clock
        return pd.DataFrame([{"change": d.change, "clock": clock(d.frame), "frame": d.frame, "label": d.label,
                              "was": "" if d.change == "new" else f"{d.old_label} @ {d.old_frame}"} for d in entries],
                            columns=["change", "clock", "frame", "label", "was"])

    outs = [train_games, infer_version, infer_games, pick, diff_old, diff_new, diff_game]
    known = gr.State([m["version"] for m in store.models()])
    gr.on([timer.tick], poll, [job_pick, known],
          [jobs_table, job_progress, job_log, job_plot, models_table, curve, pick, infer_version, diff_old, diff_new,
           known], show_progress="hidden", api_visibility="private")
    retrain_btn.click(do_retrain, [config, epochs, gpus, train_games], [submitted, job_pick], api_name="retrain")
    infer_btn.click(do_infer, [infer_version, infer_games, tta], [submitted, job_pick], api_name="infer")
    cancel_btn.click(do_cancel, [job_pick], [submitted], api_name="cancel")
    activate_btn.click(do_activate, [pick], [models_table, submitted, job_pick], api_name="activate")
    pick.change(do_compare, [pick], [comparison], api_visibility="private")
    diff_btn.click(do_diff, [diff_old, diff_new, diff_game], [diff_table], api_name="diff")
    return fill, outs
