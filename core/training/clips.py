"""Clips: what one training sample is, and which ones an epoch draws.

Targets: a class is positive at a frame when an event of that class lies within +-7 frames;
the team target only counts where the class is positive. In a game reviewed only in part a
window's other classes are unknown, not absent: an analyst who accepted a PASS said nothing of
the DRIVE just after it, and one who rejected a SHOT said nothing of the PASS beside it. So
there the loss counts only the classes a review decided within the window (a label, or a
rejected prediction of that class), and an event nobody has labelled yet is not taught as absent.

Sampling: a game in proportion to its frames of known targets (``game_shares``), then with
probability 0.5 a frame near an event (+-4 frames, events weighted by the effective number of
their class so rare classes are seen), else a rejected prediction's frame (a hard negative) or
any frame. Augmentation moves the pictures and, with them, the ball's track points a sample
carries (``move_track``, which the track's own training uses too).
"""
from __future__ import annotations

import numpy as np
import torch

from core.infer import track_windows
from core.labels import NUM_CLASSES
from core.model import ModelConfig
from core.training.config import TrainConfig
from core.training.data import GameData


def _near(events: np.ndarray, centres: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, e): event ``e`` lies within ``window`` frames of ``centres[i]``."""
    if not len(events):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.nonzero(np.abs(np.asarray(centres)[:, None] - events[None, :, 0]) <= window)


def targets(game: GameData, centre: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class targets, team targets, the team mask and the classes known at ``centre`` (all of
    them in a fully labelled game; in a partial one, those a review decided nearby)."""
    y = class_targets(game, np.array([centre]), window)[0]
    team = np.zeros(NUM_CLASSES, np.float32)
    _, near = _near(game.events, np.array([centre]), window)
    for _, cls, side in game.events[near]:
        team[cls] = float(side == 0)  # the team head predicts "the first team"
    return y, team, y.copy(), known_classes(game, centre, window)  # the team counts where its class is positive


def known_classes(game: GameData, centre: int, window: int) -> np.ndarray:
    """(K,) 1 where the class's target at ``centre`` is known: every class of a fully labelled
    game; in a partial one, the classes of the labels and rejected predictions within ``window``."""
    if not game.partial:
        return np.ones(NUM_CLASSES, np.float32)
    known = np.zeros(NUM_CLASSES, np.float32)
    for decided in (game.events, game.negatives):
        _, near = _near(decided, np.array([centre]), window)
        known[decided[near, 1]] = 1.0
    return known


def class_targets(game: GameData, centres: np.ndarray, window: int) -> np.ndarray:
    """(len(centres), K) class targets of many centre frames at once (``train_track``'s windows)."""
    y = np.zeros((len(centres), NUM_CLASSES), np.float32)
    i, e = _near(game.events, centres, window)
    y[i, game.events[e, 1]] = 1.0
    return y


def class_weights(games: list[GameData], beta: float) -> np.ndarray:
    """Per class 1 / effective number of samples: (1 - beta) / (1 - beta ** n)."""
    counts = np.zeros(NUM_CLASSES)
    for g in games:
        counts += np.bincount(g.events[:, 1], minlength=NUM_CLASSES) if len(g.events) else 0
    w = (1 - beta) / (1 - np.power(beta, np.maximum(counts, 1)))
    return w / w.sum()


def game_shares(games: list[GameData], window: int) -> np.ndarray:
    """How often each game is drawn: in proportion to the frames whose targets are known, all
    of a fully labelled game's, the windows around a partial game's decisions. Drawn uniformly,
    a game with a dozen review decisions weighed as much as a labelled match, and fine-tuning
    learnt those few windows over and over instead of what it already knew."""
    known = np.array([min(g.n_frames, (len(g.events) + len(g.negatives)) * (2 * window + 1)) if g.partial
                      else g.n_frames for g in games], np.float64)
    return known / known.sum() if known.sum() > 0 else np.full(len(games), 1 / len(games))


def sample_epoch(games: list[GameData], config: TrainConfig, rng: np.random.Generator) -> list[tuple[int, int, str]]:
    """``(game index, centre frame, why)`` for one epoch; why is event, negative or random."""
    weights = class_weights(games, config.class_beta)
    shares = game_shares(games, config.target_window)
    out = []
    for _ in range(config.samples_per_epoch):
        gi = int(rng.choice(len(games), p=shares))
        g = games[gi]
        r = rng.random()
        if g.partial:  # only around what was reviewed: its events, else its rejected predictions
            kind = "event" if len(g.events) and (not len(g.negatives) or r < 0.5) else "negative"
        elif r < config.near_event_p and len(g.events):
            kind = "event"
        elif r < config.near_event_p + (1 - config.near_event_p) * config.hard_negative_p and len(g.negatives):
            kind = "negative"
        else:
            kind = "random"
        if kind == "event":
            p = weights[g.events[:, 1]]
            e = g.events[rng.choice(len(g.events), p=p / p.sum())]
            centre = int(e[0]) + int(rng.integers(-config.near_window, config.near_window + 1))
        elif kind == "negative":
            centre = int(g.negatives[rng.integers(len(g.negatives)), 0])
        else:
            centre = int(rng.integers(g.n_frames))
        why = kind
        out.append((gi, int(np.clip(centre, 0, g.n_frames - 1)), why))
    return out


