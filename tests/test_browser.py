"""The review screen in a real browser: Playwright driving Debian's Chromium against the app.

Screenshots of failures land in tests/artifacts/. In CI (CI set) a missing Chromium fails
the run instead of skipping it.
"""
from __future__ import annotations

import io
import os
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, running_app
from core.ingest import import_source
from core.store import Store
from core.synth import RenderOptions, SynthConfig, generate_game
from core.workspace import Workspace

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: CI must run `apt-get install -y chromium`")
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    """A synthetic game with its labels and a model's predictions (the labels, moved a little)."""
    root = tmp_path_factory.mktemp("browser")
    generate_game(root / "src", SynthConfig(minutes=0.4, seed=5, render=RenderOptions(320, 180), exact=False))
    ws = Workspace.at(root / "ws").ensure()
    with Store.open(ws) as store:
        import_source(store, root / "src", workspace=ws, split="test")
        gid = store.games()[0]["id"]
        store.register_model("v1")
        store.add_predictions("v1", gid, [(lab["frame"] + 3, lab["label"], lab["team"], 0.5 + 0.01 * (i % 40))
                                          for i, lab in enumerate(store.labels(gid))])
    return ws


@pytest.fixture(scope="module")
def app(workspace):
    with running_app(workspace.root) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def named_context(browser, **options):
    """A browser context whose reviewer already gave a name (the screen asks once, on the first
    edit, where there are no logins; test_review_walkthrough answers that question itself)."""
    context = browser.new_context(**options)
    context.add_init_script("localStorage.setItem('ballspot.author', 'tester')")
    return context


@contextmanager
def browsing(browser, request, *, named: bool = True, **options):
    """A page in a context of its own (``named``: whose reviewer already gave a name): script
    errors in the page fail the test, and a failure leaves a screenshot in tests/artifacts/."""
    context = named_context(browser, **options) if named else browser.new_context(**options)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
        assert not errors, errors
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        raise
    finally:
        context.close()


