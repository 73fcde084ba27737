"""Running a model over a workspace's games: resolve the model, infer, store the results.

Shared by ``launch.py infer`` and the app's re-infer job, so both do exactly the same, in
this process or over several (``core.shard``, one per GPU).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

from core.errors import BallspotError, NotFoundError
from core.infer import Event, GameScores, InferConfig, infer_video, save_curves
from core.model import CONFIG_FILE, load
from core.progress import Progress, after
from core.store import Store
from core.video import open_game_video
from core.versions import carry_over, decisions, register_version
from core.workspace import Workspace


def resolve_model(store: Store, model: str) -> tuple[str, Path]:
    """A model folder or a registered version -> (version, folder). A folder seen for the
    first time is registered under its folder name."""
    path = Path(model).expanduser()
    if (path / CONFIG_FILE).is_file():
        folder = path.resolve()
        for m in store.models():
            if m["path"] and Path(m["path"]).resolve() == folder:
                return m["version"], folder
        version = folder.name
        try:
            existing = store.model(version)
            raise BallspotError(f"model version {version!r} is already registered for {existing['path']}; "
                                "rename the folder")
        except NotFoundError:
            pass
        config = json.loads((folder / CONFIG_FILE).read_text())
        register_version(store, version, path=str(folder), config=config)
        return version, folder
    try:
        row = store.model(model)
    except NotFoundError:
        raise BallspotError(f"{model}: neither a model folder (with {CONFIG_FILE}) nor a registered version") from None
    if not row["path"] or not (Path(row["path"]) / CONFIG_FILE).is_file():
        raise BallspotError(f"model version {model}: its folder {row['path']} is missing")
    return model, Path(row["path"])


def store_run(store: Store, version: str, game: int | str, events: list[Event]) -> int:
    """Store a version's new events on a game in place of its earlier ones, keeping the review
    decisions made on those (same event: ``carry_over``); returns how many were kept.

    One transaction: the decisions are read at the moment the predictions are replaced, so one
    made while the game was being inferred is kept too, and a kill leaves either the old run with
    its decisions or the new one with them, never the new one without."""
    with store.transaction():
        own = decisions(store, game, version)
        store.add_predictions(version, game, [(e.frame, e.label, e.team, e.confidence) for e in events])
        return carry_over(store, game, own, version, source=version)


def _infer_here(folder: Path, games: list[dict], config: InferConfig, progress: Progress | None
                ) -> Iterator[tuple[dict, GameScores, list[Event]]]:
    """(game, scores, events) of each game, inferred in this process, one after the other."""
    model = load(folder)
    total = sum(g["frame_count"] or 0 for g in games)
    done_before = 0
    for g in games:
        with open_game_video(g) as video:  # the file imported, never what a link now points at
            scores, events = infer_video(model, video, config, progress=after(progress, done_before, total,
                                                                              g["url_local"]))
        yield g, scores, events
        done_before += g["frame_count"] or len(scores.scores)


def infer_games(store: Store, workspace: Workspace, version: str, folder: Path, games: list[str],
                config: InferConfig, progress: Progress | None = None,
                skip_missing: bool = True, on_stored: Callable[[str, int], None] | None = None,
                gpus: int = 1) -> list[tuple[str, int]]:
    """Infer each game that has a video; store its events under ``version`` (``store_run``:
    its review decisions kept) and its curves. Returns (game, events) per game inferred, in the
    order given; ``on_stored(game, decisions kept)`` hears of each game as it is stored.

    ``gpus`` > 1: the games are shared out over that many worker processes, one per GPU
    (``core.shard``); this process stores each game as it comes back, so what is stored is what
    one process stores.

    Games without a readable video are skipped (reported by the caller from the result), or,
    with ``skip_missing=False`` (games the user named), an error.
    """
    chosen = [store.game(g) for g in games]
    missing = [g["url_local"] for g in chosen if not g["video_path"] or not Path(g["video_path"]).is_file()]
    if missing and not skip_missing:
        raise BallspotError("no video for: " + ", ".join(missing))
    chosen = [g for g in chosen if g["url_local"] not in missing]
    if not chosen:
        raise BallspotError("no game with a video to run the model on")
    if gpus != 1:
        from core.shard import infer_sharded, worker_devices

        worker_devices(gpus, config.device)  # more GPUs than there are: refused before any work
    if gpus > 1 and len(chosen) > 1:
        results = infer_sharded(folder, chosen, config, gpus, progress)
    else:
        results = _infer_here(folder, chosen, config, progress)
    counts = {}
    for g, scores, events in results:
        kept = store_run(store, version, g["id"], events)
        save_curves(workspace.scores_path(version, g["id"]), scores)
        if on_stored is not None:
            on_stored(g["url_local"], kept)
        counts[g["url_local"]] = len(events)
    return [(g["url_local"], counts[g["url_local"]]) for g in chosen]
