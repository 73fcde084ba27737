"""The web server around the Gradio app: who may reach it, and the video route.

Why a layer of its own: Gradio serves the page and its API, but three things a review tool
must promise are not Gradio's to decide.

* **Only this app's own pages change the store.** Browsers let any web page send a POST to
  ``127.0.0.1`` (a ``no-cors`` fetch with a ``text/plain`` body needs no preflight, and
  Gradio parses it as JSON). :class:`RequestGuard` refuses every state-changing request whose
  ``Origin`` (else ``Sec-Fetch-Site``) is another site, every JSON endpoint called with another
  content type, and every request whose ``Host`` is not a name this app serves (DNS
  rebinding: a page on ``evil.example`` that resolves to 127.0.0.1 would otherwise read the
  replies). Clients that are not browsers (``gradio_client``, curl) send no ``Origin``: they
  are not a cross-site threat and pass.
* **Logins cannot be guessed at speed**: failed logins per client are limited.
* **Videos are served by game id**, opened without following links and checked against what
  was recorded at import (:func:`core.video.open_game_video`): a registered path swapped for a
  link to the database is refused, never served.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections import deque
from typing import Callable, Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.access import LOCAL_HOSTS
from core.errors import BallspotError
from core.store import Store
from core.video import open_game_video

log = logging.getLogger("ballspot.server")

#: Wildcard listening addresses: they say where to listen, not which name clients use.
WILDCARDS = ("0.0.0.0", "::", "")
#: Methods that only read. Everything else must come from the app's own pages.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: Routes that take something other than JSON, and what they take.
FORM_ROUTES = {
    "/gradio_api/upload": ("multipart/form-data",),
    "/gradio_api/process_recording": ("multipart/form-data",),
    "/login": ("application/x-www-form-urlencoded", "multipart/form-data"),
}
#: Failed logins a client may make per window before it is answered 429.
LOGIN_FAILURES = 5
#: Failed logins all clients together may make per window: a guesser who can name itself anew
#: with each request (X-Forwarded-For, which the server trusts from this machine, e.g. through
#: an SSH tunnel) still gets no more than these. Then everyone waits out the window.
LOGIN_FAILURES_ALL = 20
LOGIN_WINDOW_S = 60.0
#: The scope key a login attempt's count is kept under until its answer says whether it succeeded.
LOGIN_STAMP = "ballspot.login_stamp"
#: Where the review screen's video player reads a game's video.
VIDEO_ROUTE = "/ballspot/video/{game_id}"


def url_id(text: str) -> int | None:
    """A whole number in a URL (a game id, ``?last=``): ASCII digits only, at most 18 of them
    (``str.isdigit`` also accepts "²", which ``int`` refuses, and "١", which it reads as 1)."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def video_url(game_id: int) -> str:
    return VIDEO_ROUTE.format(game_id=int(game_id))


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> set[str]:
    """The ``Host`` names the app answers: the local names, the ``--host`` it listens on (and,
    listening on every interface, this machine's own name and addresses), and ``--allowed-host``."""
    names = {*LOCAL_HOSTS, *(h.strip().lower() for h in extra if h.strip())}
    if host in WILDCARDS:
        hostname = socket.gethostname()
        names |= {hostname.lower(), socket.getfqdn().lower()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(hostname, None)}
        except OSError:
            pass  # no resolver: the machine's name alone, or --allowed-host
    else:
        names.add(host.lower())
    return names


def _host_name(value: str) -> str:
    """``example.org:7860`` -> ``example.org``; ``[::1]:7860`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` names the app at ``Host``: same name and port (a Host
    without a port, behind a reverse proxy, has the default port of the origin's scheme)."""
    theirs, ours = urlsplit(origin), urlsplit(f"//{host}")
    try:
        their_port, our_port = theirs.port, ours.port
    except ValueError:
        return False
    default = {"http": 80, "https": 443}.get(theirs.scheme)
    if default is None or not theirs.hostname:
        return False  # "null", file:, extensions
    return theirs.hostname == ours.hostname and (their_port or default) == (our_port or default)


