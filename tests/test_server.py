"""The server layer's own pieces, without starting the app: the cache of Gradio's assets, and
an edit sent again under its token."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.server import AssetCache
from conftest import annotation, make_game
from core.errors import BallspotError
from core.ingest import import_source
from core.once import Once
from core.store import Store


def _gradio(calls: list[str]):
    """A stand-in for Gradio's stack: answers every path with a body naming the path and the
    encoding asked for, in two chunks (as a file is streamed), 404 for /assets/missing.js."""
    async def app(scope, receive, send):
        calls.append(scope["path"])
        status = 404 if scope["path"].endswith("missing.js") else 200
        encoding = next((v for k, v in scope["headers"] if k == b"accept-encoding"), b"")  # the first, as Gradio
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/javascript"), (b"x-encoding", encoding),
                                (b"access-control-allow-origin", b"http://localhost:7860"), (b"set-cookie", b"a=b")]})
        await send({"type": "http.response.body", "body": scope["path"].encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"|" + encoding})
    return app


def _get(app, path: str, method: str = "GET", query: bytes = b"", extra: tuple = (),
         **headers: str) -> tuple[int, dict, bytes]:
    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()] + list(extra)}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_gradio_assets_are_answered_once_then_from_memory_with_the_same_bytes():
    calls: list[str] = []
    cache = AssetCache(_gradio(calls))
    first = _get(cache, "/assets/index-abc.js", accept_encoding="gzip, br", origin="http://localhost:7860")
    again = _get(cache, "/assets/index-abc.js", accept_encoding="gzip, br")
    assert first[2] == again[2] == b"/assets/index-abc.js|gzip, br"
    assert again == (200, {b"content-type": b"text/javascript", b"x-encoding": b"gzip, br"}, first[2])
    assert calls == ["/assets/index-abc.js"]  # and what was one request's (CORS, a cookie) is not replayed
    # Kept by the encoding Gradio chooses: another header asking for brotli gets the same answer;
    # one asking for none, another. Gradio's fonts are kept too.
    assert _get(cache, "/assets/index-abc.js", accept_encoding="br")[2] == first[2]
    assert _get(cache, "/assets/index-abc.js")[2] == b"/assets/index-abc.js|"
    _get(cache, "/static/fonts/a.woff2")
    _get(cache, "/static/fonts/a.woff2")
    assert calls == ["/assets/index-abc.js", "/assets/index-abc.js", "/static/fonts/a.woff2"]


def test_only_whole_successful_asset_answers_are_kept():
    calls: list[str] = []
    cache = AssetCache(_gradio(calls))
    for _ in range(2):
        assert _get(cache, "/assets/missing.js")[0] == 404  # a failure is asked again
        _get(cache, "/assets/video.js", range="bytes=0-10")  # a part of a file
        _get(cache, "/assets/index-abc.js", method="HEAD")
        _get(cache, "/ballspot/game/1")  # the store's data: never kept
        _get(cache, "/config")
        _get(cache, "/assets/index-abc.js", query=b"n=1")  # a query: a copy per variant would fill memory
        # Two Accept-Encoding headers: Gradio compresses by the first, a key by the last would
        # hand brotli to a client that cannot read it.
        _get(cache, "/assets/index-abc.js", extra=((b"accept-encoding", b"br"), (b"accept-encoding", b"gzip")))
    assert calls == ["/assets/missing.js", "/assets/video.js", "/assets/index-abc.js", "/ballspot/game/1",
                     "/config", "/assets/index-abc.js", "/assets/index-abc.js"] * 2
    assert cache.kept == {}


def test_the_cache_stops_growing_at_its_limit():
    calls: list[str] = []
    cache = AssetCache(_gradio(calls))
    cache.MAX_TOTAL = 100
    for k in range(20):
        _get(cache, f"/assets/file-{k:02d}.js")  # 17 bytes and more each
    assert 0 < cache.size <= 100 and len(cache.kept) < 20
    _get(cache, "/assets/file-19.js")  # not kept: asked again
    assert calls.count("/assets/file-19.js") == 2


# --------------------------------------------------------------------------- edits applied once


@pytest.fixture
def edit_client(workspace, tmp_path):
    """The review screen's routes on a bare server (no Gradio), over a game with one label."""
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from app.review import mount

    make_game(tmp_path / "src", "league/2024/a v b", [annotation(10)])
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="valid")
        gid = store.game("league/2024/a v b")["id"]
        server = FastAPI()
        mount(server, store)
        with TestClient(server) as client:
            yield client, store, gid


