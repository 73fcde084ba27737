"""The review screen: one gr.HTML whose browser code (assets/review.js) draws the player,
timeline, event list and filmstrip. It reads games and posts edits on routes of its own
(:func:`mount`) and calls the ``server_functions`` below for the rest. Each is a thin wrapper
over ``core.review``; the store commits before any of them returns.

Why routes of its own: an edit is the call an analyst waits on, dozens of times a minute, and
a plain Starlette route behind the server's guard (same origin, JSON only, allowed Host,
login) does none of the work Gradio's ``component_server`` does per call. And the first game
is asked for by a script in the page's head (:data:`HEAD`) while Gradio still loads its
components' code, so the server assembles it then, not later while it is busy serving them.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Callable

import gradio as gr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.errors import BallspotError
from core.once import Once, token_of
from core.active import review_queue
from core import review
from core.review import MAX_BULK, delta, filmstrip, first_game, game_choices, open_game, score_curve
from core.versions import active_version
from core.store import Store
from core.video import open_game_video
from core.workspace import Workspace

from app.server import url_id, video_url

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: Height in pixels of a filmstrip frame shown enlarged over the player.
ENLARGED_HEIGHT = 540
#: The review screen's own routes, under /ballspot/, which the guard keeps to the app's own
#: pages: its edits (POST, JSON), a game's events and the first screen (GET, JSON).
EDIT_ROUTE = "/ballspot/edit"
GAME_ROUTE = "/ballspot/game/{game_id}"
START_ROUTE = "/ballspot/start"
#: In the page's head: asks for the first screen (with the game this browser had open last) as
#: soon as Gradio has read its config, before it loads the components' code and builds the
#: page; the review screen takes the answer.
HEAD = ("<script>window.ballspotStart = fetch(" + json.dumps(START_ROUTE) + " + '?last=' + "
        "encodeURIComponent(localStorage.getItem('ballspot.game') || ''), {credentials: 'same-origin'})"
        ".then((r) => r.ok ? r.json() : null).catch(() => null);</script>")
#: The largest edit body read: a bulk action names up to MAX_BULK predictions (id and revision,
#: about 30 bytes each); any other edit is a few hundred bytes.
MAX_EDIT_BYTES = 64 * MAX_BULK + 4096
#: Who is logged in, from a request (None without a login): the session decides, never the client.
Users = Callable[[object], "str | None"]
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
    gid = url_id(str(value)) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    if gid is None:
        raise BallspotError(f"'game' must be a game id, not {str(value)[:40]!r}")
    return gid


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


def edit_author(users: Users | None, request, data: dict) -> str | None:
    """Who an edit is by: with logins, the request's login whatever the client says; without,
    the name the page sends (the reviewer's name it asked for), or nobody."""
    if users is not None:
        name = users(request)
        if not name:
            raise BallspotError("log in again: this session has no user")
        return name
    return str(data.get("author") or "").strip()[:64] or None


def apply_edit(store: Store, data, author: str | None, public: Callable[[str], str] = str) -> dict:
    """One edit of the review screen (``{"game", "action", "cursor"}``) on the active version;
    the answer of :func:`core.review.edit`, committed before it returns."""
    data = _payload(data)
    action = data.get("action") or {}
    if not isinstance(action, dict):
        raise BallspotError(f"'action' must be an object, not {type(action).__name__}")
    result = review.edit(store, _game_id(data), dict(action), author=author,
                         cursor=int(data.get("cursor") or 0), version=active_version(store))
    out = result.as_dict()
    out["message"] = public(out["message"])
    return out


async def _json_body(request: Request, limit: int) -> object:
    """The request's JSON body, read no further than ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BallspotError(f"an edit is at most {limit} bytes (a bulk action at most {MAX_BULK} predictions)")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BallspotError(f"the body is not JSON: {exc}") from None


def game_text(store: Store, game_id: int) -> str:
    """A game as the screen opens it (:func:`core.review.open_game` and where its video is
    served), as JSON text."""
    data = open_game(store, game_id)
    data["video_url"] = video_url(data["game"]["id"]) if data["game"]["video"] else None
    return json.dumps(data)


def start_text(store: Store, last: int | None) -> str:
    """The first screen as JSON text: the picker's entries and the game it opens on
    (:func:`core.review.first_game`; null without games)."""
    games = [[name, gid] for name, gid in game_choices(store)]
    first = first_game(store, active_version(store), last)
    return f'{{"games": {json.dumps(games)}, "game": {game_text(store, first) if first is not None else "null"}}}'


def mount(server, store: Store, *, users: Users | None = None, public: Callable[[str], str] = str) -> None:
    """Adds the review screen's routes to ``server`` (a FastAPI app behind
    :class:`app.server.RequestGuard`). Every answer is JSON; ``{"error"}`` with 400 for a
    malformed request, 404 for a game that is not there, 401 without a login where the app has
    logins. Reads are plain functions, which the server runs in its thread pool."""

    def logged_out(request: Request) -> JSONResponse | None:
        if users is not None and not users(request):
            return JSONResponse({"error": "log in first"}, status_code=401)
        return None

    def read(text: Callable[[Request], str]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            refusal = logged_out(request)
            if refusal is not None:
                return refusal
            try:
                return Response(text(request), media_type="application/json", headers={"Cache-Control": "no-store"})
            except BallspotError as exc:
                return JSONResponse({"error": public(str(exc))}, status_code=404)
        return handle

    def game(request: Request) -> str:
        gid = url_id(request.path_params["game_id"])
        if gid is None:
            raise BallspotError(f"no game {request.path_params['game_id'][:40]!r}")
        return game_text(store, gid)

    def start(request: Request) -> str:
        return start_text(store, url_id(request.query_params.get("last", "")))

    once = Once()  # an edit sent again with its token (its reply was lost) is not applied twice

    @answers_errors(public)
    def edit(data, request: Request) -> dict:
        data = _payload(data)  # an object (or one in a list) before anything reads it
        author, token = edit_author(users, request, data), token_of(data.get("token"))
        return once.run(None if token is None else (author, token), lambda: apply_edit(store, data, author, public))

    async def post_edit(request: Request) -> JSONResponse:
        refusal = logged_out(request)
        if refusal is not None:
            return refusal
        try:
            data = await _json_body(request, MAX_EDIT_BYTES)
        except BallspotError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        answer = await run_in_threadpool(edit, data, request)
        return JSONResponse(answer, status_code=400 if "error" in answer and "ok" not in answer else 200)

    server.add_api_route(EDIT_ROUTE, post_edit, methods=["POST"], include_in_schema=False)
    server.add_api_route(GAME_ROUTE, read(game), methods=["GET"], include_in_schema=False)
    server.add_api_route(START_ROUTE, read(start), methods=["GET"], include_in_schema=False)


def review_screen(store: Store, workspace: Workspace, *, users: Users | None = None,
                  public: Callable[[str], str] = str) -> gr.HTML:
    """The review component; call inside a Blocks context. ``users``: the logged-in user of a
    request when the app has logins; then every edit is that user's, whatever the client says.
    Games open and edits arrive through the routes of :func:`mount`, which the server adds."""
    safe = answers_errors(public)

    def list_games(data=None) -> list:
        """The picker's entries, as they change with every edit."""
        return [[name, gid] for name, gid in game_choices(store)]

    def whoami(data=None, request: gr.Request = None) -> str | None:
        return users(request) if users is not None else None

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
    filmstrip_fn.__name__, score_curve_fn.__name__ = "filmstrip", "score_curve"
    review_queue_fn.__name__, frame_image_fn.__name__ = "review_queue", "frame_image"
    functions = [safe(fn) for fn in (list_games, whoami, sync, filmstrip_fn,
                                     score_curve_fn, review_queue_fn, frame_image_fn)]
    return gr.HTML(
        html_template=(ASSETS / "review.html").read_text(),
        js_on_load=(ASSETS / "review.js").read_text(),
        server_functions=functions,
        elem_id="review", apply_default_css=False,
        # Set by the Games tab (a row clicked): {"game": id, "at": time}; the screen opens that game.
        goto_game=None,
        edit_url=EDIT_ROUTE, game_url=GAME_ROUTE, start_url=START_ROUTE,
    )
