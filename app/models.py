"""The Models screen: retrain and re-infer as background jobs, the job list (a progress bar per
job with its phase, epoch, time left and cancel), its live log and training curve, model
versions (compare, activate), the diff between two versions' predictions and the learning
curve. Layout and wiring only: logic is in core.jobs, core.jobview and core.versions.

Three sections, each on one laptop screen: Train and infer (the forms beside the jobs),
Versions, Diff. The job list and the loss chart are drawn in the browser (assets/models.js)
from small JSON values the one-second timer sends.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import pandas as pd

from core.errors import BallspotError
from core.jobs import DEFAULT_RETRAIN_CONFIG, CONFIGS, cancel, log_tail, refresh, retrain_dir, submit
from core.jobview import job_view, local_time
from core.labels import CLASS_INDEX, clock
from core.store import Store
from core.training.progress import run_curve
from core.versions import activate, active_version, compare, diff, learning_curve, pending_activations, valid_map
from core.workspace import Workspace

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: One script for the Models tab's two drawn widgets (jobs, chart); each picks its part.
_WIDGET_JS = (ASSETS / "models.js").read_text()


def _score(value: float | None) -> str:
    """A mAP as a person reads it: three decimals, ``n/a`` where nothing was measured."""
    return "n/a" if value is None else f"{value:.3f}"


def _jobs_value(jobs: list[dict], selected: int | None, public: Callable[[str], str] = str) -> dict:
    """What the job list draws: each job as ``core.jobview.job_view`` reads it, and which one
    the log and chart follow; ``polled`` changes with every poll, so the list knows the timer
    runs (assets/models.js wakes it when it does not)."""
    return {"jobs": [job_view(j, public=public) for j in jobs], "selected": selected, "polled": time.monotonic()}


def _models_frame(store: Store) -> pd.DataFrame:
    active, pending = active_version(store), pending_activations(store)
    rows = []
    for m in store.models():
        labels = m["metrics"].get("reviewed_labels")
        rows.append({"version": m["version"], "active": _active_cell(m["version"], active, pending),
                     "parent": m["parent"] or "", "valid mAP@1": _score(valid_map(m)),
                     "labels": "" if labels is None else str(labels), "created": local_time(m["created"])})
    return pd.DataFrame(rows, columns=["version", "active", "parent", "valid mAP@1", "labels", "created"])


def _active_cell(version: str, active: str | None, pending: dict[str, dict]) -> str:
    """'yes' for the active version; one waiting for its inference job to activate it says so
    (it is not active yet: the review screen still shows the active one)."""
    if version == active:
        return "yes"
    return f"after job {pending[version]['id']}" if version in pending else ""


def _learning_frame(store: Store) -> pd.DataFrame:
    """The learning curve's points, mAP to three decimals (what its tooltip shows)."""
    frame = pd.DataFrame(learning_curve(store), columns=["version", "labels", "valid_map", "parent", "created"])
    frame["valid_map"] = frame["valid_map"].astype(float).round(3)
    return frame


def _curve_value(job: dict | None, workspace: Workspace | None = None) -> dict:
    """The loss chart's points (epoch, value, series) and, without any, what to say instead."""
    if job is None:
        return {"rows": [], "empty": "no run yet: retrain to see its loss and validation mAP@1 per epoch"}
    if job["kind"] != "retrain" or workspace is None:
        return {"rows": [], "empty": f"job {job['id']} is an inference job: no training curve"}
    run = (job["result"] or {}).get("run") or retrain_dir(workspace, job["id"])
    rows = [{**r, "value": round(float(r["value"]), 4)} for r in run_curve(run)]
    return {"rows": rows, "title": f"job {job['id']}",
            "empty": "" if rows else f"job {job['id']}: no epoch finished yet"}


@dataclass
class ModelsTab:
    """What the app wires to the Models tab's selection: ``fill`` (the pickers' choices, and the
    timer started) for ``outputs``; ``timer`` polls the jobs only while the tab is shown."""

    fill: Callable
    outputs: list
    timer: gr.Timer


