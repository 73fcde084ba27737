"""The running app as an attacker meets it: other web pages, other Host names, other users'
names, guessed passwords, swapped videos and malformed calls. Each test starts the real
server (launch.py) and talks HTTP to it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, annotation, make_game, running_app
from core.ingest import import_source
from core.store import Store
from core.workspace import Workspace

PASSWORD = "correct-horse"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    """One game with a video, two labels and a model's prediction."""
    root = tmp_path_factory.mktemp("sec")
    make_game(root / "src", "l/s/g", [annotation(3), annotation(9, "GOAL", "away")], video_frames=60)
    ws = Workspace.at(root / "W").ensure()
    with Store.open(ws) as store:
        import_source(store, root / "src", workspace=ws, split="test")
        store.register_model("v1")
        store.add_predictions("v1", store.games()[0]["id"], [(20, "PASS", "home", 0.9)])
    return ws


@pytest.fixture(scope="module")
def app(ws):
    with running_app(ws.root) as url:
        yield url


_REVIEW_IDS: dict[str, int] = {}


def review_id(client: httpx.Client, url: str) -> int:
    """The review component's id (the same for every session: it comes from the layout)."""
    if url not in _REVIEW_IDS:
        config = client.get(url + "config").json()
        _REVIEW_IDS[url] = next(c["id"] for c in config["components"]
                                if c.get("props", {}).get("elem_id") == "review")
    return _REVIEW_IDS[url]


def server_call(client: httpx.Client, url: str, fn: str, data, **headers) -> httpx.Response:
    body = {"session_hash": "test", "component_id": review_id(client, url), "fn_name": fn, "data": data}
    return client.post(url + "gradio_api/component_server", content=json.dumps(body),
                       headers={"Content-Type": "application/json", **headers})


def edit_call(client: httpx.Client, url: str, data, **headers) -> httpx.Response:
    """An edit as the review screen posts it, to its own route."""
    return client.post(url + "ballspot/edit", content=json.dumps(data),
                       headers={"Content-Type": "application/json", **headers})


def add_label(client, url, frame, **headers) -> httpx.Response:
    return edit_call(client, url, {"game": 1, "cursor": 0, "author": "x",
                                   "action": {"op": "add", "frame": frame, "label": "SHOT"}}, **headers)


def labels(ws: Workspace) -> list[tuple[int, str, str | None]]:
    with Store.open(ws) as store:
        return [(r["frame"], r["label"], r["author"]) for r in store.labels(1)]


# --------------------------------------------------------------------------- other sites


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Origin": "http://127.0.0.1:1"}, 403),  # the same site on another port is another origin
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
])
def test_a_request_from_another_origin_changes_nothing(app, ws, headers, status):
    before = labels(ws)
    with httpx.Client() as client:
        answer = add_label(client, app, 30, **headers)
    assert answer.status_code == status and "cross-site" in answer.text
    assert labels(ws) == before