@pytest.fixture
def page(browser, app, request):
    context = named_context(browser, viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(app)
    wait_ready(pg)
    yield pg
    failed = getattr(request.node, "rep_call", None)  # set by conftest's report hook
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, errors


def wait_ready(pg) -> None:
    pg.wait_for_selector("#review [data-ready='1'], #review[data-ready='1']", state="attached", timeout=60_000)


def status(pg) -> str:
    return pg.locator("#edit-status").text_content()


@contextmanager
def saved(pg):
    """Wait until the edit made inside the block is reported saved (or fails)."""
    pg.evaluate("document.querySelector('#edit-status').dataset.kind = 'waiting'")
    yield
    pg.wait_for_function(
        "() => ['saved', 'error', 'conflict'].includes(document.querySelector('#edit-status').dataset.kind)")


def press_on_prediction(pg, nth: int, key: str) -> str:
    """Click the nth pending prediction's marker, press ``key``, wait for the save; its id."""
    marker = pg.locator("#timeline .bs-marker.prediction[data-status='pending']").nth(nth)
    event_id = marker.get_attribute("data-id")
    marker.click()
    with saved(pg):
        pg.keyboard.press(key)
    return event_id


def current_frame(pg) -> int:
    return int(pg.locator("#frame-number").text_content())


def video_frame(pg) -> int:
    return pg.evaluate("() => Math.floor(document.querySelector('#player').currentTime * 25)")


def test_video_plays_and_a_marker_click_seeks_to_its_exact_frame(page):
    page.wait_for_function("() => document.querySelector('#player').readyState >= 2", timeout=30_000)
    codec = page.evaluate("() => document.querySelector('#player').canPlayType('video/mp4; codecs=\"avc1.42E01E\"')")
    assert codec in ("probably", "maybe")
    markers = page.locator("#timeline .bs-marker.label")
    assert markers.count() > 3
    for k in (1, markers.count() // 2, markers.count() - 1):
        marker = markers.nth(k)
        frame = int(marker.get_attribute("data-frame"))
        assert marker.get_attribute("data-id") and marker.get_attribute("data-label")
        marker.click()
        page.wait_for_function(f"() => !document.querySelector('#player').seeking && "
                               f"Math.floor(document.querySelector('#player').currentTime * 25) === {frame}")
        assert current_frame(page) == frame and video_frame(page) == frame
        assert page.locator(f"#events .bs-row.selected[data-frame='{frame}']").count() == 1
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => Math.floor(document.querySelector('#player').currentTime * 25) === {frame + 1}")
    assert current_frame(page) == frame + 1
    page.locator("#filmstrip figure.centre").wait_for()
    assert page.locator("#filmstrip figure").count() == 9


def test_keyboard_edits_land_in_the_store_and_survive_a_reload(page, workspace):
    store = Store.open(workspace)
    gid = store.games()[0]["id"]
    first = page.locator("#timeline .bs-marker.label").first
    first.click()
    f = int(first.get_attribute("data-frame")) + 2
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert current_frame(page) == f
    with saved(page):
        page.keyboard.press("1")
    assert "added PASS" in status(page), status(page)
    added = [r for r in store.labels(gid) if r["frame"] == f and r["label"] == "PASS" and r["source"] == "human"]
    assert len(added) == 1
    assert page.locator(f"#timeline .bs-marker[data-id='l{added[0]['id']}']").count() == 1
    with saved(page):
        page.keyboard.press("Control+z")
    assert not [r for r in store.labels(gid) if r["frame"] == f and r["source"] == "human"]
    assert page.locator(f"#timeline .bs-marker[data-id='l{added[0]['id']}']").count() == 0

    picker = page.locator("#game-select option:checked")
    reviewed = int(picker.text_content().split(" reviewed")[0].rsplit(", ", 1)[1].split("/")[0])
    pid = press_on_prediction(page, 2, "a")
    assert store.prediction(int(pid[1:]))["status"] == "accepted"
    # The picker's count follows the edit without a reload.
    page.wait_for_function(f"() => document.querySelector('#game-select option:checked').textContent"
                           f".includes(', {reviewed + 1}/')", timeout=5_000)
    oid = press_on_prediction(page, 4, "r")
    assert store.prediction(int(oid[1:]))["status"] == "rejected"

    page.reload()
    wait_ready(page)
    made = store.label_made_by(int(pid[1:]))  # an accepted prediction is shown as the label it made
    assert page.locator(f"#timeline .bs-marker[data-id='{pid}']").count() == 0
    assert page.locator(f"#timeline .bs-marker[data-id='l{made['id']}']").get_attribute("data-status") == "accepted"
    assert page.locator(f"#timeline .bs-marker[data-id='{oid}']").get_attribute("data-status") == "rejected"
    # `a` on it again says so (it is the label now, not a prediction to accept) and changes nothing.
    page.locator(f"#timeline .bs-marker[data-id='l{made['id']}']").click()
    page.keyboard.press("a")
    assert "already accepted" in status(page) and page.locator("#edit-status").get_attribute("data-kind") == "info"
    # Undo after the reload still works: it comes from the store's history.
    with saved(page):
        page.keyboard.press("Control+z")
    assert store.prediction(int(oid[1:]))["status"] == "pending"
    store.close()


def test_an_edit_whose_reply_is_lost_is_sent_again_and_saved_once(page, workspace):
    """The connection drops after the server saved an edit: the page asks again under the
    edit's token, gets the first answer and says saved; the store holds the label once."""
    store = Store.open(workspace)
    gid = store.games()[0]["id"]
    sent = []

    def lose_the_first_reply(route):
        sent.append(route.request.post_data_json)
        if len(sent) == 1:
            route.fetch()  # the server gets the edit and saves it...
            route.abort("connectionreset")  # ...and the page never sees the reply
        else:
            route.continue_()

    page.route("**/ballspot/edit", lose_the_first_reply)
    marker = page.locator("#timeline .bs-marker.label").nth(1)
    marker.click()
    f = int(marker.get_attribute("data-frame")) + 3
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert current_frame(page) == f
    with saved(page):
        page.keyboard.press("7")  # THROW IN, a class no label has right there
    page.unroute("**/ballspot/edit")
    assert page.locator("#edit-status").get_attribute("data-kind") == "saved", status(page)
    assert "added THROW IN" in status(page)
    assert len(sent) == 2 and sent[0]["token"] == sent[1]["token"] and sent[0] == sent[1]
    added = [r for r in store.labels(gid) if r["frame"] == f and r["label"] == "THROW IN"]
    assert len(added) == 1
    assert page.locator(f"#timeline .bs-marker[data-id='l{added[0]['id']}']").count() == 1
    with saved(page):
        page.keyboard.press("Control+z")
    assert not [r for r in store.labels(gid) if r["frame"] == f and r["label"] == "THROW IN"]
    store.close()


def test_watching_through_shift_a_accepts_what_was_played_and_nothing_else(page, workspace):
    """The analyst plays the game, stops where a marker looks wrong and rejects it, and Shift+A
    accepts, as one undo step, the other pending predictions in the stretch played; those after
    it stay pending. p after playing selects the event just passed, not the one before the
    selection made before playing."""
    store = Store.open(workspace)
    gid = store.games()[0]["id"]
    page.wait_for_function("() => document.querySelector('#player').readyState >= 2", timeout=30_000)
    page.keyboard.press("Shift+A")
    assert "play the video first" in status(page)  # nothing played yet: nothing to accept
    page.locator("#timeline .bs-marker.label").first.click()  # a selection before playing
    page.keyboard.press("g")
    page.keyboard.type("0")
    page.keyboard.press("Enter")
    page.select_option("#speed", "4")
    page.keyboard.press(" ")
    page.wait_for_function("() => Number(document.querySelector('#frame-number').textContent) >= 350", timeout=20_000)
    page.keyboard.press(" ")
    page.wait_for_function("() => document.querySelector('#player').paused")
    band = page.locator("#watched")
    assert band.is_visible()
    first, last = int(band.get_attribute("data-from")), int(band.get_attribute("data-to"))
    assert first == 0 and last >= 350
    here = current_frame(page)
    page.keyboard.press("p")  # from the playhead: the event just passed
    passed = max(e["frame"] for e in store.labels(gid) + store.predictions(gid, "v1") if e["frame"] < here)
    assert int(page.locator("#events .bs-row.selected").get_attribute("data-frame")) == passed

    watched = [p for p in store.predictions(gid, "v1") if first <= p["frame"] <= last and p["status"] == "pending"]
    later = [p for p in store.predictions(gid, "v1") if p["frame"] > last and p["status"] == "pending"]
    assert len(watched) >= 3 and later
    wrong = watched[1]
    page.locator(f"#timeline .bs-marker[data-id='p{wrong['id']}']").click()
    with saved(page):
        page.keyboard.press("r")
    steps = len(store.history(gid, limit=1000))
    with saved(page):
        page.keyboard.press("Shift+A")
    assert f"accepted {len(watched) - 1} pending prediction(s) watched" in status(page), status(page)
    status_of = {p["id"]: p["status"] for p in store.predictions(gid, "v1")}
    assert status_of[wrong["id"]] == "rejected"
    assert all(status_of[p["id"]] == "accepted" for p in watched if p is not wrong)
    assert all(status_of[p["id"]] == "pending" for p in later)
    assert len(store.history(gid, limit=1000)) == steps + 1
    assert not band.is_visible()  # the next stretch starts where this one ended
    page.keyboard.press("Shift+A")
    assert "play the video first" in status(page)

    with saved(page):
        page.keyboard.press("Control+z")  # one step takes the stretch back, not the rejection
    status_of = {p["id"]: p["status"] for p in store.predictions(gid, "v1")}
    assert all(status_of[p["id"]] == "pending" for p in watched if p is not wrong)
    assert status_of[wrong["id"]] == "rejected"
    with saved(page):
        page.keyboard.press("Control+z")
    assert store.prediction(wrong["id"])["status"] == "pending"

    # Another tab decides one of a stretch's predictions: Shift+A is a conflict, nothing is
    # written, and the band stays, to be accepted again.
    page.keyboard.press("g")
    page.keyboard.type("0")
    page.keyboard.press("Enter")
    page.keyboard.press(" ")
    page.wait_for_function("() => Number(document.querySelector('#frame-number').textContent) >= 350", timeout=20_000)
    page.keyboard.press(" ")
    page.wait_for_function("() => document.querySelector('#player').paused")
    first, last = int(band.get_attribute("data-from")), int(band.get_attribute("data-to"))
    watched = [p for p in store.predictions(gid, "v1") if first <= p["frame"] <= last and p["status"] == "pending"]
    store.reject(watched[0]["id"], reviewer="ben")
    before = store.dump()
    with saved(page):
        page.keyboard.press("Shift+A")
    assert page.locator("#edit-status").get_attribute("data-kind") == "conflict", status(page)
    assert store.dump() == before
    assert band.is_visible() and int(band.get_attribute("data-from")) == first
    store.undo(gid, author="ben")

    # A click on a marker ahead while the video plays (it seeks and plays on): what is skipped is
    # not watched; the stretch starts again there.
    ahead = next(m for m in page.locator("#timeline .bs-marker.label").all()
                 if 450 <= int(m.get_attribute("data-frame")) <= 540)
    target = int(ahead.get_attribute("data-frame"))
    page.keyboard.press(" ")
    ahead.click()
    page.wait_for_function(f"() => Number(document.querySelector('#frame-number').textContent) >= {target + 20}",
                           timeout=20_000)
    page.keyboard.press(" ")
    assert target <= int(band.get_attribute("data-from")) <= target + 5, (target, band.get_attribute("data-from"))
    store.close()


def test_typing_in_a_field_does_not_edit(page, workspace):
    store = Store.open(workspace)
    before = len(store.labels(store.games()[0]["id"]))
    page.locator("#author").fill("")  # the fixture's reviewer name
    page.locator("#author").click()
    page.keyboard.type("ana 1")
    assert page.locator("#author").input_value() == "ana 1"
    page.wait_for_timeout(300)
    assert len(store.labels(store.games()[0]["id"])) == before
    store.close()


def test_export_from_the_ui_gives_the_labels_file(page, workspace):
    store = Store.open(workspace)
    game = store.games()[0]
    expected = {(r["frame"] * 40, r["label"], r["team"]) for r in store.labels(game["id"])}
    store.close()
    page.get_by_role("tab", name="Export").click()
    page.get_by_role("button", name="Export SoccerNet JSON (.zip)").click()
    link = page.locator("a[download]").first
    link.wait_for(timeout=30_000)
    body = page.request.get(link.get_attribute("href")).body()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
        assert names == [f"{game['url_local']}/Labels-ball.json"]
        import json
        doc = json.loads(zf.read(names[0]))
    assert {(int(a["position"]), a["label"], a["team"]) for a in doc["annotations"]} == expected


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    """The demo workspace (the committed demo model; short games so CI stays quick)."""
    from core.demo import build_demo

    ws = Workspace.at(tmp_path_factory.mktemp("demo") / "ws").ensure()
    with Store.open(ws) as store:
        build_demo(store, ws, synth=SynthConfig(minutes=0.6, seed=2024, render=RenderOptions(320, 180, ball_scale=3),
                                                exact=False))
    with running_app(ws.root) as url:
        yield url, ws


def test_retrain_from_the_ui_shows_progress_and_the_new_version(browser, demo_app, request):
    from core.effort import CUT_GRID

    url, ws = demo_app
    with Store.open(ws) as store:  # the demo measured its model's review cut on its validation game
        cut = store.model("demo")["metrics"]["review_cut"]
    assert cut in CUT_GRID
    with browsing(browser, request, viewport={"width": 1400, "height": 1000}) as pg:
        pg.goto(url)
        wait_ready(pg)
        assert pg.locator("#review-cut").inner_text() == f"cut \u2265 {cut:.2f}"
        pg.get_by_role("tab", name="Models").click()
        assert "no run yet" in pg.locator("#job-plot").inner_text()  # before any job, the chart says so
        pg.locator("#retrain input").first.click()
        pg.get_by_role("option", name="tiny.yaml").click()
        pg.get_by_label("Epochs (0: the config's)").fill("1")
        pg.locator("#retrain-button").click()
        row = pg.locator("#jobs .bs-job").first
        row.wait_for(timeout=30_000)
        seen, phases = set(), set()
        deadline = pg.evaluate("Date.now()") + 240_000
        while pg.evaluate("Date.now()") < deadline:
            seen.add(int(row.get_attribute("data-progress") or 0))
            phases.add(row.locator(".bs-job-phase").inner_text())
            if row.get_attribute("data-status") in ("done", "failed", "cancelled"):
                break
            pg.wait_for_timeout(100)
        assert row.get_attribute("data-status") == "done", row.inner_text()
        # The job's own bar moved: it showed the job part-way, then the job finished.
        assert {v for v in seen if 0 < v < 100}, f"progress did not move: {sorted(seen)}"
        assert row.locator(".bs-job-fill").evaluate("e => e.style.width") == "100%"
        assert not row.locator(".bs-job-cancel").is_visible()  # nothing left to cancel
        known = {"starting", "pretraining", "ball track", "training", "inference", "finishing"}
        assert {p.split(" · ")[0] for p in phases} & known, phases  # the bar said what the job was doing
        # One epoch: the chart still shows its points (a marker per series), not an empty line.
        pg.wait_for_function("() => document.querySelectorAll('#job-plot circle.bs-curve-point').length === 2")
        pg.get_by_role("tab", name="Versions").click()
        pg.wait_for_function("() => document.querySelector('#models').innerText.includes('v1')")
        with Store.open(ws) as store:
            assert [m["version"] for m in store.models()] == ["demo", "v1"]
            activated = store.setting("active_model") == "v1"
        if not activated:  # worse than the demo model on validation: the user confirms
            pg.locator("#version-pick input").click()
            pg.get_by_role("option", name="v1", exact=True).click()
            pg.locator("#activate").click()
            pg.wait_for_function("() => document.querySelector('#job-submitted').innerText.includes('v1 is now')")
        with Store.open(ws) as store:
            test_game = next(g for g in store.games() if g["split"] == "test")
            deadline = time.monotonic() + 180
            while not store.predictions(test_game["id"], "v1") and time.monotonic() < deadline:
                time.sleep(0.5)
            assert store.predictions(test_game["id"], "v1"), "no predictions of the new version"
        pg.reload()
        wait_ready(pg)
        pg.select_option("#game-select", str(test_game["id"]))
        pg.wait_for_function("() => document.querySelector('#model-version').textContent === 'model v1' && "
                             "document.querySelectorAll('#timeline .bs-marker.prediction').length > 0")


@pytest.mark.parametrize("size", [(1440, 900), (1920, 1080)])
def test_the_whole_review_screen_fits_a_laptop_screen_and_help_is_an_overlay(browser, app, size):
    """Player, event list, the whole timeline (12 lanes, score lane, axis) and the status line
    are on screen without scrolling; ? opens the keyboard help over the screen, Esc closes it."""
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    try:
        pg.goto(app)
        wait_ready(pg)
        boxes = pg.evaluate("""() => Object.fromEntries(['#player', '#events', '#timeline', '#lanes', '#edit-status',
            '#help-button', '#lane-names', '#filmstrip', '#scrub', '#frame-input', '#reviewed-button', '#bulk-accept',
            '#bulk-reject'].map((s) => { const r = document.querySelector(s).getBoundingClientRect();
            return [s, [r.top, r.bottom, r.height]]; }))""")
        for name, (top, bottom, tall) in boxes.items():
            assert tall > 0 and 0 <= top and bottom <= height, (name, top, bottom, size)
        assert boxes["#lanes"][2] >= 12 * 16 + 30, boxes["#lanes"]  # every lane, the score lane and the axis
        assert pg.evaluate("document.documentElement.scrollWidth") <= width
        assert pg.evaluate("window.scrollY") == 0
        pg.keyboard.press("?")
        help_box = pg.locator("#help").bounding_box()
        assert pg.is_visible("#help") and help_box["y"] >= 0 and help_box["y"] + help_box["height"] <= height
        pg.keyboard.press("Escape")
        assert not pg.is_visible("#help")
    finally:
        context.close()


# --------------------------------------------------------------------------- the analyst's features


@pytest.fixture(scope="module")
def analyst_app(tmp_path_factory):
    """Two games: a synthetic one with a video and a model's predictions, and a labels-only game
    labelled by side (left/right, the 2025 team task) with more pending predictions."""
    from conftest import annotation, make_game

    root = tmp_path_factory.mktemp("analyst")
    generate_game(root / "src", SynthConfig(minutes=0.3, seed=9, render=RenderOptions(320, 180), exact=False))
    make_game(root / "side", "league/2025/left v right", [annotation(30, team="left"),
                                                          annotation(80, "SHOT", "right")])
    ws = Workspace.at(root / "ws").ensure()
    with Store.open(ws) as store:
        import_source(store, root / "src", workspace=ws, split="test")
        import_source(store, root / "side", workspace=ws, split="test")
        video_game, side_game = _two(store)
        store.register_model("v1")
        store.add_predictions("v1", video_game, [(lab["frame"] + 2, lab["label"], lab["team"], 0.55)
                                                 for lab in store.labels(video_game)[:3]])
        store.add_predictions("v1", side_game, [(100, "PASS", "left", 0.9), (140, "DRIVE", "right", 0.85),
                                                (180, "PASS", "left", 0.5), (220, "OUT", "right", 0.25),
                                                (260, "PASS", "right", 0.1), (300, "CROSS", "left", 0.05)])
    with running_app(ws.root) as url:
        yield url, ws, video_game, side_game


def _two(store: Store) -> tuple[int, int]:
    """(the game with a video, the side-labelled one)."""
    games = store.games()
    video = next(g["id"] for g in games if g["video_path"])
    return video, next(g["id"] for g in games if g["id"] != video)


def test_the_models_review_cut_hides_the_pending_predictions_under_it_and_nothing_else(browser, analyst_app,
                                                                                      request):
    """A version's review cut (measured in training) is a toggle beside the filters: on, the
    pending predictions under it are hidden, labels and decided predictions stay, and the
    confidence range is left as it was; off, everything is back; a version without a cut
    offers none."""
    url, ws, video_game, side_game = analyst_app
    rows = """() => [...document.querySelectorAll('#events .bs-row')].map((r) => [r.className,
        r.children[5].textContent])"""
    with Store.open(ws) as store:
        metrics = store.model("v1")["metrics"]
        store.set_model_metrics("v1", {**metrics, "review_cut": 0.5})
        low = next(p for p in store.predictions(side_game, "v1") if p["confidence"] < 0.5 and p["status"] == "pending")
        store.reject(low["id"], reviewer="ana")  # decided: stays shown under the cut
    try:
        with browsing(browser, request, viewport={"width": 1440, "height": 900}) as pg:
            pg.goto(url)
            wait_ready(pg)
            pg.select_option("#game-select", str(side_game))
            pg.wait_for_function("() => document.querySelector('#game-select').title.includes('left v right')")
            cut = pg.locator("#review-cut")
            assert cut.inner_text() == "cut \u2265 0.50" and cut.get_attribute("aria-pressed") == "false"
            everything = pg.locator("#event-count").inner_text()
            before = pg.evaluate(rows)
            assert any("pending" in c and t and float(t) < 0.5 for c, t in before)
            cut.click()
            assert cut.get_attribute("aria-pressed") == "true" and "click to show all" in cut.get_attribute("title")
            assert pg.locator("#filter-min").input_value() == "0"
            after = pg.evaluate(rows)
            assert not any("pending" in c and t and float(t) < 0.5 for c, t in after), after
            assert any("rejected" in c for c, _ in after) and any("label" in c.split() for c, _ in after)
            assert len(after) < len(before) and pg.locator("#event-count").inner_text() != everything
            cut.click()
            assert pg.locator("#event-count").inner_text() == everything
    finally:
        with Store.open(ws) as store:
            store.set_model_metrics("v1", metrics)
            store.undo(side_game, author="ana")
    with browsing(browser, request, viewport={"width": 1440, "height": 900}) as pg:
        pg.goto(url)
        wait_ready(pg)
        assert not pg.locator("#review-cut").is_visible()


def test_review_walkthrough_of_the_analysts_features(browser, analyst_app, request):
    """One reviewer's session at 1440x900, through every feature an analyst asked for: the game
    to start on, the name asked once, left/right teams, go-to and scrub, bulk decisions on
    what the filters show (one undo step each), visibility, the fully-reviewed mark (picker,
    Games tab, a row click opens a game), whole class names, 10 px markers, the filmstrip."""
    from core.labels import CLASSES

    url, ws, video_game, side_game = analyst_app
    with Store.open(ws) as store, browsing(browser, request, named=False,  # no reviewer name yet
                                           viewport={"width": 1440, "height": 900}) as pg:
        pg.goto(url)
        wait_ready(pg)
        # It opens on the game with the most pending predictions, in that game's team names.
        assert pg.locator("#game-select").input_value() == str(side_game)
        assert pg.locator("#team-toggle button").all_inner_texts() == ["left", "right"]

        # Go to a frame by number (g focuses the box); the first edit asks for the name, once.
        pg.keyboard.press("g")
        pg.keyboard.type("12")
        pg.keyboard.press("Enter")
        assert current_frame(pg) == 12
        with saved(pg):
            pg.keyboard.press("1")
            pg.locator("#reviewer-prompt").wait_for()
            pg.locator("#reviewer-name").fill("carol")
            pg.locator("#reviewer-name").press("Enter")
        lab = next(r for r in store.labels(side_game) if r["frame"] == 12)
        assert (lab["label"], lab["team"], lab["author"]) == ("PASS", "left", "carol")
        pg.keyboard.press("Shift+T")
        pg.keyboard.press("g")
        pg.keyboard.type("00:01.05")  # a clock time: 1 s and 5 frames
        pg.keyboard.press("Enter")
        assert current_frame(pg) == 30
        with saved(pg):
            pg.keyboard.press("2")
        assert not pg.is_visible("#reviewer-prompt")
        drives = [r for r in store.labels(side_game) if r["frame"] == 30 and r["label"] == "DRIVE"]
        assert [(r["team"], r["author"]) for r in drives] == [("right", "carol")]

        # Bulk: accept every pending prediction shown at or above 0.8, as one undo step.
        pg.locator("#bulk-accept-at").fill("0.8")
        assert pg.locator("#bulk-accept").inner_text() == "accept 2"
        steps = len(store.history(side_game, limit=1000))
        with saved(pg):
            pg.locator("#bulk-accept").click()
        decided = {p["frame"]: p["status"] for p in store.predictions(side_game, "v1")}
        assert (decided[100], decided[140], decided[180]) == ("accepted", "accepted", "pending")
        assert len(store.history(side_game, limit=1000)) == steps + 1
        with saved(pg):
            pg.keyboard.press("Control+z")
        assert {p["status"] for p in store.predictions(side_game, "v1")} == {"pending"}
        # Reject at or below 0.3 only what the filters show: PASS.
        pg.select_option("#filter-class", "PASS")
        pg.locator("#bulk-reject-at").fill("0.3")
        assert pg.locator("#bulk-reject").inner_text() == "reject 1"
        with saved(pg):
            pg.locator("#bulk-reject").click()
        decided = {p["frame"]: p["status"] for p in store.predictions(side_game, "v1")}
        assert (decided[260], decided[220], decided[300]) == ("rejected", "pending", "pending")
        pg.select_option("#filter-class", "")

        # Shift+F marks the game fully reviewed: stored with the name, shown in the picker.
        with saved(pg):
            pg.keyboard.press("Shift+F")
        mark = store.game(side_game)["fully_reviewed"]
        assert mark and mark.endswith(" carol")
        assert pg.locator("#reviewed-button").get_attribute("data-reviewed") == "1"
        pg.wait_for_function("() => document.querySelector('#game-select option:checked')"
                             ".textContent.includes('fully reviewed')", timeout=5_000)

        # The Games tab shows the mark; clicking a game's row opens it for review.
        pg.get_by_role("tab", name="Games").click()
        mark_cell = pg.locator("#games-table").get_by_text("carol, ").filter(visible=True).first
        mark_cell.wait_for(timeout=10_000)
        # Review progress and the mark are on screen at 1440 px, not behind a sideways scroll.
        for cell in (mark_cell, pg.locator("#games-table th").get_by_text("reviewed", exact=True).first):
            box = cell.bounding_box()
            assert box and box["x"] + box["width"] <= pg.evaluate(
                "document.querySelector('#games-table .virtual-table-viewport').getBoundingClientRect().right")
        pg.locator("#games-table").get_by_text(store.game(video_game)["url_local"], exact=True) \
            .filter(visible=True).first.click()
        pg.wait_for_function(f"() => document.querySelector('#game-select').value === '{video_game}' && "
                             "document.querySelectorAll('#timeline .bs-marker').length > 0")
        assert pg.is_visible("#player")
        assert pg.locator("#team-toggle button").all_inner_texts() == ["home", "away"]

        # Go to a clock time, refuse nonsense, scrub.
        pg.wait_for_function("() => document.querySelector('#player').readyState >= 2", timeout=30_000)
        pg.keyboard.press("g")
        pg.keyboard.type("00:02.05")
        pg.keyboard.press("Enter")
        assert current_frame(pg) == 55
        pg.wait_for_function("() => Math.floor(document.querySelector('#player').currentTime * 25) === 55")
        pg.keyboard.press("g")
        pg.keyboard.type("2:75")
        pg.keyboard.press("Enter")
        assert current_frame(pg) == 55 and "not a frame" in status(pg)
        pg.keyboard.press("Escape")
        pg.locator("#scrub").fill("200")
        assert current_frame(pg) == 200

        # v: the selected label is not shown on camera (list and marker say so), undoable.
        frames = [r["frame"] for r in store.labels(video_game)] + [p["frame"] for p in store.predictions(video_game)]
        lab = max(store.labels(video_game), key=lambda r: min(abs(r["frame"] - f) or 10**6 for f in frames))
        lid = lab["id"]  # the label farthest from any other event: no neighbour covers it once zoomed in
        marker = pg.locator(f"#timeline .bs-marker[data-id='l{lid}']")
        pg.keyboard.press("g")
        pg.keyboard.type(str(lab["frame"]))
        pg.keyboard.press("Enter")
        for _ in range(3):
            pg.keyboard.press("z")
        marker.click()
        with saved(pg):
            pg.keyboard.press("v")
        assert store.label(lid)["visibility"] == "not shown"
        assert "vis-not-shown" in marker.get_attribute("class")
        assert pg.locator(f"#events .bs-row[data-id='l{lid}']").get_attribute("data-visibility") == "not shown"
        with saved(pg):
            pg.keyboard.press("Control+z")
        assert store.label(lid)["visibility"] == "visible"

        # Markers are hit targets of 10 px; each lane's key and whole class name sit beside the lanes.
        sizes = pg.evaluate("() => [...document.querySelectorAll('#timeline .bs-marker')].map((m) => {"
                            "const r = m.getBoundingClientRect(); return Math.min(r.width, r.height); })")
        assert sizes and min(sizes) >= 10
        names = pg.evaluate("""() => { const lanes = document.querySelector('#lanes').getBoundingClientRect();
            return [...document.querySelectorAll('#lane-names .bs-lane-name')].slice(0, 12).map((d) => {
              const r = d.getBoundingClientRect();
              return [d.textContent, d.scrollWidth <= d.clientWidth, r.right <= lanes.left + 1, r.bottom <= 900];
            }); }""")
        assert [n.split(" ", 1) for n, *_ in names] == [[k, c] for k, c in zip("1234567890-=", CLASSES)]
        assert all(fits and beside and seen for _, fits, beside, seen in names), names
        # ...and in the list, the class column is as wide as the longest name.
        need, width = pg.evaluate("""() => { const s = document.querySelector('#events .bs-row select');
            const g = document.createElement('canvas').getContext('2d'); const cs = getComputedStyle(s);
            g.font = `${cs.fontSize} ${cs.fontFamily}`;
            return [Math.max(...[...s.options].map((o) => g.measureText(o.textContent).width)), s.clientWidth]; }""")
        assert need + 24 <= width, (need, width)

        # The filmstrip: nine frames, large; hovering covers nothing; a click enlarges one over
        # the player, and Enter moves the event there.
        marker.click()
        pg.locator("#filmstrip figure.centre").wait_for()
        figs = pg.locator("#filmstrip figure")
        assert figs.count() == 9 and figs.nth(0).locator("img").bounding_box()["height"] >= 70
        neighbour, own = figs.nth(4).bounding_box(), figs.nth(3).locator("img").bounding_box()
        figs.nth(3).hover()
        under = pg.evaluate(f"() => document.elementFromPoint({neighbour['x'] + neighbour['width'] / 2}, "
                            f"{neighbour['y'] + neighbour['height'] / 2}).closest('figure').dataset.frame")
        assert under == figs.nth(4).get_attribute("data-frame")
        assert figs.nth(3).locator("img").bounding_box() == own
        target = int(figs.nth(6).get_attribute("data-frame"))
        figs.nth(6).click()
        pg.locator("#film-zoom").wait_for()
        zoom, player = pg.locator("#film-zoom").bounding_box(), pg.locator("#player").bounding_box()
        assert abs(zoom["y"] - player["y"]) <= 1 and zoom["height"] <= player["height"] + 1
        pg.wait_for_function("() => document.querySelector('#film-zoom-img').naturalHeight >= 500")
        with saved(pg):
            pg.keyboard.press("Enter")
        assert store.label(lid)["frame"] == target and not pg.is_visible("#film-zoom")

        pg.keyboard.press("?")
        help_text = pg.locator("#help").inner_text()
        assert "Shift+F" in help_text and "not shown" in help_text and "MM:SS" in help_text
        pg.keyboard.press("Escape")


def test_the_models_tab_fits_a_laptop_with_a_bar_and_cancel_per_job(browser, analyst_app, request):
    """At 1440x900: the chart says there is no run yet; each job is a progress bar with its
    phase, epoch and time left, and a Cancel in its row that stops it; nothing runs off the
    screen; the per-class table shows every class; numbers have at most three decimals."""
    import re
    import signal
    import subprocess
    from datetime import datetime, timedelta, timezone

    from core.labels import CLASSES
    from core.metrics import VALID_MAP

    url, ws, *_ = analyst_app
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)  # stands in for a job's process
    try:
        with Store.open(ws) as store, browsing(browser, request, viewport={"width": 1440, "height": 900}) as pg:
            pg.goto(url)
            wait_ready(pg)
            pg.get_by_role("tab", name="Models").click()
            pg.locator("#job-plot").get_by_text("no run yet").wait_for()
            assert "No jobs yet" in pg.locator("#jobs").inner_text()

            with store.transaction():  # never seen queued: the app's timer would start it
                running = store.create_job("retrain", {})
                started = (datetime.now(timezone.utc) - timedelta(seconds=60)).isoformat()
                store.transition_job(running["id"], ["queued"], status="running", pid=sleeper.pid, started=started,
                                     progress=0.3, message="epoch 3/20 step 5/10 loss 0.5000")
                queued = store.create_job("infer", {"version": "v1"})
            row = pg.locator(f"#jobs .bs-job[data-id='{running['id']}']")
            row.wait_for()
            assert row.locator(".bs-job-phase").inner_text() == "training · epoch 3/20"
            assert "started" in row.locator(".bs-job-when").inner_text()
            assert "about 2 min left" in row.locator(".bs-job-when").inner_text()
            assert row.locator(".bs-job-fill").evaluate("e => e.style.width") == "30%"
            assert pg.locator(f"#jobs .bs-job[data-id='{queued['id']}'] .bs-job-phase").inner_text() == "queued"

            assert pg.evaluate("document.documentElement.scrollWidth") <= 1440
            for name in ("#retrain", "#infer", "#jobs", "#job-log", "#job-plot", "#retrain-button", "#infer-button"):
                box = pg.locator(name).bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= 1440 and box["y"] + box["height"] <= 900, \
                    (name, box)

            # Cancel from the rows: the queued job first (else it would start), then the running one.
            pg.locator(f"#jobs .bs-job[data-id='{queued['id']}'] .bs-job-cancel").click()
            pg.wait_for_function(f"() => document.querySelector(\"#jobs .bs-job[data-id='{queued['id']}']\")"
                                 ".dataset.status === 'cancelled'", timeout=15_000)
            row.locator(".bs-job-cancel").click()
            pg.wait_for_function(f"() => document.querySelector(\"#jobs .bs-job[data-id='{running['id']}']\")"
                                 ".dataset.status === 'cancelled'", timeout=30_000)
            assert store.job(running["id"])["status"] == "cancelled" and sleeper.wait(timeout=15) is not None
            assert "cancelled" in pg.locator("#job-submitted").inner_text()

            # Versions: the per-class table shows every class and the mean, nothing hidden.
            per_class = {c: round(0.0137 * (i + 1), 6) for i, c in enumerate(CLASSES)}
            store.register_model("v2", parent="v1", metrics={VALID_MAP: 0.123456, "per_class": per_class,
                                                             "reviewed_labels": 40})
            pg.get_by_role("tab", name="Versions").click()
            pg.wait_for_function("() => document.querySelector('#models').innerText.includes('v2')", timeout=10_000)
            pg.locator("#version-pick input").click()
            pg.get_by_role("option", name="v2", exact=True).click()
            pg.wait_for_function("() => document.querySelector('#compare').innerText.includes('GOAL')")
            rows = pg.evaluate("""() => [...document.querySelectorAll('#compare [data-testid^="cell-"]')]
                .filter((c) => /^cell-\\d+-0$/.test(c.dataset.testid))
                .map((c) => [c.innerText.trim(), c.getBoundingClientRect().bottom])""")
            assert len(rows) == 13 and all(bottom <= 900 for _, bottom in rows), rows
            assert [name for name, _ in rows][1:] == list(CLASSES)
            hidden = pg.evaluate("""() => [...document.querySelectorAll('#compare *')].filter((e) => e.clientHeight > 0
                && e.scrollHeight > e.clientHeight + 1 && getComputedStyle(e).overflowY !== 'visible').length""")
            assert hidden == 0  # nothing to scroll to: no class is hidden
            shown = pg.locator("#models").inner_text() + pg.locator("#compare").inner_text()
            assert "0.123" in shown and not re.search(r"\d\.\d{4,}", shown), shown
            assert pg.evaluate("document.documentElement.scrollWidth") <= 1440
    finally:
        if sleeper.poll() is None:
            sleeper.send_signal(signal.SIGKILL)
            sleeper.wait()


@pytest.fixture(scope="module")
def crowded_app(tmp_path_factory):
    """A game with 400 labels and 400 predictions in 3 minutes: more than a screen can show apart."""
    from bench.ui import build

    ws = build(tmp_path_factory.mktemp("crowded"), minutes=3, events=400)
    with running_app(ws.root) as url:
        yield ws, url


def test_a_crowded_timeline_is_painted_and_its_markers_still_answer_the_pointer(browser, crowded_app, request):
    """At full zoom, 800 events are painted on a canvas (no element each); a click on one
    selects it and seeks to it, hovering names it; an edit repaints; zoomed in, the markers are
    elements again."""
    from core.labels import CLASSES

    ws, url = crowded_app
    with browsing(browser, request, viewport={"width": 1440, "height": 900}) as pg:
        pg.goto(url)
        wait_ready(pg)
        markers = pg.locator("#markers")
        assert markers.get_attribute("data-mode") == "canvas" and markers.get_attribute("data-count") == "800"
        assert pg.locator("#timeline .bs-marker").count() == 0
        painted = pg.evaluate("""() => { const c = document.querySelector('#markers-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")
        assert painted > 800 * 20, painted  # every marker leaves pixels

        with Store.open(ws) as store:
            game = store.games()[0]
            frames = game["frame_count"]
            events = [("l", r) for r in store.labels(game["id"])]
            events += [("p", r) for r in store.predictions(game["id"], "v1")]
        box = pg.locator("#lanes").bounding_box()
        width = pg.evaluate("() => document.querySelector('#lanes').clientWidth")

        def centre(row) -> tuple[float, float]:
            lane, home = CLASSES.index(row["label"]), row["team"] == "home"
            return (box["x"] + 1 + row["frame"] / frames * width,  # 1: the lanes' border
                    box["y"] + 1 + lane * 16 + (-1 if home else 7) + 5)

        def alone(item) -> float:  # how far the nearest other marker is, in pixels
            x, y = centre(item[1])
            others = (centre(o[1]) for o in events if o[1] is not item[1])
            return min(max(abs(x - ox), abs(y - oy)) for ox, oy in others)

        kind, target = max((e for e in events if e[0] == "l"), key=alone)
        assert alone((kind, target)) > 10
        x, y = centre(target)
        pg.mouse.move(x, y)
        assert target["label"] in (markers.get_attribute("title") or "")
        pg.mouse.click(x, y)
        pg.locator(f"#events .bs-row.selected[data-id='l{target['id']}']").wait_for(timeout=5_000)
        assert current_frame(pg) == target["frame"]

        with saved(pg):
            pg.keyboard.press("1")  # a PASS at the selected event's frame: painted at once
        assert markers.get_attribute("data-count") == "801" and markers.get_attribute("data-mode") == "canvas"

        # An edit or a selection repaints only the columns it touched; the canvas is then what
        # painting every marker again gives. Up to smoothing: Skia blends the edges of shapes
        # drawn inside a clip differently, so a pixel differs only where a marker is left behind
        # or missing (transparent against opaque) or shows another colour.
        with saved(pg):
            pg.keyboard.press("t")  # the new label's team: its marker moves to the lane's other half
        pg.keyboard.press("n")  # the selection moves on: its ring leaves one marker for another
        pg.keyboard.press("g")  # far from those: a DRIVE added, deselected, undone (its marker goes)
        taken = {row["frame"] for _, row in events}
        pg.keyboard.type(str(next(f for f in range(frames // 2, frames) if f not in taken)))
        pg.keyboard.press("Enter")
        with saved(pg):
            pg.keyboard.press("2")
        assert markers.get_attribute("data-count") == "802"
        pg.keyboard.press("Escape")
        for _ in range(3):
            with saved(pg):
                pg.keyboard.press("Control+z")  # the DRIVE, the team change, the PASS
        assert markers.get_attribute("data-count") == "800"
        pg.evaluate("() => { const c = document.querySelector('#markers-canvas');"
                    " window.incremental = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; }")
        pg.keyboard.press("x")  # zooming out of the whole match: the same view, painted whole
        differ = pg.evaluate("""() => { const c = document.querySelector('#markers-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, was = window.incremental;
            if (d.length !== was.length) return -1;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) {
              const opaque = Math.min(d[i + 3], was[i + 3]) > 200;
              const colour = Math.max(...[0, 1, 2].map((j) => Math.abs(d[i + j] - was[i + j])));
              if (Math.abs(d[i + 3] - was[i + 3]) > 128 || (opaque && colour > 64)) n++;
            }
            return n; }""")
        assert differ == 0
        pg.mouse.click(x, y)  # the target again, to zoom in around it
        pg.locator(f"#events .bs-row.selected[data-id='l{target['id']}']").wait_for(timeout=5_000)

        for _ in range(5):
            pg.keyboard.press("z")
        assert markers.get_attribute("data-mode") == "elements"
        assert pg.locator(f"#timeline .bs-marker[data-id='l{target['id']}']").count() == 1