def models_screen(store: Store, workspace: Workspace, public: Callable[[str], str] = str) -> ModelsTab:
    """The Models tab's content; call inside a Blocks context."""
    # By name: where the configs lie on the server is not the browser's business.
    configs = {p.name: str(p) for p in sorted(CONFIGS.glob("*.yaml"))}
    default_config = DEFAULT_RETRAIN_CONFIG.name

    def choices():
        versions = [m["version"] for m in store.models()]
        games = [g["url_local"] for g in store.games()]
        return versions, games

    submitted = gr.Markdown(elem_id="job-submitted")
    job_pick = gr.Number(value=None, precision=0, visible=False, elem_id="job-pick")
    with gr.Tabs():
        with gr.Tab("Train and infer", elem_id="models-train"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=420):
                    with gr.Column(elem_id="retrain", variant="panel"):
                        gr.Markdown("**Retrain** the active model on every human, imported and accepted label "
                                    "(rejected predictions as hard negatives), then re-infer.",
                                    elem_classes="bs-form-head")
                        with gr.Row():
                            config = gr.Dropdown(list(configs), value=default_config, label="Config", scale=2,
                                                 min_width=140)
                            epochs = gr.Number(value=0, precision=0, minimum=0, label="Epochs (0: the config's)",
                                               scale=1, min_width=110)
                            gpus = gr.Number(value=1, precision=0, minimum=1, label="GPUs (torchrun when > 1)",
                                             scale=1, min_width=110)
                        with gr.Row(equal_height=True):
                            train_games = gr.Dropdown([], multiselect=True, label="Games (none: the config's splits)",
                                                      scale=3)
                            retrain_btn = gr.Button("Retrain", variant="primary", elem_id="retrain-button", scale=1,
                                                    min_width=100)
                    with gr.Column(elem_id="infer", variant="panel"):
                        gr.Markdown("**Re-infer** with a version (TTA); review decisions carry over to the same "
                                    "events (same class, within 2 frames).", elem_classes="bs-form-head")
                        with gr.Row(equal_height=True):
                            infer_version = gr.Dropdown([], label="Version", scale=2, min_width=120)
                            infer_games = gr.Dropdown([], multiselect=True, label="Games (none: all with a video)",
                                                      scale=3, min_width=160)
                        with gr.Row(equal_height=True):
                            tta = gr.Checkbox(value=True, label="Flip TTA", scale=3)
                            infer_btn = gr.Button("Re-infer", elem_id="infer-button", scale=1, min_width=100)
                with gr.Column(scale=4):
                    jobs_list = gr.HTML(_jobs_value([], None), html_template='<div data-widget="jobs"></div>',
                                        js_on_load=_WIDGET_JS, elem_id="jobs", apply_default_css=False)
                    with gr.Row(equal_height=True):
                        job_log = gr.Textbox(label="Live log of the selected job (click a job to follow it)",
                                             lines=11, max_lines=11, autoscroll=True, elem_id="job-log", scale=1)
                        with gr.Column(scale=1, min_width=320):
                            job_plot = gr.HTML(_curve_value(None), html_template='<div data-widget="curve"></div>',
                                               js_on_load=_WIDGET_JS, elem_id="job-plot", apply_default_css=False)
        with gr.Tab("Versions", elem_id="models-versions"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    models_table = gr.Dataframe(_models_frame(store), interactive=False, elem_id="models",
                                                label="Versions", max_height=260)
                    with gr.Row():
                        pick = gr.Dropdown([], label="Version", elem_id="version-pick", scale=3)
                        activate_btn = gr.Button("Make active", elem_id="activate", scale=1)
                    curve = gr.ScatterPlot(_learning_frame(store), x="labels", y="valid_map", height=230,
                                           label="Learning curve: validation mAP@1 against reviewed labels",
                                           x_title="reviewed labels", y_title="validation mAP@1", y_lim=[0, 1],
                                           x_axis_format="d", y_axis_format=".2f", elem_id="learning-curve")
                with gr.Column(scale=2):
                    # 13 rows (all classes and the mean) fit without scrolling: no class is hidden.
                    comparison = gr.Dataframe(pd.DataFrame(columns=["class", "this version", "previous"]),
                                              interactive=False, max_height=640, elem_id="compare",
                                              label="Validation mAP@1 per class beside its parent")
        with gr.Tab("Diff", elem_id="models-diff"):
            with gr.Row():
                diff_old = gr.Dropdown([], label="Older version")
                diff_new = gr.Dropdown([], label="Newer version")
                diff_game = gr.Dropdown([], label="Game")
                diff_btn = gr.Button("Compare")
            diff_table = gr.Dataframe(pd.DataFrame(columns=["change", "clock", "frame", "label", "was"]),
                                      interactive=False, elem_id="diff", max_height=560)
    # Polls the jobs once a second while the tab is shown (``ModelsTab``); elsewhere it would only
    # compete with the review screen's edits for the server.
    timer = gr.Timer(1.0, active=False)

    # ----------------------------------------------------------------- handlers

    def fill():
        versions, games = choices()
        active = active_version(store)
        return (gr.update(choices=games), gr.update(choices=versions, value=active), gr.update(choices=games),
                gr.update(choices=versions, value=active), gr.update(choices=versions),
                gr.update(choices=versions, value=active), gr.update(choices=games), gr.Timer(active=True))

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
        shown = _jobs_value(jobs, job["id"] if job else None, public)
        if job is None:
            return (shown, "", _curve_value(None), _models_frame(store), gr.skip(), *pickers, versions)
        text = public(log_tail(job) + (f"\nerror: {job['error']}" if job["error"] else ""))
        return (shown, text, _curve_value(job, workspace), _models_frame(store), _learning_frame(store),
                *pickers, versions)

    def do_pick(evt: gr.EventData):
        """A click on a job's row: the log and the chart follow that job."""
        return _job_id(evt)

    def do_cancel(evt: gr.EventData):
        """A job row's Cancel button."""
        job_id = _job_id(evt)
        try:
            job = cancel(store, job_id)
        except BallspotError:
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
        rows = [{"class": "all (mAP@1)", "this version": _score(c["map_new"]), "previous": _score(c["map_old"])}]
        in_order = sorted(c["per_class"], key=lambda p: CLASS_INDEX.get(p["class"], len(CLASS_INDEX)))
        rows += [{"class": p["class"], "this version": _score(p["new"]), "previous": _score(p["old"])}
                 for p in in_order]  # the classes in SoccerNet's order, as everywhere else
        return pd.DataFrame(rows)

    def do_diff(old, new, game):
        if not (old and new and game):
            raise gr.Error("Choose two versions and a game.")
        try:
            entries = diff(store, game, old, new)
        except BallspotError as exc:
            raise gr.Error(str(exc)) from None
        return pd.DataFrame([{"change": d.change, "clock": clock(d.frame), "frame": d.frame, "label": d.label,
                              "was": "" if d.change == "new" else f"{d.old_label} @ {d.old_frame}"} for d in entries],
                            columns=["change", "clock", "frame", "label", "was"])

    outs = [train_games, infer_version, infer_games, pick, diff_old, diff_new, diff_game, timer]
    known = gr.State([m["version"] for m in store.models()])
    gr.on([timer.tick], poll, [job_pick, known],
          [jobs_list, job_log, job_plot, models_table, curve, pick, infer_version, diff_old, diff_new, known],
          show_progress="hidden", api_visibility="private")
    retrain_btn.click(do_retrain, [config, epochs, gpus, train_games], [submitted, job_pick], api_name="retrain")
    infer_btn.click(do_infer, [infer_version, infer_games, tta], [submitted, job_pick], api_name="infer")
    jobs_list.pick_job(do_pick, None, [job_pick], api_visibility="private")
    jobs_list.cancel_job(do_cancel, None, [submitted], api_visibility="private")
    # The list, shown and not polled (the Review tab's selection at page load can be handled
    # after this tab's, and stop the timer this tab had started), starts it again.
    jobs_list.wake(lambda: gr.Timer(active=True), None, [timer], api_visibility="private")
    activate_btn.click(do_activate, [pick], [models_table, submitted, job_pick], api_name="activate")
    pick.change(do_compare, [pick], [comparison], api_visibility="private")
    diff_btn.click(do_diff, [diff_old, diff_new, diff_game], [diff_table], api_name="diff")
    return ModelsTab(fill, outs, timer)


def _job_id(evt: gr.EventData) -> int:
    """The job a click in the job list names (a whole number, else a clear error)."""
    value = (getattr(evt, "_data", None) or {}).get("job")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise gr.Error(f"Not a job: {value!r}.")
    return value