def test_json_endpoints_refuse_other_content_types(app, ws):
    """A no-cors fetch may only send text/plain, form or multipart bodies: Gradio would parse
    text/plain as JSON."""
    before = labels(ws)
    with httpx.Client() as client:
        edit = {"game": 1, "cursor": 0, "action": {"op": "add", "frame": 31, "label": "SHOT"}}
        gradio = {"session_hash": "t", "component_id": review_id(client, app), "fn_name": "sync", "data": edit}
        for path, body in (("ballspot/edit", edit), ("gradio_api/component_server", gradio)):
            for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
                answer = client.post(app + path, content=json.dumps(body),
                                     headers={"Content-Type": ctype} if ctype else {})
                assert answer.status_code == 415, (path, ctype, answer.text)
        answer = client.post(app + "gradio_api/queue/join", content="{}", headers={"Content-Type": "text/plain"})
        assert answer.status_code == 415
    assert labels(ws) == before


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "127.0.0.1.nip.io", "[::2]"])
def test_a_host_the_app_does_not_serve_is_refused(app, host):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reads nothing."""
    with httpx.Client() as client:
        for method, path in (("GET", ""), ("GET", "config"), ("GET", "ballspot/video/1"), ("GET", "ballspot/game/1"),
                             ("GET", "ballspot/start"), ("POST", "gradio_api/component_server"),
                             ("POST", "ballspot/edit")):
            answer = client.request(method, app + path, headers={"Host": host})
            assert answer.status_code == 421 and "--allowed-host" in answer.text, (method, path)


def test_another_origin_reads_nothing(app):
    """Gradio's CORS answers any localhost origin with credentials; another page must not read
    the config, the videos, a game's events or the API's answers, nor embed the videos."""
    with httpx.Client() as client:
        for origin in ("http://localhost:3000", "http://evil.example"):
            for path in ("config", "ballspot/video/1", "ballspot/game/1", "ballspot/start", "gradio_api/info"):
                answer = client.get(app + path, headers={"Origin": origin, "Range": "bytes=0-10"})
                assert not any(k.lower().startswith("access-control-") for k in answer.headers), (origin, path)
        for mode in ("cors", "no-cors"):
            for path in ("ballspot/video/1", "ballspot/game/1", "ballspot/start?last=1"):
                answer = client.get(app + path, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": mode})
                assert answer.status_code == 403 and "GOAL" not in answer.text, (mode, path)
        # A link from another site still opens the app (a top-level navigation).
        page = client.get(app, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
        assert page.status_code == 200
        own = client.get(app + "config", headers={"Origin": app.rstrip("/")})
        assert own.status_code == 200


def test_unknown_api_names_and_bad_direct_calls_are_not_server_errors(app):
    with httpx.Client() as client:
        for route in ("call/nope", "run/nope", "run/predict"):
            answer = client.post(app + f"gradio_api/{route}", json={"data": []})
            assert answer.status_code in (400, 404), (route, answer.status_code, answer.text)
        for route, data in (("run/import", []), ("run/import", ["", None, "", False, ""]),
                            ("run/export", [["x"], "(labels)", False])):
            answer = client.post(app + f"gradio_api/{route}", json={"data": data})
            assert 400 <= answer.status_code < 500 and "Traceback" not in answer.text, (route, answer.text)


def test_the_app_itself_still_edits(app, ws):
    with httpx.Client() as client:
        same = add_label(client, app, 33, Origin=app.rstrip("/"), **{"Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 200 and same.json()["ok"], same.text
        plain = add_label(client, app, 34)  # a client that is not a browser sends no Origin
        assert plain.status_code == 200 and plain.json()["ok"], plain.text
        local = add_label(client, app.replace("127.0.0.1", "localhost"), 35)
        assert local.status_code == 200 and local.json()["ok"], local.text
    assert {33, 34, 35} <= {f for f, _, _ in labels(ws)}


def test_an_allowed_host_is_served(ws, tmp_path):
    with running_app(ws.root, "--allowed-host", "studio.lan") as url:
        with httpx.Client() as client:
            assert client.get(url + "config", headers={"Host": "studio.lan"}).status_code == 200
            assert client.get(url + "config", headers={"Host": "other.lan"}).status_code == 421


# --------------------------------------------------------------------------- malformed calls


MALFORMED = [
    ("component_server", "not json"),
    ("component_server", "[]"),
    ("component_server", "{}"),
    ("component_server", json.dumps({"session_hash": "s", "component_id": "x", "fn_name": "sync", "data": {}})),
    ("component_server", json.dumps({"session_hash": "s", "component_id": 99999, "fn_name": "sync", "data": {}})),
    ("component_server", json.dumps({"session_hash": "s", "component_id": 0, "fn_name": "sync", "data": {}})),
    ("component_server", json.dumps({"session_hash": 5, "component_id": None, "fn_name": [], "data": {}})),
]
EDITS = [
    None, [], "x", 5, {}, {"game": "1"}, {"game": None}, {"game": 999}, {"game": -1}, {"game": 1.5}, {"game": [1]},
    {"game": 2**70}, {"game": 1, "action": "add"}, {"game": 1, "action": []}, {"game": 1, "action": {}},
    {"game": 1, "action": {"op": None}}, {"game": 1, "action": {"op": "add", "frame": 2**64, "label": "PASS"}},
    {"game": 1, "action": {"op": "add", "frame": -5, "label": "PASS"}},
    {"game": 1, "action": {"op": "add", "frame": 1e308, "label": "PASS"}},
    {"game": 1, "action": {"op": "add", "frame": 5, "label": "PASS", "team": "nobody"}},
    {"game": 1, "action": {"op": "add", "frame": 5, "label": ["PASS"]}},
    {"game": 1, "action": {"op": "move", "id": "l1"}}, {"game": 1, "action": {"op": "move", "id": 1}},
    {"game": 1, "action": {"op": "move", "id": "l1", "revision": "x", "by": 1}},
    {"game": 1, "action": {"op": "move", "id": "l1", "revision": 1, "by": 2**80}},
    {"game": 1, "action": {"op": "delete", "id": "l" + "9" * 40, "revision": 1}},
    {"game": 1, "action": {"op": "undo"}, "cursor": "x"}, {"game": 1, "action": {"op": "redo"}, "cursor": 2**70},
    {"game": "\u00b2", "action": {"op": "undo"}},  # digits int() refuses, or reads as 1
    {"game": "\u0661", "action": {"op": "add", "frame": 5, "label": "PASS"}},
    {"game": 1, "action": {"op": "delete", "id": "l\u0661", "revision": 1}},
]
#: Bodies of the edit route that are not an edit at all: not JSON, not UTF-8, too large.
EDIT_BODIES = ["not json", "", "{", b"\xff\xfe", "null", "[]", "[5]", json.dumps({"game": 1, "pad": "x" * 2_000_000})]
OTHERS = [("filmstrip", {"game": 1}), ("filmstrip", {"game": 1, "frame": "x"}),
          ("filmstrip", {"game": 1, "frame": 2**70}),
          ("frame_image", {"game": 1, "frame": "x"}), ("sync", {"game": 1, "cursor": "x"}),
          ("score_curve", {"game": "x"}), ("review_queue", {"game": None}), ("nonexistent", {}), ("__init__", {})]


def test_malformed_calls_get_a_clear_answer_never_a_500(app, ws):
    """Every malformed call: a 4xx, or a 200 whose answer says what is wrong; never a 500 or a
    traceback; nothing stored."""
    before = labels(ws)
    answers = []
    with httpx.Client() as client:
        for route, body in MALFORMED:
            answers.append(client.post(app + f"gradio_api/{route}", content=body,
                                       headers={"Content-Type": "application/json"}))
        for data in EDITS:
            answers.append(edit_call(client, app, data))
        for body in EDIT_BODIES:
            answers.append(client.post(app + "ballspot/edit", content=body,
                                       headers={"Content-Type": "application/json"}))
        for fn, data in OTHERS:
            answers.append(server_call(client, app, fn, data))
        for path in ("ballspot/video/x", "ballspot/video/99", "ballspot/video/-1", "ballspot/video/" + "9" * 40,
                     "ballspot/game/x", "ballspot/game/99", "ballspot/game/-1", "ballspot/game/" + "9" * 40,
                     "ballspot/game/1.5", "ballspot/game/%C2%B2", "ballspot/game/%D9%A1", "ballspot/video/%C2%B2",
                     "ballspot/start?last=x", "ballspot/start?last=" + "9" * 40, "ballspot/start?last=-3",
                     "ballspot/start?last=%C2%B2"):
            answers.append(client.get(app + path))
    assert len(answers) >= 71
    for answer in answers:
        assert answer.status_code < 500, (answer.request.content[:200], answer.text[:300])
        assert "Traceback" not in answer.text and 'File "' not in answer.text
        assert "failed on the server" not in answer.text, (answer.request.content[:200], answer.text[:300])
        if answer.request.url.path.endswith("ballspot/edit"):  # always JSON: an error, or a refused edit
            reply = answer.json()
            assert reply.get("error") if answer.status_code == 400 else reply.get("ok") is False, \
                (answer.request.content[:300], answer.status_code, answer.text)
        if "/ballspot/game/" in answer.request.url.path:  # JSON naming what is not there
            assert answer.status_code == 404 and "no game" in answer.json()["error"].lower(), answer.text
        if answer.request.url.path.endswith("ballspot/start"):  # a last game that is not one: the first game
            assert answer.status_code == 200 and answer.json()["game"]["game"]["id"] == 1, answer.text[:300]
        if answer.status_code == 200 and answer.request.url.path.endswith("component_server"):
            reply = answer.json()
            assert isinstance(reply, dict) and (reply.get("error") or reply.get("ok") is False), \
                (answer.request.content[:300], answer.text)
            assert str(ROOT) not in answer.text
    assert labels(ws) == before


def test_a_bulk_action_of_the_most_predictions_fits_an_edit_and_a_larger_body_is_refused(app, ws):
    """Accepting what the filters show names every prediction: the edit route reads as many as
    a bulk action may name (core.review.MAX_BULK), and refuses a larger body, saying why."""
    from app.review import MAX_EDIT_BYTES
    from core.review import MAX_BULK

    before = labels(ws)
    events = [{"id": f"p{10_000_000 + k}", "revision": 123} for k in range(MAX_BULK)]
    bulk = {"game": 1, "cursor": 0, "action": {"op": "bulk", "decision": "accept", "threshold": 0.5, "events": events}}
    with httpx.Client(timeout=60) as client:
        answer = edit_call(client, app, bulk)  # read whole; refused for what it names, not for its size
        assert answer.status_code == 200 and answer.json()["ok"] is False, answer.text[:300]
        assert "10000000" in answer.json()["message"], answer.text[:300]
        large = edit_call(client, app, {**bulk, "pad": "x" * MAX_EDIT_BYTES})
        assert large.status_code == 400 and "at most" in large.json()["error"], large.text[:300]
    assert labels(ws) == before


# --------------------------------------------------------------------------- the video route


def test_the_video_route_serves_ranges_of_the_registered_video(app, ws):
    with Store.open(ws) as store:
        data = Path(store.game(1)["video_path"]).read_bytes()
    with httpx.Client() as client:
        whole = client.get(app + "ballspot/video/1")
        assert whole.status_code == 200 and whole.content == data
        part = client.get(app + "ballspot/video/1", headers={"Range": "bytes=10-99"})
        assert part.status_code == 206 and part.content == data[10:100]
        assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"
        tail = client.get(app + "ballspot/video/1", headers={"Range": "bytes=-50"})
        assert tail.status_code == 206 and tail.content == data[-50:]
        several = client.get(app + "ballspot/video/1", headers={"Range": "bytes=0-9, 20-29"})
        assert several.status_code == 206 and several.content == data[:10]
        for bad in (f"bytes={len(data)}-", "bytes=50-10", "lines=1-2", "bytes=-"):
            answer = client.get(app + "ballspot/video/1", headers={"Range": bad})
            assert answer.status_code == 416, bad
        # Gradio's own file route no longer serves videos by their path.
        assert client.get(app + f"gradio_api/file={store.path.parent}").status_code in (403, 404)


def test_a_video_swapped_for_a_link_to_the_database_is_never_served(tmp_path):
    make_game(tmp_path / "src", "l/s/g", [annotation(3)], video_frames=30)
    ws = Workspace.at(tmp_path / "W").ensure()
    with Store.open(ws) as store:
        import_source(store, tmp_path / "src", workspace=ws, split="test")
        video = Path(store.game(1)["video_path"])
    database = ws.db_path.read_bytes()[:16]
    with running_app(ws.root) as url, httpx.Client() as client:
        assert client.get(url + "ballspot/video/1").status_code == 200
        for swap in ("symlink", "hardlink", "folder"):
            video.unlink() if video.is_file() or video.is_symlink() else video.rmdir()
            if swap == "symlink":
                video.symlink_to(ws.db_path)
            elif swap == "hardlink":
                os.link(ws.db_path, video)
            else:
                video.mkdir()
            answer = client.get(url + "ballspot/video/1")
            assert answer.status_code == 404 and database not in answer.content, swap
            assert "re-import" in answer.text or "changed" in answer.text, answer.text


# --------------------------------------------------------------------------- logins


def login(client: httpx.Client, url: str, user: str, password: str) -> httpx.Response:
    return client.post(url + "login", data={"username": user, "password": password},
                       headers={"Origin": url.rstrip("/")})


@pytest.fixture(scope="module")
def auth_app(ws):
    with running_app(ws.root, "--auth", f"alice:{PASSWORD}", "--auth", f"bob:{PASSWORD}") as url:
        yield url


def test_with_logins_the_author_is_the_session_user(auth_app, ws):
    with httpx.Client() as client:
        assert login(client, auth_app, "alice", PASSWORD).status_code == 200
        review_id(client, auth_app)
    with httpx.Client() as client:
        assert add_label(client, auth_app, 40).status_code == 401  # no login, no edit
        for path in ("ballspot/video/1", "ballspot/game/1", "ballspot/start"):  # nor a read
            answer = client.get(auth_app + path)
            assert answer.status_code == 401 and "GOAL" not in answer.text, path
        assert login(client, auth_app, "alice", PASSWORD).status_code == 200
        answer = edit_call(client, auth_app, {"game": 1, "cursor": 0, "author": "mallory",
                                              "action": {"op": "add", "frame": 41, "label": "CROSS"}})
        assert answer.json()["ok"], answer.text
        assert client.get(auth_app + "ballspot/video/1").status_code == 200
        assert client.get(auth_app + "ballspot/game/1").json()["game"]["id"] == 1
        assert client.get(auth_app + "ballspot/start").json()["game"]["game"]["id"] == 1
    assert (41, "CROSS", "alice") in labels(ws)
    assert not any(author == "mallory" for _, _, author in labels(ws))


def test_with_logins_undo_is_scoped_to_the_session_user(auth_app, ws):
    with Store.open(ws) as store:
        bobs = store.add_label(1, 44, "OUT", "home", author="bob")
    with httpx.Client() as client:
        assert login(client, auth_app, "alice", PASSWORD).status_code == 200
        answer = edit_call(client, auth_app, {"game": 1, "cursor": 0, "author": "bob", "action": {"op": "undo"}})
        assert answer.status_code == 200
    with Store.open(ws) as store:
        assert store.label(bobs["id"])["frame"] == 44  # alice's undo never reaches bob's edit


def test_failed_logins_are_limited(ws):
    import asyncio

    with running_app(ws.root, "--auth", f"alice:{PASSWORD}") as url:
        # A client a proxy on this machine names: 40 guesses in parallel get no more than 5
        # checked, since each counts before it is checked.
        async def guesses() -> list[int]:
            async with httpx.AsyncClient() as client:
                answers = await asyncio.gather(*(
                    client.post(url + "login", data={"username": "alice", "password": f"g{i}"},
                                headers={"Origin": url.rstrip("/"), "X-Forwarded-For": "203.0.113.7"})
                    for i in range(40)))
            return [a.status_code for a in answers]
        codes = asyncio.run(guesses())
        assert sum(c != 429 for c in codes) == 5 and all(c == 429 or 400 <= c < 500 for c in codes), codes
        # This machine's own client still has its attempts: each client is counted apart.
        with httpx.Client() as client:
            assert login(client, url, "alice", PASSWORD).status_code == 200  # a success uses no attempt
            codes = [login(client, url, "alice", f"guess-{i}").status_code for i in range(5)]
            assert all(400 <= c < 500 and c != 429 for c in codes), codes
            assert login(client, url, "alice", PASSWORD).status_code == 429
            assert login(client, url, "alice", "guess-6").status_code == 429
        # A guesser naming itself anew with each request gets no more than LOGIN_FAILURES_ALL (20)
        # checked by everyone together: 10 so far, so two more names' 5 each, then none.
        with httpx.Client() as client:
            def guess(i: int) -> httpx.Response:
                return client.post(url + "login", data={"username": "alice", "password": f"n{i}"},
                                   headers={"Origin": url.rstrip("/"), "X-Forwarded-For": f"198.51.100.{i}"})
            codes = [guess(i).status_code for i in range(12)]
            assert sum(c != 429 for c in codes) == 10 and codes[10:] == [429, 429], codes
            assert "all clients together" in guess(99).text


def test_the_login_counts_forget_made_up_clients_and_the_window_passes():
    """Guesses under a new name each (a forwarded address per request) count together, keep no
    memory per name once past, and a minute later the app takes attempts again."""
    from app.server import LOGIN_FAILURES_ALL, LOGIN_WINDOW_S, RequestGuard

    now = [0.0]
    guard = RequestGuard(None, {"127.0.0.1"}, clock=lambda: now[0])
    answers = [guard._attempt(f"10.0.{i // 256}.{i % 256}")[0] for i in range(10_000)]
    assert sum(a is None for a in answers) == LOGIN_FAILURES_ALL
    assert "all clients together" in answers[-1]
    assert len(guard.attempts) == LOGIN_FAILURES_ALL  # refused names left nothing behind
    now[0] = LOGIN_WINDOW_S + 1
    assert guard._attempt("192.0.2.1")[0] is None  # the window passed
    for minute in range(2, 22):  # 20 minutes of 20 new names each: 400 names, most long past
        now[0] = minute * (LOGIN_WINDOW_S + 1)
        assert all(guard._attempt(f"172.16.{minute}.{i}")[0] is None for i in range(LOGIN_FAILURES_ALL))
    assert len(guard.attempts) <= 256 + LOGIN_FAILURES_ALL


def test_a_success_gives_back_only_its_own_login_attempt():
    """Guesses under fresh names, each followed by a login to the guesser's own account: the
    successes take back their own counts, not the guesses', so the guesses still stop at
    LOGIN_FAILURES_ALL (before, each success took back the newest count: guessing unlimited)."""
    import asyncio

    from app.server import LOGIN_FAILURES_ALL, RequestGuard

    async def login_app(scope, receive, send):  # the right password is "own"
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200 if body == b"password=own" else 400,
                    "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = RequestGuard(login_app, {"127.0.0.1"}, clock=lambda: 0.0)  # one instant: equal clock values

    async def post(client: str, password: str) -> int:
        scope = {"type": "http", "method": "POST", "path": "/login", "client": (client, 1), "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/x-www-form-urlencoded")]}
        body = f"password={password}".encode()
        answers = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                answers.append(message["status"])
        await guard(scope, receive, send)
        return answers[0]

    async def attack() -> list[int]:
        codes = []
        for i in range(60):
            codes.append(await post(f"198.51.100.{i}", f"guess-{i}"))
            assert await post("192.0.2.9", "own") in (200, 429)
        return codes
    codes = asyncio.run(attack())
    assert codes.count(400) == LOGIN_FAILURES_ALL and codes[LOGIN_FAILURES_ALL:] == [429] * (60 - LOGIN_FAILURES_ALL)
    assert len(guard.all_attempts) == LOGIN_FAILURES_ALL


def test_another_site_cannot_log_a_user_out(auth_app):
    with httpx.Client() as client:
        assert login(client, auth_app, "bob", PASSWORD).status_code == 200
        answer = client.get(auth_app + "logout", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
        assert answer.status_code == 403
        assert client.get(auth_app + "config").status_code == 200  # still logged in


def queue_call(client: httpx.Client, url: str, fn_index: int, data: list) -> dict:
    """Run an event handler the way the page does (queue/join, then its event stream)."""
    session = f"s{fn_index}"
    joined = client.post(url + "gradio_api/queue/join", json={"data": data, "fn_index": fn_index,
                                                              "session_hash": session})
    assert joined.status_code == 200, joined.text
    with client.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}, timeout=60) as events:
        for line in events.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("no answer")


def _poll_index(client: httpx.Client, url: str) -> int:
    """The Models tab's timer handler (private: no API name), found by its outputs."""
    config = client.get(url + "config").json()
    log_id = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "job-log")
    return next(i for i, d in enumerate(config["dependencies"]) if log_id in d.get("outputs", [])
                and any(t[1] == "tick" for t in d.get("targets", [])))


