"""Drawing a synthetic match as a TV camera sees it.

A pinhole camera in the main stand (40 m behind the near touchline, 22 m up, level with
the halfway line) pans and zooms to follow play. The pitch (mowing stripes, markings) is a
top-down texture warped by the camera's ground-plane homography each frame, so the
background moves as in a broadcast; goals, advertising boards, players, the referee and the
ball are projected 3-D shapes drawn far to near.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.synth.world import GOAL_HALF_WIDTH, GOAL_HEIGHT, LENGTH, WIDTH, World, _ema

CAMERA_POS = np.array([LENGTH / 2, WIDTH + 40.0, 22.0])
#: Width of pitch (m) the camera shows around the ball at its default zoom.
VIEW_METRES = 38.0
MARGIN = 14.0  # grass and surroundings beyond the lines in the texture (m)
BALL_RADIUS = 0.11

# BGR colours. No kit is white, so only the ball, the lines and the goal frame are.
GRASS = ((52, 128, 58), (44, 116, 50))
LINE = (212, 218, 212)  # off-white: a ball (250) stands out from the markings
SURROUND = (40, 88, 46)
STANDS = (62, 58, 66)
KITS = {  # shirt, shorts, socks
    0: ((40, 40, 200), (30, 30, 30), (40, 40, 200)),  # home: red, black
    1: ((190, 120, 30), (110, 50, 20), (190, 120, 30)),  # away: blue, navy
}
KEEPER_KITS = {0: ((20, 200, 230), (20, 20, 20), (20, 200, 230)), 1: ((160, 60, 160), (60, 20, 60), (160, 60, 160))}
REFEREE_KIT = ((25, 25, 25), (25, 25, 25), (25, 25, 25))
SKIN = (140, 170, 215)
BOARD_COLOURS = ((200, 90, 20), (30, 160, 230), (40, 40, 190), (160, 160, 160), (60, 140, 40))


@dataclass
class RenderOptions:
    """How the frames are drawn (``SynthConfig.render``); errors name ``launch.py synth``'s options."""

    width: int = 640
    height: int = 360
    #: The ball is drawn this many times its real size (a 22 cm ball is 2 px at 640x360).
    ball_scale: float = 2.0
    #: 0..1: blend of the previous frame (the smear of a panning broadcast camera).
    motion_blur: float = 0.0
    #: Standard deviation of sensor noise, in grey levels.
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 36:
            raise ValueError(f"--size {self.width}x{self.height}: both even, at least 64x36")
        if not 0 <= self.motion_blur < 1 or self.noise < 0:
            raise ValueError("--blur in [0, 1), --noise >= 0")


