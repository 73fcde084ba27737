#!/usr/bin/env python3
"""Review screen speed on a full match: open time and edit round trip, in Debian's Chromium.

Builds a 100-minute game (a small, cheap video; 2,000 labels; 2,000 predictions), starts the
app, and measures
  * server time to assemble the game (core.review.open_game, median of 5),
  * browser time from choosing the game to an interactive timeline (median of 5 opens),
  * the round trip of an edit: key press -> row committed to SQLite -> timeline updated
    (median of 40 edits: 20 adds with `1`, 20 undos).
Targets: open under 1.5 s, edit under 150 ms (median).

    python bench/ui.py
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' app launcher (conftest.running_app); core comes installed

from conftest import running_app  # noqa: E402
from core.ingest import import_source  # noqa: E402
from core.labels import CLASSES, LABEL_FILE, game_time  # noqa: E402
from core.review import open_game  # noqa: E402
from core.store import Store  # noqa: E402
from core.workspace import Workspace  # noqa: E402

MINUTES, EVENTS = 100, 2000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def build(root: Path) -> Workspace:
    game = root / "src" / "bench" / "2024" / "full match"
    game.mkdir(parents=True)
    n = MINUTES * 60 * 25
    with av.open(str(game / "224p.mp4"), "w", options={"movflags": "+faststart"}) as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 72, "yuv420p"
        s.options = {"preset": "ultrafast", "g": "25"}
        img = np.zeros((72, 128, 3), np.uint8)
        for i in range(n):
            img[:] = 40
            img[20:30, (i * 2) % 118:(i * 2) % 118 + 10] = 250
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    rng = np.random.default_rng(0)
    frames = np.sort(rng.choice(n - 100, EVENTS, replace=False))
    anns = [{"gameTime": game_time(int(f)), "label": CLASSES[int(rng.integers(12))], "position": str(int(f) * 40),
             "team": ["home", "away"][int(rng.integers(2))], "visibility": "visible"} for f in frames]
    (game / LABEL_FILE).write_text(json.dumps({"UrlLocal": "bench/2024/full match", "UrlYoutube": "",
                                               "annotations": anns}))
    ws = Workspace.at(root / "ws").ensure()
    with Store.open(ws) as store:
        import_source(store, root / "src", workspace=ws, split="test")
        gid = store.games()[0]["id"]
        store.register_model("v1")
        store.add_predictions("v1", gid, [(int(f) + 5, CLASSES[int(rng.integers(12))], "home", float(rng.random()))
                                          for f in rng.choice(n - 100, EVENTS, replace=False)])
    return ws


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ws = build(Path(tmp))
        print(f"built a {MINUTES}-minute game with {EVENTS} labels and {EVENTS} predictions "
              f"in {time.perf_counter() - t:.0f} s")
        with Store.open(ws) as store:
            gid = store.games()[0]["id"]
            server = []
            for _ in range(5):
                t = time.perf_counter()
                payload = open_game(store, gid)
                size = len(json.dumps(payload))
                server.append(time.perf_counter() - t)
        print(f"server: open_game {1000 * statistics.median(server):.0f} ms median, {size / 1e3:.0f} kB JSON, "
              f"{len(payload['events'])} events")
        with running_app(ws.root) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("#review [data-ready='1']", state="attached", timeout=60_000)
            first = time.perf_counter() - t
            opens = []
            for _ in range(5):
                t = time.perf_counter()
                page.evaluate("() => { const s = document.querySelector('#game-select'); "
                              "document.querySelector('#review [data-ready]').dataset.ready = '0'; "
                              "s.dispatchEvent(new Event('change')); }")
                page.wait_for_selector("#review [data-ready='1']", state="attached")
                opens.append(time.perf_counter() - t)
            in_page = int(page.evaluate("() => document.querySelector('#review [data-ready]').dataset.openMs"))
            print(f"browser: page load to interactive timeline {first:.2f} s; re-open the game "
                  f"{statistics.median(opens):.2f} s median (in-page {in_page} ms); "
                  f"{page.locator('.bs-marker').count()} marker elements at full zoom")
            edits, in_page_edits = [], []
            page.locator("#timeline .bs-marker").nth(100).click()
            for k in range(40):
                page.keyboard.press("ArrowRight")
                page.evaluate("() => document.querySelector('#edit-status').dataset.kind = 'waiting'")
                t = time.perf_counter()
                page.keyboard.press("1" if k % 2 == 0 else "Control+z")
                page.wait_for_function("() => document.querySelector('#edit-status').dataset.kind === 'saved'",
                                       polling="raf")
                edits.append(time.perf_counter() - t)
                in_page_edits.append(int(page.evaluate(
                    "() => document.querySelector('#review [data-ready]').dataset.lastEditMs")))
            browser.close()
    med_open = max(statistics.median(opens), statistics.median(server))
    med_edit = statistics.median(edits)
    print(f"edit round trip (key press -> stored -> timeline updated): median {1000 * med_edit:.0f} ms "
          f"(in-page {statistics.median(in_page_edits):.0f} ms), "
          f"p90 {1000 * sorted(edits)[int(0.9 * len(edits))]:.0f} ms")
    print(f"targets: open {statistics.median(opens):.2f} s / 1.5 s ({statistics.median(opens) / 1.5:.2f}x); "
          f"edit {1000 * med_edit:.0f} ms / 150 ms ({med_edit / 0.15:.2f}x); "
          f"{'MET' if med_open < 1.5 and med_edit < 0.15 else 'NOT MET'}")


if __name__ == "__main__":
    main()