@pytest.mark.parametrize("auth, words", [("alice:short", "at least 8"), ("alice:", "at least 8"),
                                         (":password123", "USER:PASS"), ("alice", "USER:PASS")])
def test_auth_refuses_weak_or_malformed_logins(tmp_path, auth, words):
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--workspace", str(tmp_path / "W"), "--no-demo",
                           "--auth", auth], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_a_remote_user_sees_no_server_paths(ws, tmp_path):
    """Listening beyond this machine: the page and the import log name workspace-relative paths."""
    with running_app(ws.root, "--host", "0.0.0.0", "--auth", f"alice:{PASSWORD}") as url, httpx.Client() as client:
        assert login(client, url, "alice", PASSWORD).status_code == 200
        page = client.get(url + "config").text
        assert str(ws.root) not in page
        opened = client.get(url + "ballspot/game/1").json()
        assert str(ws.root.parent) not in json.dumps(opened) and opened["video_url"].endswith("video/1")
        first = client.get(url + "ballspot/start").text
        assert str(ws.root.parent) not in first and str(ROOT) not in first
        assert str(ROOT) not in page and "configs/" not in page  # config names, not server paths
        # A failing job's log (a traceback with the server's paths) reaches a remote user as names.
        with Store.open(ws) as store:
            job = store.create_job("infer", {"version": "nope"})
            log_file = ws.runs_dir / "job-remote.log"
            log_file.write_text(f'Traceback (most recent call last):\n  File "{ROOT}/core/jobs.py", line 1\n'
                                f"BallspotError: {ws.root}/models/nope is missing\n")
            store.transition_job(job["id"], ["queued"], status="failed", log_path=str(log_file),
                                 error=f"{ws.root.parent}/elsewhere/x.mp4 is gone")
        shown = json.dumps(queue_call(client, url, _poll_index(client, url), [job["id"], []]))
        assert "jobs.py" in shown and "x.mp4" in shown
        assert str(ROOT) not in shown and str(ws.root) not in shown and str(ws.root.parent) not in shown


