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