def _texture(ppm: float) -> np.ndarray:
    """The pitch seen from above at ``ppm`` pixels per metre, with its margins."""
    w = int((LENGTH + 2 * MARGIN) * ppm)
    h = int((WIDTH + 2 * MARGIN) * ppm)
    tex = np.empty((h, w, 3), np.uint8)
    tex[:] = SURROUND
    y0 = int(MARGIN * ppm)
    # The crowd beyond the far boards: speckles that move with the pan like a real stand.
    crowd = np.random.default_rng(7).integers(0, 4, (int(y0 - 5 * ppm) // 2 + 1, w // 2 + 1))
    palette = np.array([STANDS, (90, 90, 110), (120, 110, 100), (70, 60, 150)], np.uint8)
    tex[: int(y0 - 5 * ppm)] = cv2.resize(palette[crowd], (w, int(y0 - 5 * ppm)), interpolation=cv2.INTER_NEAREST)
    stripe = LENGTH / 20
    for k in range(20):
        a, b = int((MARGIN + k * stripe) * ppm), int((MARGIN + (k + 1) * stripe) * ppm)
        tex[y0 - int(3 * ppm):y0 + int((WIDTH + 3) * ppm), a:b] = GRASS[k % 2]

    def P(x: float, y: float) -> tuple[int, int]:
        return int(round((x + MARGIN) * ppm * 16)), int(round((y + MARGIN) * ppm * 16))

    t = max(1, int(round(0.12 * ppm)))
    line = lambda a, b: cv2.line(tex, P(*a), P(*b), LINE, t, cv2.LINE_AA, shift=4)  # noqa: E731
    for a, b in [((0, 0), (LENGTH, 0)), ((0, WIDTH), (LENGTH, WIDTH)), ((0, 0), (0, WIDTH)),
                 ((LENGTH, 0), (LENGTH, WIDTH)), ((LENGTH / 2, 0), (LENGTH / 2, WIDTH))]:
        line(a, b)
    for gx, d in ((0.0, 1.0), (LENGTH, -1.0)):
        for depth, half in ((16.5, 20.16), (5.5, 9.16)):
            ya, yb = WIDTH / 2 - half, WIDTH / 2 + half
            line((gx, ya), (gx + d * depth, ya))
            line((gx + d * depth, ya), (gx + d * depth, yb))
            line((gx + d * depth, yb), (gx, yb))
        spot = (gx + d * 11.0, WIDTH / 2)
        cv2.circle(tex, P(*spot), int(0.25 * ppm * 16), LINE, -1, cv2.LINE_AA, shift=4)
        # The penalty arc: the part of the 9.15 m circle round the spot outside the area.
        angles = np.linspace(-np.pi, np.pi, 200)
        pts = [(spot[0] + 9.15 * np.cos(a), spot[1] + 9.15 * np.sin(a)) for a in angles]
        pts = [p for p in pts if d * (p[0] - gx) > 16.5]
        cv2.polylines(tex, [np.array([P(*p) for p in pts], np.int32)], False, LINE, t, cv2.LINE_AA, shift=4)
    cv2.circle(tex, P(LENGTH / 2, WIDTH / 2), int(9.15 * ppm * 16), LINE, t, cv2.LINE_AA, shift=4)
    cv2.circle(tex, P(LENGTH / 2, WIDTH / 2), int(0.25 * ppm * 16), LINE, -1, cv2.LINE_AA, shift=4)
    for cx, cy, a0 in ((0, 0, 0), (LENGTH, 0, 90), (LENGTH, WIDTH, 180), (0, WIDTH, 270)):
        cv2.ellipse(tex, P(cx, cy), (int(ppm * 16), int(ppm * 16)), a0, 0, 90, LINE, t, cv2.LINE_AA, shift=4)
    return tex


class Camera:
    """A pan-tilt-zoom camera at a fixed place; ``look`` aims it, ``project`` maps 3-D points."""

    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.R = np.eye(3)
        self.f = float(width)

    def look(self, target: np.ndarray, zoom: float) -> None:
        fwd = target - CAMERA_POS
        dist = np.linalg.norm(fwd)
        fwd = fwd / dist
        right = np.cross([0.0, 0.0, 1.0], fwd)
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        if down[2] > 0:
            down = -down
        self.R = np.stack([right, down, fwd])
        # Keep about VIEW_METRES of pitch across the frame at the target, whatever its distance.
        self.f = self.w * dist / (VIEW_METRES * zoom)

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) world points -> (..., 2) pixels and (...,) depths."""
        cam = (pts - CAMERA_POS) @ self.R.T
        z = np.maximum(cam[..., 2], 1e-3)
        uv = np.stack([self.f * cam[..., 0] / z + self.w / 2, self.f * cam[..., 1] / z + self.h / 2], -1)
        return uv, cam[..., 2]

    def ground_homography(self, ppm: float) -> np.ndarray:
        """Texture pixels -> image pixels, for the plane z = 0."""
        K = np.array([[self.f, 0, self.w / 2], [0, self.f, self.h / 2], [0, 0, 1]])
        t = -self.R @ CAMERA_POS
        H = K @ np.column_stack([self.R[:, 0], self.R[:, 1], t])
        S = np.array([[1 / ppm, 0, -MARGIN], [0, 1 / ppm, -MARGIN], [0, 0, 1]])
        return H @ S


def camera_path(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Where the camera aims (N, 3) and its zoom (N,): following the ball smoothly, leading a
    little, widening when play is fast, as a camera operator does."""
    ball = world.ball[:, :2].astype(float)
    aim = _ema(ball, 0.05)
    speed = np.r_[0.0, np.linalg.norm(np.diff(aim, axis=0), axis=1)] * 25
    zoom = 1.0 + 0.5 * np.clip(_ema(speed[:, None], 0.03)[:, 0] / 12.0, 0, 1)
    aim[:, 0] = np.clip(aim[:, 0], 8, LENGTH - 8)
    aim[:, 1] = np.clip(aim[:, 1], 4, WIDTH - 2)
    target = np.column_stack([aim, np.zeros(len(aim))])
    return target, zoom


class Renderer:
    """Draws frames of one world; build once per game, then ``frame(i)`` in order."""

    def __init__(self, world: World, options: RenderOptions, rng: np.random.Generator):
        self.world, self.o, self.rng = world, options, rng
        self.ppm = float(np.clip(options.width / VIEW_METRES * 1.1, 10, 40))
        self.tex = _texture(self.ppm)
        self.cam = Camera(options.width, options.height)
        self.target, self.zoom = camera_path(world)
        self.prev: np.ndarray | None = None
        # Each person's running phase, advanced by the distance they cover.
        step = np.r_[np.zeros((1, world.players.shape[1])),
                     np.linalg.norm(np.diff(world.players, axis=0), axis=-1)]
        self.phase = np.cumsum(step, axis=0) * 1.6
        self.boards = self._boards()

    def _boards(self) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
        boards = []
        for k, x in enumerate(np.arange(-6.0, LENGTH + 6.0, 6.0)):
            y = -4.0
            quad = np.array([[x, y, 0], [x + 6, y, 0], [x + 6, y, 0.9], [x, y, 0.9]])
            boards.append((quad, BOARD_COLOURS[k % len(BOARD_COLOURS)]))
        return boards

    def frame(self, i: int) -> np.ndarray:
        o, w = self.o, self.world
        self.cam.look(self.target[i], self.zoom[i])
        H = self.cam.ground_homography(self.ppm)
        img = cv2.warpPerspective(self.tex, H, (o.width, o.height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=STANDS)
        for quad, colour in self.boards:
            uv, depth = self.cam.project(quad)
            if (depth > 1).all():
                cv2.fillConvexPoly(img, np.round(uv * 16).astype(np.int32), colour, cv2.LINE_AA, shift=4)
        # Far to near: goals, then people, then the ball (never hidden: it is what matters).
        people = np.column_stack([w.players[i], np.zeros(len(w.players[i]))])
        _, depth = self.cam.project(people)
        items = [(float(self.cam.project(np.array([gx, WIDTH / 2, 0.0]))[1]), "goal", gx) for gx in (0.0, LENGTH)]
        items += [(float(depth[p]), "person", p) for p in range(len(people))]
        for _, kind, what in sorted(items, key=lambda t: -t[0]):
            if kind == "goal":
                self._goal(img, what)
            else:
                self._person(img, i, what)
        self._ball(img, i)
        if o.motion_blur > 0 and self.prev is not None:
            img = cv2.addWeighted(img, 1 - o.motion_blur, self.prev, o.motion_blur, 0)
        self.prev = img
        if o.noise > 0:
            noise = self.rng.normal(0, o.noise, img.shape)
            img = np.clip(img + noise, 0, 255).astype(np.uint8)
        return img

    def _goal(self, img: np.ndarray, gx: float) -> None:
        d = -1.0 if gx == 0 else 1.0
        y0, y1 = WIDTH / 2 - GOAL_HALF_WIDTH, WIDTH / 2 + GOAL_HALF_WIDTH
        back = gx + d * 2.0
        pts = {
            "p0": (gx, y0, 0), "p1": (gx, y1, 0), "t0": (gx, y0, GOAL_HEIGHT), "t1": (gx, y1, GOAL_HEIGHT),
            "b0": (back, y0, 0), "b1": (back, y1, 0), "bt0": (back, y0, GOAL_HEIGHT * 0.8),
            "bt1": (back, y1, GOAL_HEIGHT * 0.8),
        }
        uv, depth = self.cam.project(np.array(list(pts.values()), float))
        if (depth < 1).any():
            return
        P = {k: tuple(np.round(uv[j] * 16).astype(int)) for j, k in enumerate(pts)}
        scale = self.cam.f / float(np.mean(depth))
        net = (200, 205, 200)
        for j in np.linspace(0, 1, 9):  # the net: a mesh between the frame and the back
            a = np.array(pts["t0"]) * (1 - j) + np.array(pts["t1"]) * j
            b = np.array(pts["bt0"]) * (1 - j) + np.array(pts["bt1"]) * j
            c = np.array(pts["b0"]) * (1 - j) + np.array(pts["b1"]) * j
            q, _ = self.cam.project(np.array([a, b, c]))
            cv2.polylines(img, [np.round(q * 16).astype(np.int32)], False, net, 1, cv2.LINE_AA, shift=4)
        for a, b in (("bt0", "bt1"), ("b0", "bt0"), ("b1", "bt1"), ("t0", "bt0"), ("t1", "bt1")):
            cv2.line(img, P[a], P[b], net, 1, cv2.LINE_AA, shift=4)
        post = max(1, int(round(0.12 * scale)))
        for a, b in (("p0", "t0"), ("p1", "t1"), ("t0", "t1")):
            cv2.line(img, P[a], P[b], (250, 250, 250), post, cv2.LINE_AA, shift=4)

    def _person(self, img: np.ndarray, i: int, p: int) -> None:
        w = self.world
        x, y = (float(v) for v in w.players[i, p])
        foot, depth = self.cam.project(np.array([[x, y, 0.0], [x, y, 1.8]]))
        if (depth < 1).any():
            return
        (fu, fv), (hu, hv) = foot
        hpx = fv - hv
        if hpx < 2 or fu < -50 or fu > self.o.width + 50:
            return
        team = int(w.team[p])
        shirt, shorts, socks = REFEREE_KIT if team == 2 else (KEEPER_KITS if w.keeper[p] else KITS)[team]
        s = 16
        cv2.ellipse(img, (int(fu * s + 0.25 * hpx * s), int(fv * s)), (int(0.32 * hpx * s), int(0.07 * hpx * s)),
                    0, 0, 360, (30, 70, 34), -1, cv2.LINE_AA, shift=4)
        swing = np.sin(self.phase[i, p]) * 0.18 * hpx
        hip = (fu, fv - 0.5 * hpx)
        leg = max(1, int(round(0.09 * hpx)))
        for side, sw in ((-1, swing), (1, -swing)):
            knee = (hip[0] + side * 0.05 * hpx + sw * 0.5, fv - 0.25 * hpx)
            cv2.line(img, (int(hip[0] * s), int(hip[1] * s)), (int(knee[0] * s), int(knee[1] * s)), shorts, leg,
                     cv2.LINE_AA, shift=4)
            cv2.line(img, (int(knee[0] * s), int(knee[1] * s)),
                     (int((hip[0] + side * 0.06 * hpx + sw) * s), int(fv * s)), socks, leg, cv2.LINE_AA, shift=4)
        bw = 0.15 * hpx
        cv2.rectangle(img, (int((fu - bw) * s), int((fv - 0.58 * hpx) * s)),
                      (int((fu + bw) * s), int((fv - 0.45 * hpx) * s)), shorts, -1, cv2.LINE_AA, shift=4)
        cv2.rectangle(img, (int((fu - bw) * s), int((fv - 0.83 * hpx) * s)),
                      (int((fu + bw) * s), int((fv - 0.56 * hpx) * s)), shirt, -1, cv2.LINE_AA, shift=4)
        raise_ = float(w.arms[i, p])
        arm = max(1, int(round(0.07 * hpx)))
        for side in (-1, 1):
            sh = (fu + side * bw, fv - 0.8 * hpx)
            hand = (sh[0] + side * 0.08 * hpx * (1 - raise_), sh[1] + 0.3 * hpx * (1 - raise_) - 0.32 * hpx * raise_)
            cv2.line(img, (int(sh[0] * s), int(sh[1] * s)), (int(hand[0] * s), int(hand[1] * s)), shirt, arm,
                     cv2.LINE_AA, shift=4)
        cv2.circle(img, (int(fu * s), int((fv - 0.91 * hpx) * s)), max(1, int(0.085 * hpx * s)), SKIN, -1,
                   cv2.LINE_AA, shift=4)

    def ball_pixel(self, i: int) -> tuple[float, float, float]:
        """Where the ball's centre is drawn (u, v) and its radius, in pixels."""
        b = self.world.ball[i].astype(float)
        self.cam.look(self.target[i], self.zoom[i])
        uv, _ = self.cam.project(b[None])
        # Drawn larger when high: in the air a lofted ball visibly grows.
        radius = self.o.ball_scale * BALL_RADIUS * self.cam.f / float(np.linalg.norm(b - CAMERA_POS)) * (1 + b[2] / 8)
        return float(uv[0, 0]), float(uv[0, 1]), max(radius, 1.2)

    def _ball(self, img: np.ndarray, i: int) -> None:
        b = self.world.ball[i].astype(float)
        u, v, r = self.ball_pixel(i)
        shadow, _ = self.cam.project(np.array([[b[0], b[1], 0.0]]))
        su, sv = shadow[0]
        s = 16
        cv2.ellipse(img, (int(su * s), int((sv + 0.2 * r) * s)), (int(r * 1.1 * s), int(r * 0.45 * s)), 0, 0, 360,
                    (25, 60, 28), -1, cv2.LINE_AA, shift=4)
        cv2.circle(img, (int(u * s), int(v * s)), int((r + 0.8) * s), (70, 70, 70), -1, cv2.LINE_AA, shift=4)
        cv2.circle(img, (int(u * s), int(v * s)), int(r * s), (250, 250, 250), -1, cv2.LINE_AA, shift=4)
