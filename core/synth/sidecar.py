"""The sidecar: the exact ground truth a synthetic game carries beside its video.

``generate_game`` (``core.synth.game``) writes ``positions.npz`` next to each rendered
video: per frame the ball (pitch metres and drawn pixel), the 23 people (pitch metres and the
players' drawn feet), the camera, and every event with its actor. Real games have none.

Pretraining (``core.training.pretrain``) reads it here, in its own module, because reading it needs
none of the renderer: importing this module loads neither the world simulation nor the
drawing code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import BallspotError
from core.video import fit_points

SIDECAR = "positions.npz"


@dataclass
class Sidecar:
    """One game's per-frame targets in model-input pixels."""

    ball: np.ndarray  # (N, 2) u, v
    height: np.ndarray  # (N,) metres above the grass
    #: (N,) how much the ball's velocity changes at each frame, m/s (pretraining's ``TOUCH_MS``
    #: tells a touch from gravity).
    touch: np.ndarray
    players: np.ndarray  # (N, 22, 2) feet u, v of the 22 players
    team: np.ndarray  # (22,) 0 home, 1 away


def load_sidecar(path: Path, size: tuple[int, int]) -> Sidecar:
    """Read ``positions.npz`` and map its pixels into the fitted model input of ``size``."""
    try:
        z = np.load(path)
        w, h = int(z["width"]), int(z["height"])
        ball = fit_points(z["ball_px"][:, :2], (h, w), size)
        players = fit_points(z["players_px"][:, :22], (h, w), size)
        velocity = np.diff(z["ball"].astype(np.float64), axis=0) * float(z["fps"])
        touch = np.zeros(len(ball), np.float32)
        touch[1:-1] = np.linalg.norm(np.diff(velocity, axis=0), axis=1)
        return Sidecar(ball.astype(np.float32), z["ball"][:, 2].astype(np.float32), touch,
                       players.astype(np.float32), z["team"][:22].astype(np.int64))
    except (OSError, KeyError, ValueError) as exc:
        raise BallspotError(f"{path}: not a synthetic sidecar ({exc})") from None
