"""The browser app (Gradio 6 Blocks). Layout and wiring only: every handler calls ``core``.

Tabs: Review (player, timeline, events, filmstrip, keyboard; app/review.py), Games, Import
and Export. Every handler calls the same ``core`` functions as the command line.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gradio as gr

from core.errors import BallspotError
from core.export import export
from core.ingest import import_source
from core.overview import games_table
from core.splits import SPLITS
from core.store import Store
from core.workspace import Workspace

from app.models import models_screen
from app.review import review_screen, serve_videos

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def build_app(workspace: Workspace, *, server_paths: bool = True) -> gr.Blocks:
    """``server_paths``: whether Import may read folders on the server (only when the app is
    local; a remote user uploads)."""
    store = Store.open(workspace)
    serve_videos(store)  # before any component is built

    def refresh():
        serve_videos(store)  # games imported since start
        table = games_table(store)
        names = table["game"].tolist()
        versions = [m["version"] for m in store.models()]
        return table, gr.update(choices=names), gr.update(choices=["(labels)", *versions])

    def do_import(path: str, upload: str | None, split: str, replace: bool, author: str,
                  progress=gr.Progress()):
        if (path or "").strip() and not server_paths:
            raise gr.Error("This app is reachable from other machines: upload a file; server folders are not read.")
        source = upload or (path or "").strip()
        if not source:
            raise gr.Error("Give a folder or zip path, or upload a Labels-ball.json or zip.")
        log: list[str] = []

        def report(done: int, total: int, message: str) -> None:
            progress((done, total), desc=message)
            log.append(f"{time.strftime('%H:%M:%S')} {message}")

        try:
            result = import_source(store, source, workspace=workspace, split=split or None, replace=replace,
                                   author=author or None, progress=report)
        except BallspotError as exc:
            return "\n".join(log + [f"error: {exc}"]), *refresh()
        return "\n".join(log + [result.summary()]), *refresh()

    def do_export(games: list[str], which: str, single: bool):
        """A zip in SoccerNet's layout; with one game and ``single``, its JSON file alone
        (Labels-ball.json or results_spotting.json)."""
        folder = Path(tempfile.mkdtemp(prefix="ballspot-export-"))
        predictions = None if which in (None, "(labels)") else which
        if single and len(games or []) == 1:
            try:
                written = export(store, folder, games=games, predictions=predictions)
            except BallspotError as exc:
                raise gr.Error(str(exc)) from None
            return str(folder / written[0]), f"Exported {written[0]}."
        out = folder / ("labels.zip" if predictions is None else f"predictions-{which}.zip")
        try:
            written = export(store, out, games=games or None, predictions=predictions)
        except BallspotError as exc:
            raise gr.Error(str(exc)) from None
        return str(out), f"Exported {len(written)} game(s) to {out.name}."

    with gr.Blocks(title="Ballspot Studio") as demo:
        gr.Markdown(f"## Ballspot Studio  <small>workspace `{workspace.root}`</small>")
        with gr.Tab("Review"):
            review_screen(store, workspace)
        with gr.Tab("Models"):
            fill_models, model_outputs = models_screen(store, workspace)
        with gr.Tab("Games"):
            games = gr.Dataframe(label="Games", interactive=False, elem_id="games-table")
            refresh_btn = gr.Button("Refresh", size="sm")
        with gr.Tab("Import"):
            with gr.Row():
                path = gr.Textbox(label="SoccerNet folder, game folder or .zip on this machine",
                                  placeholder="/data/soccernet/england_efl", scale=3)
                upload = gr.File(label="…or upload Labels-ball.json / .zip", file_types=[".json", ".zip"],
                                 type="filepath", scale=2)
            with gr.Row():
                split = gr.Dropdown(["", *SPLITS], value="", label="Split (when SoccerNet does not know the game)")
                replace = gr.Checkbox(label="Replace games already imported (old labels stay in the history)")
                author = gr.Textbox(label="Your name (recorded in the history)")
            import_btn = gr.Button("Import", variant="primary", elem_id="import-button")
            import_log = gr.Textbox(label="Log", lines=10, elem_id="import-log")
        with gr.Tab("Export"):
            export_games = gr.Dropdown([g["url_local"] for g in store.games()], multiselect=True, allow_custom_value=True,
                                       label="Games (none = all)")
            export_what = gr.Dropdown(["(labels)"], value="(labels)", label="Labels or a model version's predictions")
            export_single = gr.Checkbox(label="One game: its JSON file alone, not a zip")
            export_btn = gr.Button("Export SoccerNet JSON (.zip)", variant="primary")
            export_file = gr.File(label="Download", interactive=False)
            export_msg = gr.Markdown()

        outputs = [games, export_games, export_what]
        demo.load(refresh, outputs=outputs, api_name="games")
        demo.load(fill_models, outputs=model_outputs, api_visibility="private")
        refresh_btn.click(refresh, outputs=outputs, api_visibility="private")
        import_btn.click(do_import, [path, upload, split, replace, author], [import_log, *outputs],
                         concurrency_limit=1, api_name="import")
        export_btn.click(do_export, [export_games, export_what, export_single], [export_file, export_msg],
                         api_name="export")
    return demo


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Uploads above this are refused before they are stored (a label zip of all SoccerNet is ~5 MB).
MAX_UPLOAD = "200mb"


def check_host(host: str, auth: str | None) -> None:
    """Anyone who reaches the app can read the served videos and edit labels: listening beyond
    this machine needs a login."""
    if host not in LOCAL_HOSTS and not auth:
        raise BallspotError(f"--host {host} makes the app reachable from other machines; give --auth USER:PASS too")


def launch_app(workspace: Workspace, *, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None) -> None:
    check_host(host, auth)
    credentials = None
    if auth:
        user, sep, password = auth.partition(":")
        if not sep or not user:
            raise BallspotError("--auth takes USER:PASS")
        credentials = (user, password)
    build_app(workspace.ensure(), server_paths=host in LOCAL_HOSTS).launch(
        server_name=host, server_port=port, auth=credentials, share=False, max_file_size=MAX_UPLOAD,
        css_paths=[ASSETS / "app.css", ASSETS / "review.css"])
