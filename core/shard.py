"""Inference over several processes, one per GPU: the games are shared out, the store stays with the caller.

``launch.py infer --gpus N`` and the re-infer job (``InferParams.gpus``) run ``N`` worker
processes. Each takes the next game from a common queue (a long game does not leave the others
idle behind it), opens its video with ``open_game_video`` (the row the caller read: the file
imported, never what a link now points at), infers it exactly as one process would
(``core.infer.infer_video``) and hands the scores and events back. Workers never open the
store: the caller stores each game as it comes (``core.runner.store_run``, one transaction per
game, as with one process), so SQLite sees one writer, and a job's cancel and its last write
(``core.jobs``) work as they do without workers. The results are the same as one process's,
game by game, whichever worker ran which game.

On CUDA worker ``i`` uses ``cuda:i``; without CUDA (or with ``device="cpu"``) the workers are
CPU processes sharing the cores, which is what the tests run.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from core.errors import BallspotError
from core.infer import Event, GameScores, InferConfig, cpu_threads, infer_video
from core.progress import Progress, Step

#: How often (seconds) the caller checks that its workers are still alive while it waits.
POLL_S = 1.0


def worker_devices(workers: int, device: str | None) -> list[str]:
    """The device of each worker: ``cuda:0`` .. ``cuda:N-1`` on CUDA (refused when there are
    fewer GPUs), else ``cpu`` for each (several CPU processes: the test set-up)."""
    import torch

    if workers < 1:
        raise BallspotError(f"--gpus {workers}: give 1 or more")
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if not cuda:
        return ["cpu"] * workers
    if device not in (None, "cuda"):
        raise BallspotError(f"--gpus {workers} uses cuda:0 .. cuda:{workers - 1}; choose the GPUs with "
                            f"CUDA_VISIBLE_DEVICES, not --device {device}")
    have = torch.cuda.device_count()
    if workers > have:
        raise BallspotError(f"--gpus {workers}: this machine has {have} CUDA device(s)")
    return [f"cuda:{i}" for i in range(workers)]


def _worker(rank: int, device: str, threads: int, folder: str, config: InferConfig,
            tasks: mp.Queue, results: mp.Queue) -> None:
    """One worker process: load the model, infer games from ``tasks`` until the end marker."""
    import torch

    from core.model import load
    from core.video import open_game_video

    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    game = None
    try:
        model = load(folder)
        cfg = replace(config, device=device, threads=config.threads or threads)
        while (game := tasks.get()) is not None:
            gid = game["id"]

            def progress(step: Step, gid: int = gid) -> None:
                if step.kind != "note":
                    results.put(("progress", rank, gid, step.done))
                else:
                    results.put(("note", rank, gid, step.text))
            with open_game_video(game) as video:
                scores, events = infer_video(model, video, cfg, progress=progress)
            results.put(("game", rank, gid, scores, events))
    except BaseException as exc:  # noqa: BLE001 - reported to the caller, which raises it
        message = str(exc) if isinstance(exc, BallspotError) else f"{type(exc).__name__}: {exc}"
        if game and game["url_local"] not in message:
            message = f"{game['url_local']}: {message}"
        results.put(("error", rank, None, message))
        return
    results.put(("done", rank, None, None))


def infer_sharded(folder: Path, games: list[dict], config: InferConfig, workers: int,
                  progress: Progress | None = None) -> Iterator[tuple[dict, GameScores, list[Event]]]:
    """(game row, scores, events) of each game as a worker finishes it. ``games`` are store rows
    with a video. Stopping the iteration (an error, a cancel) stops the workers."""
    devices = worker_devices(min(workers, max(len(games), 1)), config.device)
    # CPU workers share the cores rather than each taking all of them (which would thrash).
    threads = max(1, cpu_threads(config) // len(devices)) if devices[0] == "cpu" else 1
    ctx = mp.get_context("spawn")  # CUDA cannot be forked; a clean interpreter for CPU workers too
    tasks, results = ctx.Queue(), ctx.Queue()
    by_id = {g["id"]: g for g in games}
    # Longest first: the last game to start is a short one, so the workers finish together.
    for g in sorted(games, key=lambda g: -(g["frame_count"] or 0)):
        tasks.put(g)
    for _ in devices:
        tasks.put(None)
    procs = [ctx.Process(target=_worker, args=(rank, dev, threads, str(folder), config, tasks, results),
                         name=f"ballspot-infer-{rank}", daemon=True) for rank, dev in enumerate(devices)]
    total = sum(g["frame_count"] or 0 for g in games)
    finished, partial = 0, {}  # frames of the games done, and of each game in flight
    done_games, running = 0, set(range(len(procs)))
    try:
        for p in procs:
            p.start()
        where = "CPU processes" if devices[0] == "cpu" else "GPUs"
        if progress is not None:
            progress(Step(0, total, f"{len(games)} game(s) on {len(procs)} {where}"))
        while running:
            try:
                kind, rank, gid, *rest = results.get(timeout=POLL_S)
            except queue.Empty:
                dead = [r for r in running if not procs[r].is_alive()]
                if dead:
                    codes = ", ".join(f"worker {r} exit code {procs[r].exitcode}" for r in dead)
                    raise BallspotError(f"inference stopped: a worker process ended without finishing ({codes})")
                continue
            if kind == "progress":
                partial[gid] = rest[0]
            elif kind == "note" and progress is not None:
                progress(Step(finished + sum(partial.values()), total, rest[0], "note"))
                continue
            elif kind == "game":
                scores, events = rest
                partial.pop(gid, None)
                finished += by_id[gid]["frame_count"] or len(scores.scores)
                done_games += 1
                yield by_id[gid], scores, events
            elif kind == "error":
                raise BallspotError(rest[0])
            elif kind == "done":
                running.discard(rank)
            if progress is not None:
                progress(Step(finished + sum(partial.values()), total,
                              f"{done_games} of {len(games)} games done, {len(procs)} {where}"))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            if p.pid is not None:  # started
                p.join(timeout=10)
        tasks.cancel_join_thread()
        results.cancel_join_thread()