class RequestGuard:
    """ASGI middleware: Host allow-list, same-origin requests, content types, login rate limit,
    no cross-origin reads, and every exception answered without a traceback.

    Every refusal is a short plain-text answer that says why (never a 500)."""

    def __init__(self, app: ASGIApp, hosts: set[str], *, clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.hosts = hosts
        self.clock = clock
        #: Per client: times of login attempts not (yet) known to have succeeded.
        self.attempts: dict[str, deque[float]] = {}
        #: The same, all clients together.
        self.all_attempts: deque[float] = deque()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.check(scope, headers)
        if refusal is not None:
            status, text = refusal
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await PlainTextResponse(text, status_code=status)(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = self._answer(scope, headers, send)
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - answered here, logged with its traceback
            log.error("%s %s failed", scope["method"], scope["path"], exc_info=exc)
            if not started:
                await error_answer(Request(scope), exc)(scope, receive, send)

    def check(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """Why a request is refused, as (HTTP status, message); None when it may go on."""
        host = headers.get("host", "")
        if _host_name(host) not in self.hosts:
            return 421, f"Host {host!r} is not served by this app; start it with --allowed-host NAME to use that name."
        method = scope.get("method", "GET")
        path = scope["path"].rstrip("/") or "/"
        site = headers.get("sec-fetch-site", "same-origin")
        if site in ("cross-site", "same-site"):
            # Another site may link to the app (a navigation), never read from it, embed its
            # videos, or log its user out.
            navigation = headers.get("sec-fetch-mode") == "navigate" and method == "GET"
            if not navigation or path == "/logout" or path.startswith("/ballspot/"):
                return 403, f"cross-site request refused (Sec-Fetch-Site: {site})"
        if scope["type"] == "http" and method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and not _same_origin(origin, host):
            return 403, f"cross-site request refused: Origin {origin!r} is not this app ({host})"
        if site not in ("same-origin", "none"):
            return 403, f"cross-site request refused (Sec-Fetch-Site: {site})"
        if scope["type"] == "http":
            kinds = FORM_ROUTES.get(path, ("application/json",))
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in kinds:
                return 415, f"{path} takes {' or '.join(kinds)}, not {ctype or 'a body without a type'}"
            if path == "/login":
                refused, stamp = self._attempt(self._client(scope))
                if refused is not None:
                    return 429, refused
                scope[LOGIN_STAMP] = stamp  # the count a success gives back
        return None

    @staticmethod
    def _client(scope: Scope) -> str:
        client = scope.get("client")
        return client[0] if client else "?"

    def _attempt(self, client: str) -> tuple[str | None, float]:
        """Count a login attempt before it is checked (so parallel guesses count too): (why it is
        refused, when the client or all clients together used their attempts of the last minute;
        the time it is counted under, told apart from every other attempt's, which a success gives
        back, and only that one).
        A client's count is dropped once empty or past, so names made up per request keep no memory."""
        now = self.clock()
        if len(self.attempts) > 256:  # at most LOGIN_FAILURES_ALL of them are in the window
            self.attempts = {k: v for k, v in self.attempts.items() if v and now - v[-1] <= LOGIN_WINDOW_S}
        recent, everyone = self.attempts.pop(client, deque()), self.all_attempts
        for times in (recent, everyone):
            while times and now - times[0] > LOGIN_WINDOW_S:
                times.popleft()
        try:
            if len(recent) >= LOGIN_FAILURES:
                return f"too many failed logins: wait a minute ({LOGIN_FAILURES} a minute are allowed)", now
            if len(everyone) >= LOGIN_FAILURES_ALL:
                return (f"too many failed logins on this app from all clients together: wait a minute "
                        f"({LOGIN_FAILURES_ALL} a minute are allowed)"), now
            stamp = now if not everyone or everyone[-1] < now else everyone[-1] + 1e-6
            recent.append(stamp)
            everyone.append(stamp)
            return None, stamp
        finally:
            if recent:
                self.attempts[client] = recent

    def _answer(self, scope: Scope, headers: dict[str, str], send: Send) -> Send:
        """Wraps ``send``: a successful login gives its attempt back; CORS headers that would
        let another origin read the answer are dropped (Gradio reflects any localhost origin,
        with credentials); a Gradio route's 500 for a call it could not run is the caller's
        error (400) unless the server failed."""
        path = scope["path"].rstrip("/")
        client = self._client(scope)
        origin = headers.get("origin")
        foreign = origin is not None and not _same_origin(origin, headers.get("host", ""))
        direct_api = path.startswith(("/gradio_api/run/", "/gradio_api/api/"))

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                if path == "/login" and scope["method"] == "POST" and message["status"] < 400:
                    stamp = scope.get(LOGIN_STAMP)
                    for times in (self.attempts.get(client), self.all_attempts):
                        if times and stamp in times:
                            times.remove(stamp)
                if foreign:
                    message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                          if not k.lower().startswith(b"access-control-")]
                if direct_api and message["status"] == 500:
                    message["status"] = 400
            await send(message)
        return answer


# --------------------------------------------------------------------------- Gradio's assets


class AssetCache:
    """ASGI middleware: keeps Gradio's own script and style files, once answered, in memory.

    A fresh page asks for about 85 of them before the review screen can start, and Gradio
    compresses each one again for every request (brotli, in the server's one event loop), so
    on a small machine the page waits on the server. The files under ``/assets/`` carry a hash
    of their content in their names and those under ``/static/`` ship with Gradio: neither
    changes while the server runs. They are public (Gradio serves them without a login).

    What no request can make it keep for others: only whole 200 answers to plain GETs without
    a query string or a range are kept, each under the encoding Gradio's compression chose for
    it (brotli, gzip or none, read from the first ``Accept-Encoding`` as Gradio reads it; a
    request with two is passed through), without the headers that belong to one request
    (CORS, cookies); and no more than ``MAX_TOTAL`` bytes in all."""

    PREFIXES = ("/assets/", "/static/")
    #: Larger answers are not kept (Gradio's largest script is well under it).
    MAX_BYTES = 4 << 20
    #: All answers kept, together (Gradio's assets take about 10 MB in all encodings).
    MAX_TOTAL = 64 << 20
    #: Headers of one request's answer, never replayed to another.
    PERSONAL = (b"access-control-", b"set-cookie")

    def __init__(self, app: ASGIApp):
        self.app = app
        self.kept: dict[tuple[str, str], tuple[list, bytes]] = {}
        self.size = 0

    @staticmethod
    def encoding(values: list[bytes]) -> str:
        """What Gradio's compression answers a request with these ``Accept-Encoding`` values."""
        first = values[0].decode("latin-1") if values else ""
        return "br" if "br" in first else "gzip" if "gzip" in first else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(self.PREFIXES) \
                or scope.get("query_string"):
            return await self.app(scope, receive, send)
        names = [k.lower() for k, _ in scope["headers"]]
        if b"range" in names or names.count(b"accept-encoding") > 1:
            return await self.app(scope, receive, send)
        key = (scope["path"], self.encoding([v for k, v in scope["headers"] if k.lower() == b"accept-encoding"]))
        if key in self.kept:
            headers, body = self.kept[key]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        start: dict = {}
        parts: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body") and start.get("status") == 200:
                    self._keep(key, start.get("headers", []), b"".join(parts))
            await send(message)
        await self.app(scope, receive, keep)

    def _keep(self, key: tuple[str, str], headers: list, body: bytes) -> None:
        if key in self.kept or len(body) > self.MAX_BYTES or self.size + len(body) > self.MAX_TOTAL:
            return
        self.kept[key] = ([(k, v) for k, v in headers if not k.lower().startswith(self.PERSONAL)], body)
        self.size += len(body)


# --------------------------------------------------------------------------- the video route

RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
CHUNK = 1 << 20


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """The first byte range of a ``Range`` header as (start, end inclusive); None for the whole
    file; "unsatisfiable" when it cannot be served. Several ranges: the first is served (a
    206 of one part is a valid answer, and video players ask for one)."""
    if not header:
        return None
    first = header.split(",")[0]
    m = RANGE.match(first)
    if not m or (not m.group(1) and not m.group(2)):
        return "unsatisfiable"
    if not m.group(1):  # the last N bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n and size else "unsatisfiable"
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


def video_endpoint(store: Store, user: Callable[[Request], str | None],
                   needs_login: bool, public: Callable[[str], str] = str) -> Callable[[Request], Response]:
    """The handler of :data:`VIDEO_ROUTE`: a game's video, by id, with HTTP Range support. A
    plain function, which the server runs in its thread pool: it reads the store and opens a
    file, which must not hold up the event loop every other request waits on."""

    def serve(request: Request) -> Response:
        if needs_login and not user(request):
            return PlainTextResponse("log in first", status_code=401)
        gid = url_id(request.path_params["game_id"])
        if gid is None:
            return PlainTextResponse(f"no game {request.path_params['game_id'][:40]!r}", status_code=404)
        try:
            game = store.game(gid)
            f = open_game_video(game)
        except BallspotError as exc:
            return PlainTextResponse(public(str(exc)), status_code=404)
        size = os.fstat(f.fileno()).st_size
        wanted = parse_range(request.headers.get("range"), size)
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if wanted == "unsatisfiable":
            f.close()
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        start, end = wanted if wanted is not None else (0, size - 1)
        if wanted is not None:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        media = "video/mp4" if game["video_path"].lower().endswith((".mp4", ".m4v", ".mov")) else \
            "video/webm" if game["video_path"].lower().endswith((".webm", ".mkv")) else "application/octet-stream"
        if request.method == "HEAD":
            f.close()
            return Response(status_code=206 if wanted else 200, headers=headers, media_type=media)

        def chunks():
            with f:
                f.seek(start)
                left = end - start + 1
                while left > 0:
                    data = f.read(min(CHUNK, left))
                    if not data:
                        return
                    left -= len(data)
                    yield data
        return StreamingResponse(chunks(), status_code=206 if wanted else 200, headers=headers, media_type=media)
    return serve




# --------------------------------------------------------------------------- errors

#: What a malformed request makes Gradio's routes raise (a body that is not JSON or not the
#: shape a route expects, an unknown component): the caller's fault, answered 400.
MALFORMED = (ValueError, KeyError, TypeError, IndexError, AttributeError)


def error_answer(request: Request, exc: Exception) -> Response:
    """Any exception a route lets through: a short message, never a traceback. Malformed
    requests are 400; anything else is the server's fault (500, logged by the server)."""
    from pydantic import ValidationError  # what FastAPI raises for a body of the wrong shape

    malformed = isinstance(exc, (*MALFORMED, ValidationError))
    if type(exc).__name__ == "FnIndexInferError":  # an API name the app does not have
        return PlainTextResponse(f"{request.url.path}: no such API", status_code=404)
    if malformed:
        return PlainTextResponse(f"malformed request to {request.url.path}: {type(exc).__name__}", status_code=400)
    return PlainTextResponse(f"{request.url.path} failed on the server (see its log); nothing was changed",
                             status_code=500)
