"""The server layer's own pieces, without starting the app: the cache of Gradio's assets."""
from __future__ import annotations

import asyncio

from app.server import AssetCache


def _gradio(calls: list[str]):
    """A stand-in for Gradio's stack: answers every path with a body naming the path and the
    encoding asked for, in two chunks (as a file is streamed), 404 for /assets/missing.js."""
    async def app(scope, receive, send):
        calls.append(scope["path"])
        status = 404 if scope["path"].endswith("missing.js") else 200
        encoding = dict(scope["headers"]).get(b"accept-encoding", b"")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/javascript"), (b"x-encoding", encoding)]})
        await send({"type": "http.response.body", "body": scope["path"].encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"|" + encoding})
    return app


def _get(app, path: str, method: str = "GET", **headers: str) -> tuple[int, dict, bytes]:
    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}
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
    first = _get(cache, "/assets/index-abc.js", accept_encoding="gzip, br")
    again = _get(cache, "/assets/index-abc.js", accept_encoding="gzip, br")
    assert first == again == (200, {b"content-type": b"text/javascript", b"x-encoding": b"gzip, br"},
                              b"/assets/index-abc.js|gzip, br")
    assert calls == ["/assets/index-abc.js"]
    # Another encoding is another answer; Gradio's fonts are kept too.
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
    assert calls == ["/assets/missing.js", "/assets/video.js", "/assets/index-abc.js", "/ballspot/game/1",
                     "/config"] * 2
    assert cache.kept == {}