class ClipDataset(torch.utils.data.Dataset):
    def __init__(self, games: list[GameData], samples: list[tuple[int, int, str]], config: TrainConfig, seed: int):
        self.games, self.samples, self.config, self.seed = games, samples, config, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        gi, centre, _ = self.samples[i]
        g, mc = self.games[gi], self.config.model
        rng = np.random.default_rng((self.seed, i))
        if self.config.augment and rng.random() < 0.5:
            centre = int(np.clip(centre + rng.integers(-1, 2), 0, g.n_frames - 1))  # +-1 frame shake
        frames = g.window(centre, mc)
        y, team, mask, known = targets(g, centre, self.config.target_window)
        track = (track_windows(g.track, np.array([centre]), mc)[0].copy() if g.track is not None
                 else np.zeros((0, 3), np.float32))
        if self.config.augment:
            frames, team, track = augment(frames, team, mask, mc.team_mode, rng, track, track_times(mc))
        return torch.from_numpy(np.ascontiguousarray(frames)), torch.from_numpy(y), torch.from_numpy(team), \
            torch.from_numpy(mask), torch.from_numpy(np.ascontiguousarray(track, np.float32)), torch.from_numpy(known)


def pan_time(index: np.ndarray | float, frames: int) -> np.ndarray | float:
    """Where clip frame ``index`` lies on the simulated camera pan: -0.5 first, 0.5 last."""
    return np.asarray(index) / max(frames - 1, 1) - 0.5


def track_times(config: ModelConfig) -> np.ndarray:
    """The track's frames on the pan's time axis (they reach beyond the clip's ends)."""
    return pan_time(config.track_offsets() / config.frame_step + config.frames // 2, config.frames)


def random_motion(rng: np.random.Generator, w: int, h: int) -> tuple[bool, np.ndarray, np.ndarray]:
    """A flip, a small affine (2x3, pixel-index coordinates) and a camera drift over a clip."""
    import cv2

    flip = bool(rng.random() < 0.5)
    scale = 1 + rng.uniform(-0.05, 0.05)
    angle = rng.uniform(-3, 3)
    pan = rng.uniform(-0.03, 0.03, 2) * (w, h)  # the camera drifts over the clip
    return flip, cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale), pan


def move_track(track: np.ndarray, flip: bool, m: np.ndarray, w: int, h: int,
               pan: np.ndarray | None = None, times: np.ndarray | None = None) -> np.ndarray:
    """The ball's track (u, v as fractions of the picture around its centre) moved as
    ``random_motion`` moves the pictures: flipped, then ``m``, then ``pan`` at ``times``."""
    track = track.copy()
    if flip:
        track[:, 0] = -track[:, 0]
    # Pixel-index coordinates (what warpAffine maps), moved, and back.
    xy = (track[:, :2] + 0.5) * (w, h) - 0.5
    xy = xy @ m[:, :2].T + m[:, 2]
    if pan is not None:
        xy = xy + pan * np.asarray(times)[:, None]
    track[:, :2] = (xy + 0.5) / (w, h) - 0.5
    return track


def augment(frames: np.ndarray, team: np.ndarray, mask: np.ndarray, team_mode: str, rng: np.random.Generator,
            track: np.ndarray | None = None, times: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Flip, brightness and contrast, a small affine, and a simulated camera pan across the clip.
    The ball's ``track`` (at ``times`` on the pan, see ``track_times``) moves with the picture."""
    import cv2

    t, h, w = frames.shape
    flip, m, pan = random_motion(rng, w, h)
    if flip:
        frames = frames[:, :, ::-1]
        if team_mode == "side":
            team = np.where(mask > 0, 1 - team, team)
    out = np.empty_like(frames)
    for k in range(t):
        mk = m.copy()
        mk[:, 2] += pan * pan_time(k, t)
        out[k] = cv2.warpAffine(np.ascontiguousarray(frames[k]), mk, (w, h), borderMode=cv2.BORDER_REFLECT)
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if track is not None and len(track):
        track = move_track(track, flip, m, w, h, pan, times)
    return out, team, track