# --------------------------------------------------------------------------- a real browser

ATTACK_PAGE = """<!doctype html><title>cat pictures</title><script>
const body = JSON.stringify(%(body)s);
Promise.allSettled([
  fetch(%(target)s, {method: 'POST', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, body}),
  fetch(%(target)s, {method: 'POST', mode: 'no-cors',
                     headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body}),
]).then(() => { document.title = 'sent'; });
</script>"""


def test_a_page_on_another_origin_cannot_edit_in_a_browser(app, ws, tmp_path):
    """Chromium resolves attacker.test to this machine; a page there posts to the app the way
    a malicious site would (no-cors, text/plain: no preflight). Nothing may change; opening the
    app under that name (DNS rebinding) is refused; the app's own page still loads."""
    import threading
    from http.server import HTTPServer, SimpleHTTPRequestHandler
    from urllib.parse import urlsplit

    from conftest import free_port
    from test_browser import ARGS, CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    body = {"game": 1, "cursor": 0, "action": {"op": "add", "frame": 50, "label": "GOAL"}}
    (tmp_path / "index.html").write_text(ATTACK_PAGE % {"body": json.dumps(body),
                                                        "target": json.dumps(app + "ballspot/edit")})
    port = free_port()
    handler = lambda *a: SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    evil = HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    before = labels(ws)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                        args=[*ARGS, "--host-resolver-rules=MAP attacker.test 127.0.0.1"])
            page = browser.new_page()
            page.goto(f"http://attacker.test:{port}/")
            page.wait_for_function("document.title === 'sent'", timeout=20_000)
            assert labels(ws) == before, "a page on another origin added a label"
            rebound = page.goto(f"http://attacker.test:{urlsplit(app).port}/config")
            assert rebound.status == 421
            own = page.goto(app)
            assert own.status == 200
            page.wait_for_selector("#review", timeout=60_000)
            browser.close()
    finally:
        evil.shutdown()
    assert labels(ws) == before


