"""The browser app (Gradio 6 Blocks). Layout and wiring only: every handler calls ``core``.

Tabs: Review (player, timeline, events, filmstrip, keyboard; app/review.py), Models (jobs,
versions; app/models.py), Games (a row click opens the game in Review), Import and Export.
Every handler calls the same ``core`` functions as the command line.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Callable

import gradio as gr
from gradio.routes import App
from gradio.utils import get_upload_folder

from core.access import LOCAL_HOSTS, check_host, parse_auth
from core.errors import BallspotError
from core.export import download_folder, export, unreviewed_note
from core.ingest import import_source
from core.overview import games_table
from core.progress import Step
from core.splits import SPLITS
from core.store import Store
from core.workspace import Workspace

from app.models import models_screen
from app.review import HEAD, Users, mount, review_screen
from app.server import VIDEO_ROUTE, AssetCache, RequestGuard, allowed_hosts, error_answer, video_endpoint

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def build_app(workspace: Workspace, *, server_paths: bool = True, users: Users | None = None,
              store: Store | None = None) -> gr.Blocks:
    """``server_paths``: whether Import may read folders on the server (only when the app is
    local; a remote user uploads, and is shown paths relative to the workspace).
    ``users``: the logged-in user of a request, when the app has logins."""
    store = store or Store.open(workspace)
    public = _public_paths(workspace) if not server_paths else (lambda text: text)

    def refresh():
        table = games_table(store)
        names = table["game"].tolist()
        versions = [m["version"] for m in store.models()]
        return table, gr.update(choices=names), gr.update(choices=["(labels)", *versions])

    def do_import(path: str, upload: str | None, split: str, replace: bool, author: str,
                  request: gr.Request, progress=gr.Progress()):
        if (path or "").strip() and not server_paths:
            raise gr.Error("This app is reachable from other machines: upload a file; server folders are not read.")
        source = upload or (path or "").strip()
        if not source:
            raise gr.Error("Give a folder or zip path, or upload a Labels-ball.json or zip.")
        if users is not None:
            author = users(request) or author  # the login, not what the form says
        log: list[str] = []

        def report(step: Step) -> None:
            progress((step.done, step.total), desc=step.text)
            log.append(f"{time.strftime('%H:%M:%S')} {step.text}")

        try:
            result = import_source(store, source, workspace=workspace, split=split or None, replace=replace,
                                   author=author or None, progress=report, upload=bool(upload))
        except BallspotError as exc:
            return public("\n".join(log + [f"error: {exc}"])), *refresh()
        finally:
            if upload:
                _discard_upload(upload)
        return public("\n".join(log + [result.summary()])), *refresh()

    exports: list[Path] = []

    def pending_note(games: list[str] | None, predictions: str | None) -> str:
        note = unreviewed_note(store, games or None) if predictions is None else ""
        return f" Note: {note}." if note else ""

    def do_export(games: list[str], which: str, single: bool):
        """A zip in SoccerNet's layout; with one game and ``single``, its JSON file alone
        (Labels-ball.json or results_spotting.json). Gradio copies the file into its cache to
        serve it, so the previous export's folder is removed when a new one is made (and any
        an app stopped earlier left, after an hour: ``download_folder``)."""
        while exports:
            shutil.rmtree(exports.pop(), ignore_errors=True)
        folder = download_folder()
        exports.append(folder)
        predictions = None if which in (None, "(labels)") else which
        if single and len(games or []) == 1:
            try:
                written = export(store, folder, games=games, predictions=predictions)
            except BallspotError as exc:
                raise gr.Error(public(str(exc))) from None
            return str(folder / written[0]), f"Exported {written[0]}." + pending_note(games, predictions)
        out = folder / ("labels.zip" if predictions is None else f"predictions-{which}.zip")
        try:
            written = export(store, out, games=games or None, predictions=predictions)
        except BallspotError as exc:
            raise gr.Error(public(str(exc))) from None
        return str(out), f"Exported {len(written)} game(s) to {out.name}." + pending_note(games, predictions)

    def open_in_review(evt: gr.SelectData):
        """A click on a row of the Games table: that game, in the review tab (the review
        component opens it when its ``goto_game`` changes; ``at`` makes every click a change)."""
        name = (evt.row_value or [None])[0]
        try:
            g = store.game(str(name))
        except BallspotError:
            raise gr.Error(f"No game {str(name)[:200]!r}.") from None
        return gr.Tabs(selected="review"), gr.HTML(goto_game={"game": g["id"], "at": time.time()})

    # Gradio keeps uploads and files it served in its cache: files older than an hour go, hourly.
    with gr.Blocks(title="Ballspot Studio", delete_cache=(3600, 3600), fill_width=True) as demo:
        shown = workspace.root if server_paths else workspace.root.name
        gr.Markdown(f"**Ballspot Studio** · workspace `{shown}`", elem_id="app-title")
        with gr.Tabs(selected="review") as tabs:
            with gr.Tab("Review", id="review") as review_tab:
                review = review_screen(store, workspace, users=users, public=public)
            with gr.Tab("Models", id="models") as models_tab:
                models = models_screen(store, workspace, public)
            with gr.Tab("Games", id="games") as games_tab:
                games = gr.Dataframe(label="Games (click a row to review that game)", interactive=False,
                                     elem_id="games-table", pinned_columns=1)
                refresh_btn = gr.Button("Refresh", size="sm")
            with gr.Tab("Import", id="import") as import_tab:
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
            with gr.Tab("Export", id="export") as export_tab:
                export_games = gr.Dropdown([g["url_local"] for g in store.games()], multiselect=True,
                                           allow_custom_value=True,
                                           label="Games (none = all)")
                export_what = gr.Dropdown(["(labels)"], value="(labels)",
                                          label="Labels or a model version's predictions")
                export_single = gr.Checkbox(label="One game: its JSON file alone, not a zip")
                export_btn = gr.Button("Export SoccerNet JSON (.zip)", variant="primary")
                export_file = gr.File(label="Download", interactive=False)
                export_msg = gr.Markdown()

        outputs = [games, export_games, export_what]
        # Nothing but the review screen's own calls runs when the page loads (it opens faster): the
        # other tabs fill when they are opened, and the Models tab polls its jobs only while shown.
        refresh_btn.click(refresh, outputs=outputs, api_name="games")
        for tab in (games_tab, export_tab):
            tab.select(refresh, outputs=outputs, api_visibility="private")
        models_tab.select(models.fill, outputs=models.outputs, api_visibility="private")
        for tab in (review_tab, games_tab, import_tab, export_tab):
            tab.select(lambda: gr.Timer(active=False), outputs=models.timer, api_visibility="private")
        games.select(open_in_review, None, [tabs, review], api_visibility="private")
        import_btn.click(do_import, [path, upload, split, replace, author], [import_log, *outputs],
                         concurrency_limit=1, api_name="import")
        export_btn.click(do_export, [export_games, export_what, export_single], [export_file, export_msg],
                         api_name="export")
    return demo


#: Uploads above this are refused before they are stored (a label zip of all SoccerNet is ~5 MB).
MAX_UPLOAD = "200mb"


#: The folders of an absolute path (not a URL's path): what a remote user is not shown.
_FOLDERS = re.compile(r"(?<![\w:/.~])/(?:[^\s/:'\"]+/)+")


def _public_paths(workspace: Workspace) -> Callable[[str], str]:
    """Messages for a remote user: the server's folders are not theirs to know. Paths in the
    workspace are shown relative to it, uploads as ``upload:``, any other path by its last
    folders' names only (``…/name``)."""
    uploads = Path(get_upload_folder()).resolve()
    prefixes = [(str(workspace.root) + "/", ""), (str(workspace.root), "."), (str(uploads) + "/", "upload:")]

    def public(text: str) -> str:
        for prefix, shown in prefixes:
            text = text.replace(prefix, shown)
        return _FOLDERS.sub("…/", text)
    return public


