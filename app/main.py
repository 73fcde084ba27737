"""The browser app (Gradio 6 Blocks). Layout and wiring only: every handler calls ``core``.

This first screen is the workspace: its games, import and export. The review screen
(player, timeline, keyboard editing) builds on it.
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

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def build_app(workspace: Workspace) -> gr.Blocks:
    store = Store.open(workspace)

    def refresh():
        table = games_table(store)
        names = table["game"].tolist()
        versions = [m["version"] for m in store.models()]
        return table, gr.update(choices=names), gr.update(choices=["(labels)", *versions])

    def do_import(path: str, upload: str | None, split: str, replace: bool, author: str,
                  progress=gr.Progress()):
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

    def do_export(games: list[str], which: str):
        out = Path(tempfile.mkdtemp(prefix="ballspot-export-")) / (
            "labels.zip" if which in (None, "(labels)") else f"predictions-{which}.zip")
        try:
            written = export(store, out, games=games or None,
                             predictions=None if which in (None, "(labels)") else which)
        except BallspotError as exc:
            raise gr.Error(str(exc)) from None
        return str(out), f"Exported {len(written)} game(s) to {out.name}."

    with gr.Blocks(title="Ballspot Studio") as demo:
        gr.Markdown(f"# Ballspot Studio\nWorkspace `{workspace.root}`")
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
            export_games = gr.Dropdown([], multiselect=True, label="Games (none = all)")
            export_what = gr.Dropdown(["(labels)"], value="(labels)", label="Labels or a model version's predictions")
            export_btn = gr.Button("Export SoccerNet JSON (.zip)", variant="primary")
            export_file = gr.File(label="Download", interactive=False)
            export_msg = gr.Markdown()

        outputs = [games, export_games, export_what]
        demo.load(refresh, outputs=outputs, api_name="games")
        refresh_btn.click(refresh, outputs=outputs, api_visibility="private")
        import_btn.click(do_import, [path, upload, split, replace, author], [import_log, *outputs],
                         concurrency_limit=1, api_name="import")
        export_btn.click(do_export, [export_games, export_what], [export_file, export_msg], api_name="export")
    return demo


def launch_app(workspace: Workspace, *, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None) -> None:
    credentials = None
    if auth:
        user, sep, password = auth.partition(":")
        if not sep or not user:
            raise BallspotError("--auth takes USER:PASS")
        credentials = (user, password)
    build_app(workspace.ensure()).launch(server_name=host, server_port=port, auth=credentials, share=False,
                                        css_paths=[ASSETS / "app.css"])