# --------------------------------------------------------------------------- confirmed edits


def test_confirmed_edits_survive_kill_9_after_the_database_was_typed_into_import(tmp_path):
    """The reported loss: Import's path box given the workspace's own database, another process
    reading the store, edits that each said "saved", then kill -9: every edit must be there."""
    import signal

    make_game(tmp_path / "src", "l/s/g", [annotation(3)], video_frames=30)
    ws = Workspace.at(tmp_path / "W").ensure()
    with Store.open(ws) as store:
        import_source(store, tmp_path / "src", workspace=ws, split="test")
    from gradio_client import Client

    with running_app(ws.root) as url:
        log, *_ = Client(url, verbose=False).predict(str(ws.db_path), None, "", False, "", api_name="/import")
        assert "database" in log and "nothing was imported" in log, log
        games = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--workspace", str(ws.root), "games"],
                               capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert games.returncode == 0 and "l/s/g" in games.stdout
        with httpx.Client() as client:
            for i in range(10):
                reply = add_label(client, url, 10 + i).json()
                assert reply["ok"], reply
        # Another reader comes and goes (it would checkpoint and delete the -wal if the app
        # had lost its locks), then the app dies without any chance to clean up.
        subprocess.run([sys.executable, str(ROOT / "launch.py"), "--workspace", str(ws.root), "games"],
                       capture_output=True, timeout=120, cwd=ROOT, check=True)
        pids = subprocess.run(["pgrep", "-f", f"--workspace {ws.root} --port"], capture_output=True, text=True)
        for pid in pids.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
    assert {10 + i for i in range(10)} <= {f for f, _, _ in labels(ws)}