def _add(client, gid: int, frame: int, **extra):
    return client.post("/ballspot/edit", json={"game": gid, "cursor": 0, "author": "ana",
                                               "action": {"op": "add", "frame": frame, "label": "SHOT", "team": "home"},
                                               **extra})


def test_an_edit_sent_again_under_its_token_is_applied_once(edit_client):
    """The page sends an edit again, under the same token, when its reply was lost: the second
    request gets the first one's answer (saved), not a refusal of its own, and nothing is done
    twice. Without the token the same request is another edit."""
    client, store, gid = edit_client

    def post(action: dict, token: str | None = None) -> dict:
        body = {"game": gid, "cursor": 0, "author": "ana", "action": action}
        answer = client.post("/ballspot/edit", json=body if token is None else {**body, "token": token})
        assert answer.status_code == 200
        return answer.json()

    add = {"op": "add", "frame": 50, "label": "SHOT", "team": "home"}
    first, again = post(add, "add-0123456789"), post(add, "add-0123456789")
    assert first["ok"] and again == first
    assert not post(add)["ok"]  # without the token: refused as a second SHOT there, though it was saved
    label = next(lab for lab in store.labels(gid) if lab["frame"] == 50)
    move = {"op": "move", "id": f"l{label['id']}", "frame": 60, "revision": label["revision"]}
    moved = post(move, "move-0123456789")
    assert moved["ok"] and post(move, "move-0123456789") == moved
    assert store.label(label["id"])["frame"] == 60 and store.label(label["id"])["revision"] == label["revision"] + 1
    assert post(move)["current"]  # without the token: a conflict with its own saved edit
    undo = {"op": "undo"}
    assert post(undo, "undo-0123456789")["ok"] and post(undo, "undo-0123456789")["ok"]
    assert store.label(label["id"])["frame"] == 50  # one undo: the move undone, the label still there


@pytest.mark.parametrize("token", ["short", "x" * 65, "has space here", 12345678, ["t-0123456789abcdef"]])
def test_a_malformed_token_is_refused_and_nothing_is_written(edit_client, token):
    client, store, gid = edit_client
    before = store.labels(gid)
    answer = _add(client, gid, 60, token=token)
    assert answer.status_code == 400 and "token" in answer.json()["error"]
    assert store.labels(gid) == before


def test_once_runs_a_key_once_even_when_the_retry_comes_while_the_first_runs():
    once, runs, answers = Once(keep=2), [], []

    def slow():
        runs.append(1)
        time.sleep(0.3)
        return {"ok": len(runs)}

    threads = [threading.Thread(target=lambda: answers.append(once.run("k", slow))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs == [1] and answers == [{"ok": 1}] * 3
    assert once.run("other", lambda: "b") == "b" and once.run(None, lambda: "c") == "c"

    def fails():
        runs.append(1)
        raise BallspotError("refused: nothing written")
    with pytest.raises(BallspotError):
        once.run("f", fails)
    with pytest.raises(BallspotError):
        once.run("f", fails)  # a call that raised kept no answer: it runs again
    assert len(runs) == 3
    once.run("x", lambda: "x")
    once.run("y", lambda: "y")  # only the most recent answers are kept
    assert once.run("other", lambda: "again") == "again"
