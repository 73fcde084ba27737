#!/usr/bin/env python3
"""A full-length match, end to end: import, inference (the CLI's path and the re-infer job's),
and opening it in the review screen, at 10 and 100 minutes, side by side.

Builds (once, cached under ``--cache``, default ``tmp/bench``) a synthetic 1280x720 match in
SoccerNet's layout: a rendered stretch (``--stretch`` minutes) repeated to full length by
remuxing its H.264 packets (every repeat starts on the stretch's first keyframe, so the file
decodes as one stream) with a matching ``Labels-ball.json``; imports it into a fresh workspace;
then measures, each in a process of its own (its peak RSS read with ``wait4``):

* decode only: PyAV with FFmpeg's threads, every frame, no conversion (the reference speed);
* the reader: decode + grey + fit to the model's input (``core.video.FrameReader``);
* inference, the CLI's path: ``core.runner.infer_games`` with the demo model and flip TTA,
  as ``launch.py infer`` runs it, with the time of each stage (``core.infer.measure``);
* inference, the app's path: a re-infer job run by ``python -m core.jobs`` as the app starts it;
* opening the match in the review screen: what the page asks for when a game is chosen
  (``core.review.open_game`` and its JSON), then the score lane of a class and the review queue.

Targets (issue 15): inference with TTA at >= 0.5x the decode-only speed of the same file; peak
RSS of inference under 3 GB and within 10% between 10 and 100 minutes; the match opens in under
1.5 s. Where a speed target is missed the bench names the stage that bounds it.

    python bench/fullgame.py [--minutes 10 100] [--quick] [--device cpu|cuda] [--gpus N] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "assets" / "demo-model"
VERSION = "demo-bench"
#: Where the match and its workspaces are kept between runs (not committed: see ``_cache``).
DEFAULT_CACHE = ROOT / "tmp" / "bench"
LEAGUE, SEASON = "bench", "fullgame"
TARGET_RATIO, TARGET_RSS_GB, TARGET_RSS_SPREAD, TARGET_OPEN_S = 0.5, 3.0, 0.10, 1.5


# --------------------------------------------------------------------------- building the match


def _cache(path: Path) -> Path:
    """The cache folder, made invisible to git (videos, label files and databases never enter it)."""
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return path


def render_stretch(cache: Path, minutes: float, size: tuple[int, int], seed: int = 5) -> Path:
    """A synthetic game of ``minutes`` at ``size`` (width, height), rendered once; its folder."""
    from core.progress import bar
    from core.synth import RenderOptions, SynthConfig, generate_game

    w, h = size
    root = cache / f"stretch-{w}x{h}-{minutes:g}min-seed{seed}"
    done = root / ".complete"
    if done.exists():
        return Path(done.read_text())
    with bar(f"render {minutes:g} min at {w}x{h}", "frame") as progress:
        # The demo model learnt balls drawn 3x their size (see the README); fast x264 mode: the
        # bytes need not repeat exactly between machines, the frames only need to be a match's.
        folder = generate_game(root, SynthConfig(minutes=minutes, seed=seed, exact=False,
                                                 render=RenderOptions(w, h, ball_scale=3)), progress=progress)
    done.write_text(str(folder))
    return folder


def repeat_video(src: Path, dst: Path, times: int) -> int:
    """``src`` played ``times`` times in a row, as one MP4 (H.264 packets copied, timestamps
    shifted; faststart like SoccerNet's files); returns the frame count. Each repeat starts on
    the stream's first frame, a keyframe, so decoding runs straight through the joins."""
    import av

    tmp = dst.with_name(f".{dst.name}.partial")
    with av.open(str(src)) as inp:
        ist = inp.streams.video[0]
        n = ist.frames
        tick = 1 / (float(ist.average_rate) * ist.time_base)  # time-base units per frame
        period = int(round(n * tick))
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            ost = out.add_stream_from_template(ist)
            for r in range(times):
                inp.seek(0, stream=ist)
                for packet in inp.demux(ist):
                    if packet.dts is None:  # the demuxer's empty end-of-stream packet
                        continue
                    packet.pts += r * period
                    packet.dts += r * period
                    packet.stream = ost
                    out.mux(packet)
    tmp.replace(dst)
    return n * times


def build_match(cache: Path, minutes: float, stretch: float, size: tuple[int, int]) -> Path:
    """``<cache>/match-<minutes>min/<league>/<season>/<game>/{720p.mp4, Labels-ball.json}``: the
    stretch repeated to ``minutes`` (rounded up to whole repeats); returns the tree's root."""
    from core.labels import FPS, LABEL_FILE, game_time, ms_to_frame

    times = max(1, math.ceil(minutes / stretch - 1e-9))
    w, h = size
    root = cache / f"match-{minutes:g}min-{w}x{h}"
    game = root / LEAGUE / SEASON / f"{minutes:g} min - Reds - Blues"
    if (root / ".complete").exists():
        return root
    src = render_stretch(cache, stretch, size)
    game.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    frames = repeat_video(src / f"{h}p.mp4", game / f"{h}p.mp4", times)
    labels = json.loads((src / LABEL_FILE).read_text())
    per = frames // times
    annotations = []
    for r in range(times):
        for a in labels["annotations"]:
            frame = ms_to_frame(int(a["position"])) + r * per
            annotations.append({**a, "position": str(frame * 1000 // FPS), "gameTime": game_time(frame)})
    url = f"{LEAGUE}/{SEASON}/{game.name}"
    (game / LABEL_FILE).write_text(json.dumps({**labels, "UrlLocal": url, "annotations": annotations}, indent=1))
    (root / ".complete").write_text(json.dumps({"frames": frames, "repeats": times, "labels": len(annotations),
                                                "seconds": round(time.perf_counter() - t, 1)}))
    return root


def fresh_workspace(cache: Path, match: Path, name: str) -> tuple[Path, dict]:
    """A new workspace with the match imported and the demo model registered; (root, timings)."""
    import shutil

    from core.ingest import import_source
    from core.store import Store
    from core.versions import register_version
    from core.workspace import Workspace

    root = cache / f"ws-{name}"
    if root.exists():
        shutil.rmtree(root)
    ws = Workspace.at(root).ensure()
    with Store.open(ws) as store:
        t = time.perf_counter()
        import_source(store, match, workspace=ws, split="test")
        took = time.perf_counter() - t
        config = json.loads((DEMO_MODEL / "config.json").read_text())
        register_version(store, VERSION, path=str(DEMO_MODEL), config=config)
        game = store.games()[0]
        labels = len(store.labels(game["id"]))
    return root, {"import_s": took, "game": game["url_local"], "game_id": game["id"], "frames": game["frame_count"],
                  "labels": labels}


# --------------------------------------------------------------------------- the measurements (children)


def child_decode(video: str) -> dict:
    """Decode only: every frame, FFmpeg's threads, nothing converted."""
    import av

    t = time.perf_counter()
    with av.open(video) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = sum(1 for _ in container.decode(stream))
    return {"frames": n, "seconds": time.perf_counter() - t}


def child_reader(video: str, size: list[int]) -> dict:
    """What inference reads: decode + grey + fit, in the reader's thread."""
    from core.labels import FPS
    from core.video import FrameReader

    t = time.perf_counter()
    with FrameReader(video, tuple(size), rate=FPS) as reader:
        n = sum(1 for _ in reader)
        decode_s, resize_s = reader.decode_s, reader.resize_s
    return {"frames": n, "seconds": time.perf_counter() - t, "decode_s": decode_s, "resize_s": resize_s}


def child_cli(workspace: str, game: str, device: str | None, gpus: int, batch: int, threads: int | None = None) -> dict:
    """``launch.py infer``'s path: resolve the model, infer with TTA, store, with stage timings."""
    from dataclasses import asdict

    from core.infer import InferConfig, cpu_threads, measure, pick_device
    from core.progress import bar
    from core.runner import infer_games, resolve_model
    from core.store import Store
    from core.workspace import Workspace

    import torch

    ws = Workspace.at(workspace)
    with Store.open(ws) as store:
        version, folder = resolve_model(store, VERSION)
        t = time.perf_counter()
        with measure() as stats, bar("infer (CLI path)", "frame") as progress:
            config = InferConfig(tta=True, device=device, batch=batch, threads=threads)
            done = infer_games(store, ws, version, folder, [game], config, progress=progress, skip_missing=False,
                               gpus=gpus)
        seconds = time.perf_counter() - t
        frames = store.game(game)["frame_count"]
    dev = pick_device(device)
    return {"frames": frames, "seconds": seconds, "events": done[0][1], "stats": asdict(stats),
            "bound": stats.bound() if gpus == 1 else None, "threads": cpu_threads(config),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {os.cpu_count()} cores"}


def child_open(workspace: str, game_id: int) -> dict:
    """What the review page asks for when the match is chosen, timed in a fresh process."""
    from core.active import review_queue
    from core.labels import CLASSES
    from core.review import open_game, score_curve
    from core.store import Store
    from core.workspace import Workspace

    ws = Workspace.at(workspace)
    out: dict = {}
    with Store.open(ws) as store:
        opens = []
        for _ in range(3):  # the first is a fresh process's; the others show the steady state
            t = time.perf_counter()
            data = open_game(store, game_id, VERSION)
            body = json.dumps(data)  # what Gradio sends the page
            opens.append(time.perf_counter() - t)
        out.update(open_first_s=opens[0], open_median_s=statistics.median(opens), events=len(data["events"]),
                   payload_mb=len(body) / 1e6)
        t = time.perf_counter()
        curve = score_curve(ws, VERSION, game_id, CLASSES[0])
        out["curve_s"] = time.perf_counter() - t
        out["curve_frames"] = len(curve or "") * 3 // 4
        t = time.perf_counter()
        items = review_queue(store, ws, VERSION, games=[game_id], limit=300)  # as app/review.py asks
        out["queue_s"] = time.perf_counter() - t
        out["queue_items"] = len(items)
    return out


CHILDREN = {"decode": child_decode, "reader": child_reader, "cli": child_cli, "open": child_open}


def in_child(stage: str, **kwargs) -> dict:
    """Run one measurement in a fresh Python; its result with its peak RSS (``_measured``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, json.dumps(kwargs)]
    return _measured(cmd, stage)


def peak_rss_gb(pid: int | str = "self") -> float:
    """A process's peak resident memory so far (``VmHWM``), in GB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return 0.0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (inference workers, say), from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def _measured(cmd: list[str], what: str) -> dict:
    """Run ``cmd``; its last JSON line, with the peak RSS of the process (``peak_rss_gb``: the
    largest of the process and of each process it started, polled while it runs, and of what it
    reports itself at its end). Not ``ru_maxrss``: that counts the parent's memory, shared with
    the child between fork and exec."""
    import threading

    t, load = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peaks: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for pid in _tree(proc.pid):
                peaks[pid] = max(peaks.get(pid, 0.0), peak_rss_gb(pid))
            done.wait(0.2)
    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout = proc.stdout.read()
    proc.wait()
    done.set()
    watcher.join()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{what}: the measuring process failed (exit {proc.returncode})")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    own = max(peaks.get(proc.pid, 0.0), result.pop("own_peak_rss_gb", 0.0))
    workers = [v for k, v in peaks.items() if k != proc.pid]
    # The machine's load (1-minute average) before and after: on a shared machine, what the speed was measured beside.
    return {**result, "peak_rss_gb": max([own] + workers), "process_s": wall,
            "load": [round(load, 1), round(os.getloadavg()[0], 1)]}


def job_run(workspace: str, game: str, gpus: int) -> dict:
    """The app's re-infer job on the match: queued in the store, then run by ``python -m
    core.jobs`` as ``core.jobs.spawn`` starts it (here waited for, to read its peak RSS)."""
    from core.jobs import submit
    from core.store import Store
    from core.workspace import Workspace

    ws = Workspace.at(workspace)
    with Store.open(ws) as store:
        job = submit(store, "infer", {"version": VERSION, "games": [game], "tta": True, "gpus": gpus})
        frames = store.game(game)["frame_count"]
    t = time.perf_counter()
    result = _measured([sys.executable, "-m", "core.jobs", str(ws.root), str(job["id"])], "the re-infer job")
    seconds = time.perf_counter() - t
    with Store.open(ws) as store:
        row = store.job(job["id"])
    if row["status"] != "done":
        raise SystemExit(f"the re-infer job ended {row['status']}: {row['error'] or row['message']}")
    return {**result, "frames": frames, "seconds": seconds, "summary": row["message"]}


# --------------------------------------------------------------------------- the run


def measure_match(cache: Path, minutes: float, args: argparse.Namespace, size: tuple[int, int]) -> dict:
    t0 = time.perf_counter()
    match = build_match(cache, minutes, min(args.stretch, minutes), size)
    built_s = time.perf_counter() - t0
    ws, info = fresh_workspace(cache, match, f"{minutes:g}min")
    video = str(next((match / LEAGUE / SEASON).glob("*/*.mp4")))
    # Read here, not through core.model: this process stays without torch, as small as it can be.
    model_size = json.loads((DEMO_MODEL / "config.json").read_text())["input_size"]
    print(f"\n{minutes:g}-minute match: {info['frames']} frames, imported in {info['import_s']:.1f} s "
          f"(built in {built_s:.0f} s)", flush=True)
    r = {"minutes": minutes, "video": video, **info, "build_s": built_s}
    r["decode"] = in_child("decode", video=video)
    r["reader"] = in_child("reader", video=video, size=model_size)
    r["cli"] = in_child("cli", workspace=str(ws), game=info["game"], device=args.device, gpus=args.gpus,
                        batch=args.batch, threads=args.threads)
    if not args.skip_job:
        r["job"] = job_run(str(ws), info["game"], args.gpus)
    r["open"] = in_child("open", workspace=str(ws), game_id=info["game_id"])
    for key in ("decode", "reader", "cli", "job"):
        if key in r:
            r[key]["fps"] = r[key]["frames"] / r[key]["seconds"]
    return r


def report(results: list[dict]) -> list[str]:
    """The side-by-side table and the targets, as lines; the misses say what bounds them."""
    lines = [f"\n{'match':>7}  {'what':34} {'frames/s':>9} {'x decode':>9} {'peak RSS':>9} {'seconds':>8}  load"]
    for r in results:
        ref = r["decode"]["fps"]
        rows = [("decode only (PyAV, threads)", r["decode"]), ("reader (decode+grey+fit)", r["reader"]),
                ("inference, CLI path (TTA)", r["cli"])] + ([("inference, re-infer job (TTA)", r["job"])]
                                                            if "job" in r else [])
        for name, m in rows:
            load = "-".join(f"{v:g}" for v in m.get("load", []))
            lines.append(f"{r['minutes']:>5g}m  {name:34} {m['fps']:9.0f} {m['fps'] / ref:8.2f}x "
                         f"{m['peak_rss_gb']:7.2f}GB {m['seconds']:8.1f}  {load}")
        o = r["open"]
        lines.append(f"{r['minutes']:>5g}m  open in the app: {o['open_first_s']:.2f} s first, "
                     f"{o['open_median_s']:.2f} s median ({o['events']} events, {o['payload_mb']:.1f} MB); "
                     f"score lane {o['curve_s']:.2f} s; "
                     f"review queue {o['queue_s']:.2f} s ({o['queue_items']} items)")
        s = r["cli"]["stats"]
        stages = {"decode": s["decode_s"], "resize": s["resize_s"], "encoder": s["encoder_s"],
                  "3D part + heads": s["head_s"], "post-processing": s["post_s"]}
        lines.append(f"{r['minutes']:>5g}m  stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
                     + f"; model waited for frames {s['wait_s']:.1f}; {r['cli'].get('threads')} model thread(s);"
                     + f" compiled: {s['compiled']}"
                     + (f" (compiling {s['compile_s']:.0f})" if s["compiled"] else ""))
    lines.append("\ntargets:")
    for r in results:
        ratio = r["cli"]["fps"] / r["decode"]["fps"]
        ok = ratio >= TARGET_RATIO
        why = "" if ok else f" -- bounded by {r['cli']['bound'] or 'n/a'} ({_bound_detail(r)})"
        lines.append(f"  {r['minutes']:g} min: inference {ratio:.2f}x decode-only (>= {TARGET_RATIO}): "
                     f"{'met' if ok else 'MISSED'}{why}")
        if "job" in r:
            jr = r["job"]["fps"] / r["decode"]["fps"]
            lines.append(f"  {r['minutes']:g} min: re-infer job {jr:.2f}x decode-only: "
                         f"{'met' if jr >= TARGET_RATIO else 'MISSED'}")
        rss = max(r["cli"]["peak_rss_gb"], r.get("job", {}).get("peak_rss_gb", 0))
        lines.append(f"  {r['minutes']:g} min: peak RSS of inference {rss:.2f} GB (< {TARGET_RSS_GB}): "
                     f"{'met' if rss < TARGET_RSS_GB else 'MISSED'}")
        o = r["open"]["open_first_s"]
        lines.append(f"  {r['minutes']:g} min: opens in {o:.2f} s (< {TARGET_OPEN_S}): "
                     f"{'met' if o < TARGET_OPEN_S else 'MISSED'}")
    if len(results) > 1:
        rss = [r["cli"]["peak_rss_gb"] for r in results]
        spread = max(rss) / min(rss) - 1
        lines.append(f"  peak RSS from {results[0]['minutes']:g} to {results[-1]['minutes']:g} min: "
                     f"{'+' if rss[-1] >= rss[0] else ''}{100 * (rss[-1] / rss[0] - 1):.0f}% (within "
                     f"{100 * TARGET_RSS_SPREAD:.0f}%): {'met' if spread <= TARGET_RSS_SPREAD else 'MISSED'}")
    return lines


def _bound_detail(r: dict) -> str:
    s = r["cli"]["stats"]
    reader = r["reader"]["fps"]
    model_s = s["encoder_s"] + s["head_s"]
    return (f"the reader alone runs {reader:.0f} frames/s, {reader / r['decode']['fps']:.2f}x decode-only; "
            f"the model's parts took {model_s:.0f} s of {s['total_s']:.0f} s, encoder {s['encoder_s']:.0f} s, "
            f"3D part + heads {s['head_s']:.0f} s")


def machine() -> dict:
    """Date and hardware, without importing torch here (the GPU's name comes from the inference child)."""
    from importlib.metadata import version

    info = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": version("torch"),
            "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "load_1min": round(os.getloadavg()[0], 2)}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 100])
    parser.add_argument("--stretch", type=float, default=2.0, help="minutes rendered, then repeated")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--quick", action="store_true",
                        help="a CI-sized run: 0.5 and 1 minute at 320x180 from a 0.25-minute stretch")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--gpus", type=int, default=1, help="inference worker processes (launch.py infer --gpus)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None,
                        help="the CLI path's model threads (default: InferConfig's, a core left to decoding)")
    parser.add_argument("--skip-job", action="store_true", help="skip the re-infer job's measurement")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures (default: in --cache)")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "ARGS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = CHILDREN[args.child[0]](**json.loads(args.child[1]))
        print(json.dumps({**result, "own_peak_rss_gb": peak_rss_gb()}), flush=True)
        return {}
    if args.quick:
        args.minutes, args.stretch, args.size = [0.5, 1.0], 0.25, "320x180"
    size = tuple(int(v) for v in args.size.lower().split("x"))
    cache = _cache(args.cache.resolve())
    started = time.perf_counter()
    info = machine()
    print(f"{info['date']}: {info['cpus']} CPUs ({info['cpu']}), load {info['load_1min']}, torch {info['torch']}",
          flush=True)
    path = args.json or cache / f"fullgame-{'quick' if args.quick else 'full'}.json"
    out = {"machine": info, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "results": []}
    for m in sorted(args.minutes):
        out["results"].append(measure_match(cache, m, args, size))
        out["report"] = report(out["results"])
        path.write_text(json.dumps(out, indent=1))  # after each match: a long run stopped keeps what it measured
        print("\n".join(out["report"]), flush=True)
    out["bench_s"] = time.perf_counter() - started
    path.write_text(json.dumps(out, indent=1))
    print(f"\nthe bench took {out['bench_s'] / 60:.1f} minutes (load at the end {os.getloadavg()[0]:.1f})")
    print(f"figures: {path}")
    return out


if __name__ == "__main__":
    main()