def test_uploads_and_earlier_exports_are_not_left_behind(ws, tmp_path, monkeypatch):
    """An uploaded label file is deleted once imported (or refused); an export's temporary
    folder once the next export is made."""
    import glob
    import tempfile

    from gradio_client import Client, handle_file

    uploads = tmp_path / "gradio-uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    doc = {"UrlLocal": "up/load/game", "annotations": [annotation(5)]}
    (tmp_path / "Labels-ball.json").write_text(json.dumps(doc))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "Labels-ball.json").write_text(json.dumps({"annotations": [annotation(5)]}))
    exports_before = set(glob.glob(f"{tempfile.gettempdir()}/ballspot-export-*"))
    with running_app(ws.root) as url:
        client = Client(url, verbose=False)
        log, *_ = client.predict("", handle_file(str(tmp_path / "Labels-ball.json")), "test", False, "",
                                 api_name="/import")
        assert "Imported 1 game(s)" in log, log
        log, *_ = client.predict("", handle_file(str(tmp_path / "bad" / "Labels-ball.json")), "test", False, "",
                                 api_name="/import")
        assert "UrlLocal" in log and "missing" in log, log
        assert not list(uploads.rglob("Labels-ball.json")), "an imported upload was kept"
        client.predict([], "(labels)", False, api_name="/export")
        first = set(glob.glob(f"{tempfile.gettempdir()}/ballspot-export-*")) - exports_before
        client.predict([], "(labels)", False, api_name="/export")
        now = set(glob.glob(f"{tempfile.gettempdir()}/ballspot-export-*")) - exports_before
        assert len(first) == 1 and not first & now and len(now) == 1
    with Store.open(ws) as store:
        assert store.game("up/load/game")["video_path"] is None
