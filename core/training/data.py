"""The games training reads: their frames, events and hard negatives from the store.

Frames are decoded once into a memory-mapped cache at training size when it fits, else read
from the video by random access. Pretraining reads the same cache, so it lives apart from both.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from core.formats import annotation_dict
from core.labels import (
    CLASS_INDEX,
    FPS,
    REVIEW_SOURCES,
    TARGET_SOURCES,
    TEAM_MODES,
    common_team_vocabulary,
    team_mode_of,
)
from core.model import ModelConfig, window_index
from core.store import Store
from core.training.config import TrainConfig
from core.video import FrameReader, open_game_video, read_frames
from core.workspace import Workspace

#: Caches up to this size are built in memory-mapped files; larger ones read the video.
FRAME_CACHE_LIMIT = 24 * 2**30
#: The second name of either vocabulary (away, right): an event's team 1 (the team head predicts the first).
_SECOND_TEAMS = {pair[1] for pair in TEAM_MODES.values()}


@dataclass
class GameData:
    """One game as training sees it: frames, events, hard negatives."""

    game_id: int
    url_local: str
    n_frames: int
    frames: np.ndarray | None  # (N, H, W) uint8 memmap, or None to read the video
    #: The game's store row: its video is opened by ``open_game_video`` (the file imported).
    video: dict
    events: np.ndarray  # (E, 3): frame, class, team (0 first team value, 1 second)
    #: (R, 2): frame and class of each rejected prediction (a hard negative of that class).
    negatives: np.ndarray
    labels: list[dict]  # SoccerNet-style annotations, for validation mAP
    #: Reviewed only in part (a game outside the training splits with review work, not marked
    #: fully reviewed): trained on windows around its reviewed events and rejected predictions,
    #: never on random frames, since an unreviewed stretch may hold events nobody labelled yet;
    #: and in those windows only on the classes a review decided there (``clips.targets``).
    partial: bool = False
    #: (N, 3) the ball's track point of every frame (``core.infer.frame_tracks``), for models
    #: with ``track_frames``; computed by the frozen ball detector (``core.training.track``).
    track: np.ndarray | None = None
    #: The name the ball's track of these frames is kept under (:func:`track_key`: the game, the
    #: size, the video file as imported); "" for none (not kept).
    track_key: str = ""

    def window(self, centre: int, config: ModelConfig) -> np.ndarray:
        idx = window_index(np.array([centre]), config.frame_offsets(), self.n_frames)[0]
        if self.frames is not None:
            return np.asarray(self.frames[idx])
        with open_game_video(self.video) as video:
            got = read_frames(video, idx.tolist(), tuple(config.input_size), rate=FPS)
        return np.stack([got[int(i)] for i in idx])

    @contextmanager
    def stream(self, size: tuple[int, int]) -> Iterator[Iterable[np.ndarray]]:
        """Every frame in order: from the frame cache, else decoded from the video."""
        if self.frames is not None:
            yield iter(self.frames)
        else:
            with open_game_video(self.video) as video, FrameReader(video, size, rate=FPS) as reader:
                yield reader


def frames_key(game: dict, size: tuple[int, int]) -> str:
    """The name of a game's frames at ``size``: a changed video (its size or time) is another name."""
    return f"game-{game['id']}-{size[0]}x{size[1]}-{game['size_bytes']}-{int(game['video_mtime'] or 0)}"


def track_key(game: dict, size: tuple[int, int]) -> str:
    """:func:`frames_key` where it tells videos apart (their size and time recorded at import),
    else "" (their tracks are not kept: another video under the same game id would match)."""
    return frames_key(game, size) if game.get("size_bytes") and game.get("video_mtime") else ""


def frame_cache(workspace: Workspace, game: dict, size: tuple[int, int]) -> np.ndarray:
    """Decode a game once at training size into ``cache/frames`` (rebuilt if the video changes)."""
    key = frames_key(game, size)
    folder = workspace.cache_dir / "frames"
    path = folder / f"{key}.u8"
    meta = folder / f"{key}.json"
    if path.is_file() and meta.is_file():
        n = json.loads(meta.read_text())["frames"]
        return np.memmap(path, np.uint8, "r", shape=(n, *size))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"game-{game['id']}-{size[0]}x{size[1]}-*"):
        old.unlink()  # an older cache of a video that has changed
    n_max = int(game["frame_count"]) + 64
    tmp = folder / f".{key}.{os.getpid()}.partial"
    out = np.memmap(tmp, np.uint8, "w+", shape=(n_max, *size))
    n = 0
    # Label frames, whatever the video's fps; the file imported, never what a link now points at.
    with open_game_video(game) as video, FrameReader(video, size, rate=FPS) as reader:
        for frame in reader:
            if n == n_max:
                break
            out[n] = frame
            n += 1
    out.flush()
    del out
    with open(tmp, "r+b") as f:
        f.truncate(n * size[0] * size[1])
    tmp.replace(path)
    meta.write_text(json.dumps({"frames": n, "video": game["video_path"]}))
    return np.memmap(path, np.uint8, "r", shape=(n, *size))


def load_games(store: Store, workspace: Workspace, splits: list[str], config: TrainConfig,
               only: list[str] | None = None, reviewed: bool = False) -> list[GameData]:
    """The games of ``splits`` (or only those named), plus, with ``reviewed``, the review work
    on games of other splits except the validation ones (see ``GameData.partial``)."""
    size = tuple(config.model.input_size)
    out = []
    for g in store.games():
        if not g["video_path"] or not Path(g["video_path"]).is_file():
            continue
        if only is not None and g["url_local"] not in only:
            continue
        outside = g["split"] not in splits
        if outside and (not reviewed or g["split"] in config.valid_splits):
            continue
        # A game a reviewer marked fully reviewed is completely labelled, like a training
        # split's: all its labels are targets and any frame away from them is a negative.
        partial = outside and not g["fully_reviewed"]
        labels = store.labels(g["id"], sources=REVIEW_SOURCES if partial else TARGET_SOURCES)
        n = int(g["frame_count"])
        events = np.array([(r["frame"], CLASS_INDEX[r["label"]], int(r["team"] in _SECOND_TEAMS))
                           for r in labels if r["frame"] < n], dtype=np.int64).reshape(-1, 3)
        negatives = np.array([(p["frame"], CLASS_INDEX[p["label"]]) for p in store.predictions(g["id"])
                              if p["status"] == "rejected"], dtype=np.int64).reshape(-1, 2)
        if partial and not len(events) and not len(negatives):
            continue
        cache_bytes = n * size[0] * size[1]
        frames = frame_cache(workspace, g, size) if config.frame_cache and cache_bytes <= FRAME_CACHE_LIMIT else None
        if frames is not None:
            n = len(frames)
        annotations = [annotation_dict(r["frame"], r["label"], r["team"], r["visibility"]) for r in labels]
        out.append(GameData(g["id"], g["url_local"], n, frames, g, events, negatives, annotations,
                            partial, track_key=track_key(g, size)))
    return out


def team_mode(games: list[GameData]) -> str:
    """The model's ``team_mode`` the training games' labels call for: ``side`` when they name
    teams left/right (the 2025 team task: flip augmentation and flip TTA then swap the team),
    ``role`` for home/away (BAS-2024) or no labels. Games naming teams both ways (within one
    game, or one game one way and another the other) are a :class:`BallspotError` naming them:
    one team head cannot learn both."""
    return team_mode_of(common_team_vocabulary({g.url_local: (a["team"] for a in g.labels) for g in games},
                                               "training games"))