def _discard_upload(path: str) -> None:
    """Gradio keeps every upload in a folder of its own under its upload folder; an imported
    label file or zip is not needed again. Only such a folder is removed."""
    folder = Path(path).resolve().parent
    if folder.parent == Path(get_upload_folder()).resolve():
        shutil.rmtree(folder, ignore_errors=True)


class GuardedApp(App):
    """Gradio's own server class with :class:`app.server.RequestGuard` outside everything Gradio
    adds (its CORS middleware among them, whose headers the guard must be able to drop), and
    :class:`app.server.AssetCache` between them."""

    def __init__(self, *, hosts: set[str], **kwargs):
        super().__init__(**kwargs)
        self.guard_hosts = hosts
        # Starlette's error middleware answers an exception with this instead of a bare 500;
        # the guard then logs it and stops it there.
        self.add_exception_handler(Exception, error_answer)

    def build_middleware_stack(self):
        return RequestGuard(AssetCache(super().build_middleware_stack()), hosts=self.guard_hosts)


def launch_app(workspace: Workspace, *, host: str = "127.0.0.1", port: int = 7860,
               auth: list[str] | str | None = None, extra_hosts: list[str] | None = None) -> None:
    """Serve the app: Gradio inside :class:`app.server.RequestGuard`, videos by game id, the
    review screen's own routes (:func:`app.review.mount`).
    ``auth``: ``USER:PASS`` logins (one or a list); with any, every edit is the login's."""
    check_host(host, auth)
    logins = [auth] if isinstance(auth, str) else list(auth or [])
    credentials = [parse_auth(a) for a in logins] or None
    server = GuardedApp(hosts=allowed_hosts(host, extra_hosts or []))

    def users(request) -> str | None:
        """The login of a request (a gr.Request or Starlette's), from Gradio's session cookie."""
        raw = getattr(request, "request", None) or request
        cookies = getattr(raw, "cookies", None) or {}
        token = cookies.get(f"access-token-{server.cookie_id}") or cookies.get(
            f"access-token-unsecure-{server.cookie_id}")
        return server.tokens.get(token) if token else None

    workspace = workspace.ensure()
    store = Store.open(workspace)
    local = host in LOCAL_HOSTS
    public = (lambda text: text) if local else _public_paths(workspace)
    server.add_api_route(VIDEO_ROUTE, video_endpoint(store, users, needs_login=credentials is not None, public=public),
                         methods=["GET", "HEAD"], include_in_schema=False)
    mount(server, store, users=users if credentials else None, public=public)
    demo = build_app(workspace, server_paths=local, users=users if credentials else None, store=store)
    demo.launch(server_name=host, server_port=port, auth=credentials, share=False, max_file_size=MAX_UPLOAD,
                css_paths=[ASSETS / "app.css", ASSETS / "review.css"], head=HEAD, _app=server)
