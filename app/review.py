"""The review screen: one gr.HTML whose browser code (assets/review.js) draws the player,
timeline, event list and filmstrip, and calls the ``server_functions`` below. Each of them is
a thin wrapper over ``core.review``; the store commits before any of them returns.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import gradio as gr

from core.errors import BallspotError
from core.active import review_queue
from core.review import delta, edit, filmstrip, game_choices, open_game, score_curve
from core.versions import active_version
from core.store import Store
from core.workspace import Workspace

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def video_url(path: str | None) -> str | None:
    """The URL Gradio serves a registered video from, in place, with HTTP Range support."""
    return f"/gradio_api/file={quote(str(Path(path).resolve()))}" if path else None


_SERVED: set[str] = set()


def serve_videos(store: Store) -> None:
    """Register each game's video file (not its folder: nothing else beside it) as static;
    Gradio keeps one global list, so only files not yet registered are added."""
    videos = {str(Path(g["video_path"]).resolve()) for g in store.games()
              if g["video_path"] and Path(g["video_path"]).is_file()} - _SERVED
    if videos:
        gr.set_static_paths(sorted(videos))
        _SERVED.update(videos)


def _payload(data) -> dict:
    """The JS client passes one object; accept it bare or wrapped in a list."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise BallspotError(f"expected an object, got {type(data).__name__}")
    return data


def review_screen(store: Store, workspace: Workspace) -> gr.HTML:
    """The review component; call inside a Blocks context."""

    def user(request: gr.Request | None, data: dict) -> str | None:
        name = getattr(request, "username", None) if request is not None else None
        return name or (str(data.get("author") or "").strip()[:64] or None)

    def list_games(data=None) -> list:
        return [[name, gid] for name, gid in game_choices(store)]

    def whoami(data=None, request: gr.Request = None) -> str | None:
        return getattr(request, "username", None) if request is not None else None

    def open_game_fn(data=None) -> dict:
        try:
            data = open_game(store, int(_payload(data)["game"]))
        except (BallspotError, KeyError, ValueError) as exc:
            return {"error": str(exc)}
        serve_videos(store)
        data["video_url"] = video_url(data["game"]["video"])
        return data

    def edit_fn(data=None, request: gr.Request = None) -> dict:
        data = _payload(data)
        game = int(data["game"])
        result = edit(store, game, dict(data.get("action") or {}), author=user(request, data),
                      cursor=int(data.get("cursor") or 0), version=active_version(store))
        return result.as_dict()

    def sync(data=None) -> dict:
        data = _payload(data)
        version = active_version(store)
        return {**delta(store, int(data["game"]), int(data.get("cursor") or 0), version), "version": version}

    def filmstrip_fn(data=None) -> list | dict:
        data = _payload(data)
        g = store.game(int(data["game"]))
        try:
            return filmstrip(g["video_path"], int(data["frame"]), int(g["frame_count"] or 0))
        except BallspotError as exc:
            return {"error": str(exc)}

    def score_curve_fn(data=None) -> str | None:
        data = _payload(data)
        return score_curve(workspace, active_version(store), int(data["game"]), str(data.get("label")))

    def review_queue_fn(data=None) -> list:
        data = _payload(data)
        items = review_queue(store, workspace, active_version(store), games=[int(data["game"])], limit=300)
        return [it.as_dict() for it in items]

    # The names the browser code calls.
    open_game_fn.__name__, edit_fn.__name__ = "open_game", "edit"
    filmstrip_fn.__name__, score_curve_fn.__name__ = "filmstrip", "score_curve"
    review_queue_fn.__name__ = "review_queue"
    return gr.HTML(
        html_template=(ASSETS / "review.html").read_text(),
        js_on_load=(ASSETS / "review.js").read_text(),
        server_functions=[list_games, whoami, open_game_fn, edit_fn, sync, filmstrip_fn, score_curve_fn,
                          review_queue_fn],
        elem_id="review", apply_default_css=False,
    )
