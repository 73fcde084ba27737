"""The review screen: one gr.HTML whose browser code (assets/review.js) draws the player,
timeline, event list and filmstrip, and calls the ``server_functions`` below. Each of them is
a thin wrapper over ``core.review``; the store commits before any of them returns.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Callable

import gradio as gr

from core.errors import BallspotError
from core.active import review_queue
from core.review import delta, edit, filmstrip, game_choices, open_game, score_curve, start_game
from core.versions import active_version
from core.store import Store
from core.video import open_game_video
from core.workspace import Workspace

from app.server import video_url

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: Height in pixels of a filmstrip frame shown enlarged over the player.
ENLARGED_HEIGHT = 540
log = logging.getLogger("ballspot.review")


def _payload(data) -> dict:
    """The JS client passes one object; accept it bare or wrapped in a list."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise BallspotError(f"expected an object, got {type(data).__name__}")
    return data


def _game_id(data: dict) -> int:
    value = data.get("game")
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise BallspotError(f"'game' must be a game id, not {value!r}")
    return int(value)


def answers_errors(public: Callable[[str], str]):
    """Every server function answers ``{"error": message}`` instead of raising: a malformed
    call gets a clear message, never an HTTP 500 or a traceback. Unexpected failures are
    logged on the server with their traceback and answered without it."""
    def wrap(fn):
        @functools.wraps(fn)
        def safe(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except BallspotError as exc:
                return {"error": public(str(exc))}
            except (KeyError, ValueError, TypeError, OverflowError) as exc:
                return {"error": f"malformed request: {type(exc).__name__}: {public(str(exc))[:200]}"}
            except Exception:  # noqa: BLE001 - the user gets a message, the log the traceback
                log.exception("%s failed", fn.__name__)
                return {"error": f"{fn.__name__} failed on the server (see its log); nothing was changed"}
        return safe
    return wrap


def review_screen(store: Store, workspace: Workspace, *, users: Callable[[object], str | None] | None = None,
                  public: Callable[[str], str] = str) -> gr.HTML:
    """The review component; call inside a Blocks context. ``users``: the logged-in user of a
    request when the app has logins; then every edit is that user's, whatever the client says."""
    safe = answers_errors(public)

    def user(request: gr.Request | None, data: dict) -> str | None:
        if users is not None:
            name = users(request)
            if not name:
                raise BallspotError("log in again: this session has no user")
            return name
        return str(data.get("author") or "").strip()[:64] or None

    def list_games(data=None) -> dict:
        """The picker's entries; with ``start``, also the game to open first (the one with the
        most pending predictions of the active model; None: the client reopens its last one)."""
        games = [[name, gid] for name, gid in game_choices(store)]
        wants_start = bool(_payload(data or {}).get("start"))
        return {"games": games, "start": start_game(store, active_version(store)) if wants_start else None}

    def whoami(data=None, request: gr.Request = None) -> str | None:
        return users(request) if users is not None else None

    def open_game_fn(data=None) -> dict:
        data = open_game(store, _game_id(_payload(data)))
        data["video_url"] = video_url(data["game"]["id"]) if data["game"]["video"] else None
        return data

    def open_game_text(data=None) -> str | dict:
        """``open_game`` as JSON text, what the screen loads: Gradio's response encoder walks
        every value of an answer (about 90 ms for a full match's 4,000 events), a string not."""
        return json.dumps(open_game_fn(data))

    def edit_fn(data=None, request: gr.Request = None) -> dict:
        data = _payload(data)
        action = data.get("action") or {}
        if not isinstance(action, dict):
            raise BallspotError(f"'action' must be an object, not {type(action).__name__}")
        result = edit(store, _game_id(data), dict(action), author=user(request, data),
                      cursor=int(data.get("cursor") or 0), version=active_version(store))
        out = result.as_dict()
        out["message"] = public(out["message"])
        return out

    def sync(data=None) -> dict:
        data = _payload(data)
        version = active_version(store)
        return {**delta(store, _game_id(data), int(data.get("cursor") or 0), version), "version": version}

    def filmstrip_fn(data=None) -> list | dict:
        data = _payload(data)
        g = store.game(_game_id(data))
        if not g["video_path"]:
            raise BallspotError(f"{g['url_local']} has no video")
        with open_game_video(g) as f:  # by game id, checked against the import: never another file
            return filmstrip(f, int(data["frame"]), int(g["frame_count"] or 0))

    def frame_image_fn(data=None) -> dict:
        """One frame, large: what a click on a filmstrip frame shows over the player."""
        data = _payload(data)
        g = store.game(_game_id(data))
        if not g["video_path"]:
            raise BallspotError(f"{g['url_local']} has no video")
        with open_game_video(g) as f:
            frames = filmstrip(f, int(data["frame"]), int(g["frame_count"] or 0), radius=0, height=ENLARGED_HEIGHT)
        if not frames:
            raise BallspotError(f"frame {data['frame']} of {g['url_local']} could not be decoded")
        return frames[0]

    def score_curve_fn(data=None) -> str | None:
        data = _payload(data)
        return score_curve(workspace, active_version(store), _game_id(data), str(data.get("label")))

    def review_queue_fn(data=None) -> list:
        data = _payload(data)
        items = review_queue(store, workspace, active_version(store), games=[_game_id(data)], limit=300)
        return [it.as_dict() for it in items]

    # The names the browser code calls.
    open_game_fn.__name__, edit_fn.__name__ = "open_game", "edit"
    filmstrip_fn.__name__, score_curve_fn.__name__ = "filmstrip", "score_curve"
    review_queue_fn.__name__, frame_image_fn.__name__ = "review_queue", "frame_image"
    functions = [safe(fn) for fn in (list_games, whoami, open_game_fn, open_game_text, edit_fn, sync, filmstrip_fn,
                                     score_curve_fn, review_queue_fn, frame_image_fn)]
    return gr.HTML(
        html_template=(ASSETS / "review.html").read_text(),
        js_on_load=(ASSETS / "review.js").read_text(),
        server_functions=functions,
        elem_id="review", apply_default_css=False,
        # Set by the Games tab (a row clicked): {"game": id, "at": time}; the screen opens that game.
        goto_game=None,
    )
