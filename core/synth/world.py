"""The physical side of a synthetic match: where the ball and the 23 people are, frame by frame.

Given an event script (class, team, frame), it places each event on the pitch, picks the
player who touches the ball, and builds trajectories so that each class has its own look at
its frame: a ground ball leaving a player's feet (PASS), a player setting off with the ball
(DRIVE), an airborne ball meeting a head (HEADER), a lofted ball whose shadow parts from it
(HIGH PASS, CROSS from a wing), the ball crossing a line (OUT) or the goal line between the
posts (GOAL), a release from overhead at the touchline (THROW IN), a fast ball at goal (SHOT),
an opponent stopping the ball (BLOCK) or taking it off the carrier (TACKLE), a kick of a
resting ball past a wall (FREE KICK).

Pitch coordinates in metres: x along the length (0 = home goal line), y across (0 = far
touchline, 68 = the touchline nearest the camera), z up. Home attacks +x.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.labels import CLASS_INDEX, FPS
from core.synth.events import ScriptedEvent

C = CLASS_INDEX
LENGTH, WIDTH = 105.0, 68.0
GOAL_HALF_WIDTH, GOAL_HEIGHT = 3.66, 2.44
N_PLAYERS = 22
REFEREE = 22
HEAD_Z, THROW_Z = 2.0, 2.3
MAX_RUN = 8.0  # m/s, a sprint

#: 4-4-2 in team-relative units: u from own goal (0) to the opponent's (1), v across (0..1).
FORMATION = np.array([
    (0.02, 0.50),
    (0.20, 0.14), (0.18, 0.38), (0.18, 0.62), (0.20, 0.86),
    (0.42, 0.14), (0.40, 0.38), (0.40, 0.62), (0.42, 0.86),
    (0.62, 0.36), (0.62, 0.64),
])

#: Ball speed in the air or on the ground after each kind of touch (m/s), and loft height (m).
SPEED = {C["PASS"]: 13, C["HIGH PASS"]: 19, C["CROSS"]: 20, C["SHOT"]: 25, C["FREE KICK"]: 20,
         C["THROW IN"]: 11, C["HEADER"]: 11, C["BALL PLAYER BLOCK"]: 9, C["OUT"]: 6, C["GOAL"]: 6,
         C["DRIVE"]: 5.5, C["PLAYER SUCCESSFUL TACKLE"]: 5.0}
LOFT = {C["HIGH PASS"]: (6.0, 11.0), C["CROSS"]: (4.0, 7.0), C["FREE KICK"]: (3.0, 5.0),
        C["THROW IN"]: (0.5, 1.5), C["HEADER"]: (1.0, 3.0), C["SHOT"]: (0.0, 1.2)}
CARRY = (C["DRIVE"], C["PLAYER SUCCESSFUL TACKLE"])
#: Classes that happen in a place of their own: crosses from a wing, shots within range.
PLACED = (C["CROSS"], C["SHOT"])


@dataclass
class PlacedEvent:
    frame: int
    cls: int
    team: int
    x: float
    y: float
    #: The player (0..21) who touches the ball; -1 for OUT and GOAL (nobody does).
    actor: int = -1


@dataclass
class World:
    """Per-frame positions: what the renderer draws and the sidecar stores."""

    ball: np.ndarray  # (N, 3) x, y, z
    players: np.ndarray  # (N, 23, 2) x, y of 22 players and the referee
    #: (N, 23) 0..1: how far each person's arms are raised (the thrower before a throw-in).
    arms: np.ndarray
    team: np.ndarray  # (23,) 0 home, 1 away, 2 referee
    keeper: np.ndarray  # (23,) bool
    events: list[PlacedEvent]


def attack_goal_x(team: int) -> float:
    return LENGTH if team == 0 else 0.0


def own_goal_x(team: int) -> float:
    return 0.0 if team == 0 else LENGTH


def formation_targets(ball_xy: np.ndarray) -> np.ndarray:
    """Where each player wants to be given the ball position: the block slides with the ball.

    ``ball_xy`` is (N, 2); returns (N, 22, 2).
    """
    n = len(ball_xy)
    out = np.zeros((n, N_PLAYERS, 2))
    for team in (0, 1):
        d = 1.0 if team == 0 else -1.0
        progress = ball_xy[:, 0] / LENGTH if team == 0 else 1 - ball_xy[:, 0] / LENGTH  # 0..1 toward attack
        u = FORMATION[:, 0][None, :]
        v = FORMATION[:, 1][None, :]
        rel = 0.06 + u * 0.58 + (progress[:, None] - 0.45) * 0.42
        rel[:, 0] = 0.015 + 0.07 * progress  # the keeper
        rel = np.clip(rel, 0.01, 0.97)
        x = own_goal_x(team) + d * rel * LENGTH
        y = WIDTH * (0.5 + (v - 0.5) * 0.78) + (ball_xy[:, 1:2] - WIDTH / 2) * 0.32
        y[:, 0] = WIDTH / 2 + (ball_xy[:, 1] - WIDTH / 2) * 0.12
        out[:, team * 11:(team + 1) * 11, 0] = x
        out[:, team * 11:(team + 1) * 11, 1] = y
    return out


def _clip_in(x: float, y: float, margin: float = 1.5) -> tuple[float, float]:
    return float(np.clip(x, margin, LENGTH - margin)), float(np.clip(y, margin, WIDTH - margin))


class _Planner:
    """Places events on the pitch and lays the ball's path between them."""

    def __init__(self, script: list[ScriptedEvent], n_frames: int, rng: np.random.Generator):
        self.script, self.n, self.rng = script, n_frames, rng
        self.ball = np.zeros((n_frames, 3))
        self.placed: list[PlacedEvent] = []
        #: (frame_from, frame_to, actor, kind) for player duties: "hold" at the ball, "carry" behind it.
        self.duties: list[tuple[int, int, int, str]] = []
        #: (frame_from, frame_to, x, y, defending team) of free-kick walls.
        self.walls: list[tuple[int, int, float, float, int]] = []
        self.raised: list[tuple[int, int, int]] = []  # (from, to, player): arms up for a throw-in

    # -- where the next event happens
    def _next_spot(self, i: int, x: float, y: float) -> tuple[float, float]:
        """Where event ``i + 1`` happens, no further than the ball can travel in the gap
        (lines and spots of restarts excepted: the ball must reach them)."""
        x1, y1 = self._spot(i, x, y)
        ev, nxt = self.script[i], self.script[i + 1]
        fixed = ev.cls in (C["OUT"], C["GOAL"]) or nxt.cls in (C["OUT"], C["GOAL"], C["THROW IN"])
        dt = (nxt.frame - ev.frame) / FPS
        reach = 1.3 * SPEED.get(ev.cls, 12.0) * dt + 0.5
        if nxt.cls in PLACED:
            reach = max(reach, 30.0 * dt)  # a long ball gets play to where a cross or shot comes from
        dist = float(np.hypot(x1 - x, y1 - y))
        if not fixed and dist > reach:
            x1, y1 = x + (x1 - x) * reach / dist, y + (y1 - y) * reach / dist
        return x1, y1

    def _spot(self, i: int, x: float, y: float) -> tuple[float, float]:
        ev, nxt = self.script[i], self.script[i + 1]
        after = self.script[i + 2] if i + 2 < len(self.script) else None
        u = self.rng.uniform
        dt = (nxt.frame - ev.frame) / FPS
        d_next = 1.0 if nxt.team == 0 else -1.0
        if ev.cls == C["GOAL"]:
            return LENGTH / 2, WIDTH / 2  # kick-off
        if ev.cls == C["OUT"]:
            if nxt.cls == C["THROW IN"] or y <= 0.5 or y >= WIDTH - 0.5:
                side = 0.0 if y < WIDTH / 2 else WIDTH
                return float(np.clip(x + u(-2, 2), 1, LENGTH - 1)), side
            if attack_goal_x(nxt.team) == (0.0 if x < LENGTH / 2 else LENGTH):  # corner
                return attack_goal_x(nxt.team), (0.5 if y < WIDTH / 2 else WIDTH - 0.5)
            gk = own_goal_x(nxt.team)  # goal kick
            return gk + (5.5 if gk == 0 else -5.5), WIDTH / 2 + u(-9, 9)
        if nxt.cls == C["OUT"]:
            if after is not None and after.cls == C["THROW IN"]:
                side = 0.0 if (y < WIDTH / 2) != (u() < 0.25) else WIDTH
                return float(np.clip(x + u(-6, 12) * d_next, 2, LENGTH - 2)), side
            # Over a goal line: a corner for the restart team, or its goal kick.
            restart = after.team if after is not None else nxt.team
            corner = after is not None and (after.cls == C["CROSS"] or (after.cls == C["HIGH PASS"] and u() < 0.5))
            line = attack_goal_x(restart) if corner else own_goal_x(restart)
            yy = u(4, WIDTH / 2 - 6) if u() < 0.5 else u(WIDTH / 2 + 6, WIDTH - 4)
            return line, yy
        if nxt.cls == C["GOAL"]:
            return attack_goal_x(nxt.team), WIDTH / 2 + u(-2.8, 2.8)
        if nxt.cls == C["FREE KICK"]:
            return _clip_in(x + u(-2, 2), y + u(-2, 2))  # the foul was where the ball was
        if nxt.cls in PLACED:
            return self._region(nxt.cls, nxt.team, y)
        if nxt.cls == C["THROW IN"]:
            return float(np.clip(x + u(-5, 5), 1, LENGTH - 1)), (0.0 if y < WIDTH / 2 else WIDTH)
        if ev.cls in (C["CROSS"], C["FREE KICK"]) or (ev.cls == C["HIGH PASS"] and nxt.cls == C["HEADER"]):
            ga = attack_goal_x(ev.team)
            da = 1.0 if ev.team == 0 else -1.0
            if ev.cls != C["HIGH PASS"]:
                return _clip_in(ga - da * u(5, 14), WIDTH / 2 + u(-10, 10))
        if ev.cls == C["SHOT"]:
            ga = attack_goal_x(ev.team)
            frac = u(0.3, 0.7) if nxt.cls == C["BALL PLAYER BLOCK"] else u(0.75, 0.95)
            return _clip_in(x + (ga - x) * frac, y + (WIDTH / 2 - y) * frac + u(-3, 3))
        # Open play: a distance that suits the touch, mostly toward the next team's goal.
        if ev.cls in CARRY:
            dist = min(SPEED[ev.cls] * dt * u(0.6, 1.0), 25.0)
        elif nxt.cls == C["BALL PLAYER BLOCK"] or nxt.cls == C["PLAYER SUCCESSFUL TACKLE"]:
            dist = u(2, 9)
        elif ev.cls == C["HIGH PASS"]:
            dist = u(25, 45)
        elif ev.cls == C["HEADER"]:
            dist = u(5, 18)
        elif ev.cls == C["BALL PLAYER BLOCK"]:
            dist = u(2, 10)
        elif ev.cls == C["THROW IN"]:
            dist = u(8, 20)
        else:
            dist = float(np.clip(u(8, 26), 4, SPEED.get(ev.cls, 12) * max(dt, 0.4) + 3))
        heading = 0.0 if nxt.team == 0 else np.pi
        angle = heading + u(-1.1, 1.1)
        if ev.cls in (C["BALL PLAYER BLOCK"], C["HEADER"]):
            angle = u(-np.pi, np.pi)
        if after is not None and after.cls in PLACED + (C["FREE KICK"],) and after.team == nxt.team:
            # The attack builds toward where the cross, shot or foul will come from.
            tx, ty = self._region(after.cls if after.cls in PLACED else C["SHOT"], after.team, y)
            angle = float(np.arctan2(ty - y, tx - x))
            dist = min(float(np.hypot(tx - x, ty - y)), max(dist, 1.3 * SPEED.get(ev.cls, 12.0) * dt))
            return _clip_in(x + dist * np.cos(angle), y + dist * np.sin(angle))
        return _clip_in(x + dist * np.cos(angle), y + dist * np.sin(angle) * 0.8)

    def _region(self, cls: int, team: int, y: float) -> tuple[float, float]:
        """A spot for a CROSS (a wing of the attacking third) or a SHOT (in range of goal)."""
        u = self.rng.uniform
        gx, d = attack_goal_x(team), (1.0 if team == 0 else -1.0)
        if cls == C["CROSS"]:
            wing = u(3, 11) if y < WIDTH / 2 else u(WIDTH - 11, WIDTH - 3)
            return _clip_in(gx - d * u(6, 22), wing)
        return _clip_in(gx - d * u(11, 27), WIDTH / 2 + u(-13, 13))

    # -- the ball between two events
    def _segment(self, i: int, x0: float, y0: float, x1: float, y1: float) -> None:
        ev, nxt = self.script[i], self.script[i + 1]
        f0, f1 = ev.frame, nxt.frame
        n = f1 - f0
        u = self.rng.uniform
        z0 = HEAD_Z if ev.cls == C["HEADER"] else THROW_Z if ev.cls == C["THROW IN"] else 0.0
        z1 = HEAD_Z if nxt.cls == C["HEADER"] else 0.0
        dist = float(np.hypot(x1 - x0, y1 - y0))
        moving_contact = nxt.cls in (C["HEADER"], C["BALL PLAYER BLOCK"], C["GOAL"], C["OUT"])
        if ev.cls in (C["OUT"], C["GOAL"]):
            # Dead ball: it runs on past the line, is fetched to the restart spot, then waits.
            self._dead_ball(i, x0, y0, x1, y1)
            return
        if ev.cls in CARRY:
            t = np.arange(n) / max(n, 1)
            xs, ys = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            touch = 0.5 + 0.45 * np.sin(np.arange(n) * 2 * np.pi / (0.55 * FPS))  # the ball runs ahead
            dx, dy = (x1 - x0) / max(dist, 1e-6), (y1 - y0) / max(dist, 1e-6)
            self.ball[f0:f1, 0] = xs + dx * touch * (np.arange(n) > 2)
            self.ball[f0:f1, 1] = ys + dy * touch * (np.arange(n) > 2)
            self.ball[f0:f1, 2] = 0.0
            self.duties.append((f0, f1, -2, "carry"))  # actor filled in later
            return
        speed = SPEED.get(ev.cls, 12.0)
        flight = n if moving_contact else int(np.clip(round(dist / speed * FPS), 2, n))
        t = np.arange(flight) / flight
        lo, hi = LOFT.get(ev.cls, (0.0, 0.0))
        height = u(lo, hi) if hi else 0.0
        if nxt.cls == C["HEADER"] and height < 2.0:
            height = u(2.0, 4.0)  # a header needs a ball in the air
        lofted = height > 0.5 or z0 > 0 or z1 > 0
        s = t if lofted else t * (1.6 - 0.6 * t)  # ground balls slow down
        self.ball[f0:f0 + flight, 0] = x0 + (x1 - x0) * s
        self.ball[f0:f0 + flight, 1] = y0 + (y1 - y0) * s
        self.ball[f0:f0 + flight, 2] = np.maximum(0.0, z0 * (1 - t) + z1 * t + 4 * height * t * (1 - t))
        if flight < n:  # at rest at the receiver's feet until the next touch
            self.ball[f0 + flight:f1] = (x1, y1, 0.0)
            self.duties.append((f0 + flight, f1, -3, "hold"))  # the next event's actor, filled in later

    def _dead_ball(self, i: int, x0: float, y0: float, x1: float, y1: float) -> None:
        ev, nxt = self.script[i], self.script[i + 1]
        f0, f1 = ev.frame, nxt.frame
        n = f1 - f0
        v = (np.array([x0, y0]) - self.ball[ev.frame - 1, :2]) if ev.frame > 0 else np.zeros(2)
        vx, vy = v * min(1.0, 1.0 / max(np.linalg.norm(v), 1e-9))  # at most 25 m/s
        run = min(n, FPS)
        k = np.arange(run)[:, None]  # frame 0 is the event itself: the ball on the line
        decay = (1 - 0.93 ** k) / (1 - 0.93)
        on = np.array([x0, y0]) + np.array([vx, vy]) * decay
        on[:, 0] = np.clip(on[:, 0], -3.0, LENGTH + 3.0)  # the net, the boards
        on[:, 1] = np.clip(on[:, 1], -3.0, WIDTH + 3.0)
        if ev.cls == C["GOAL"]:  # into the net, no further than its back
            on[:, 0] = np.clip(on[:, 0], -2.0, LENGTH + 2.0)
        self.ball[f0:f0 + run, :2] = on
        self.ball[f0:f0 + run, 2] = 0.0
        rest = n - run
        if rest <= 0:
            return
        if ev.cls == C["GOAL"]:  # the broadcast cuts away; the ball is back on the spot after it
            self.ball[f0 + run:f1] = (x1, y1, 0.0)
            return
        fetch = max(1, rest - min(rest // 2, 2 * FPS))
        t = (np.arange(fetch) / fetch)[:, None]
        self.ball[f0 + run:f0 + run + fetch, :2] = on[-1] + (np.array([x1, y1]) - on[-1]) * t
        self.ball[f0 + run:f0 + run + fetch, 2] = 1.0  # carried
        self.ball[f0 + run + fetch:f1] = (x1, y1, THROW_Z if nxt.cls == C["THROW IN"] else 0.0)
        self.duties.append((f0 + run + fetch, f1, -3, "hold"))

    def plan(self) -> None:
        script = self.script
        x, y = LENGTH / 2, WIDTH / 2
        if not script:  # a clip too short for any event: the ball waits on the centre spot
            self.ball[:] = (x, y, 0.0)
            return
        self.ball[: script[0].frame] = (x, y, 0.0)
        for i, ev in enumerate(script):
            self.placed.append(PlacedEvent(ev.frame, ev.cls, ev.team, x, y))
            if i + 1 < len(script):
                x1, y1 = self._next_spot(i, x, y)
                if script[i + 1].cls == C["FREE KICK"]:
                    self._free_kick_wall(i + 1, x1, y1)
                self._segment(i, x, y, x1, y1)
                x, y = x1, y1
            else:
                self.ball[ev.frame:] = (x, y, 0.0)

    def _free_kick_wall(self, i: int, x: float, y: float) -> None:
        ev = self.script[i]
        start = max(self.script[i - 1].frame + FPS, ev.frame - 3 * FPS)
        self.walls.append((start, ev.frame + FPS // 2, x, y, 1 - ev.team))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def simulate(script: list[ScriptedEvent], n_frames: int, rng: np.random.Generator) -> World:
    """Place the script on the pitch and move everyone, frame by frame."""
    planner = _Planner(script, n_frames, rng)
    planner.plan()
    ball = planner.ball
    placed = planner.placed

    # Everyone's unhurried position: the formation sliding with the ball, plus a slow wander.
    t = np.arange(n_frames) / FPS
    smooth_ball = _ema(ball[:, :2], 0.04)
    targets = formation_targets(smooth_ball)
    phases = rng.uniform(0, 2 * np.pi, (N_PLAYERS, 2))
    periods = rng.uniform(6, 14, (N_PLAYERS, 2))
    targets += 2.0 * np.sin(t[:, None, None] * 2 * np.pi / periods[None] + phases[None])
    base = _chase(targets, MAX_RUN * 0.75 / FPS)

    # Who touches the ball: the nearest player of the team at that moment (not the last toucher,
    # unless he carried the ball there himself).
    people = np.concatenate([base, np.zeros((n_frames, 1, 2))], axis=1)
    weight = np.zeros((n_frames, N_PLAYERS))
    duty = np.zeros((n_frames, N_PLAYERS, 3))  # odds-weighted x, y and the odds
    arms = np.zeros((n_frames, N_PLAYERS + 1))
    last_actor = -1
    for i, ev in enumerate(placed):
        if ev.cls in (C["OUT"], C["GOAL"]):
            last_actor = -1
            continue
        prev_cls = placed[i - 1].cls if i else -1
        if prev_cls in CARRY and last_actor >= 0 and (last_actor // 11) == ev.team and ev.cls not in CARRY:
            actor = last_actor  # the dribbler passes or shoots himself
        else:
            squad = np.arange(ev.team * 11, ev.team * 11 + 11)
            dist = np.linalg.norm(base[ev.frame, squad] - (ev.x, ev.y), axis=1)
            near_own_goal = abs(ev.x - own_goal_x(ev.team)) < 8 and abs(ev.y - WIDTH / 2) < 12
            if not near_own_goal:
                dist[0] = np.inf  # keepers stay home
            if prev_cls in (C["PASS"], C["HIGH PASS"], C["CROSS"], C["THROW IN"], C["FREE KICK"]) and \
                    last_actor in squad:
                dist[last_actor - ev.team * 11] = np.inf  # nobody passes to himself
            actor = int(squad[int(np.argmin(dist))])
        ev.actor = actor
        last_actor = actor
        # He sets off early enough to get there at a run (anticipation, as players read a pass).
        far = float(np.linalg.norm(base[max(0, ev.frame - 2 * FPS), actor] - (ev.x, ev.y)))
        back = float(np.linalg.norm(base[min(n_frames - 1, ev.frame + 2 * FPS), actor] - (ev.x, ev.y)))
        _pull(weight, duty, actor, (ev.x, ev.y), ev.frame, before=float(np.clip(far / 6.5, 1.6, 6.0)),
              after=float(np.clip(back / 5.0, 1.2, 6.0)))  # and jogs back to his place
        if ev.cls == C["THROW IN"]:
            lo = max(0, ev.frame - 2 * FPS)
            arms[lo:ev.frame + 3, actor] = _smoothstep((np.arange(lo, ev.frame + 3) - lo) / FPS)
    # The planner's holds and carries, now that actors are known.
    frames_of = [e.frame for e in placed]
    for f0, f1, who, kind in planner.duties:
        k = int(np.searchsorted(frames_of, f1 if kind == "hold" else f0))
        if k >= len(placed) or placed[k].actor < 0:
            continue
        actor = placed[k].actor
        if kind == "carry":
            d = ball[min(f1, n_frames - 1), :2] - ball[f0, :2]
            back = d / max(np.linalg.norm(d), 1e-6) * 0.7
            _pull(weight, duty, actor, ball[f0:f1, :2] - back, f0, f1 - 1, before=0.1)
        else:
            _pull(weight, duty, actor, (placed[k].x, placed[k].y), f0, f1)
    for f0, f1, x, y, team in planner.walls:
        goal = np.array([own_goal_x(team), WIDTH / 2])
        towards = goal - (x, y)
        towards /= max(np.linalg.norm(towards), 1e-6)
        side = np.array([-towards[1], towards[0]])
        centre = np.array([x, y]) + towards * 9.15
        squad = np.arange(team * 11 + 1, team * 11 + 11)
        order = squad[np.argsort(np.linalg.norm(base[f0, squad] - centre, axis=1))[:4]]
        for k, p in enumerate(order):
            spot = centre + side * (k - 1.5) * 0.75
            _pull(weight, duty, int(p), spot, f0, f1, before=1.5, after=0.8)
    spot = duty[..., :2] / np.maximum(duty[..., 2:], 1e-12)
    people[:, :N_PLAYERS] = base * (1 - weight[..., None]) + spot * weight[..., None]
    # The referee keeps a diagonal view of play, 12-18 m from the ball.
    ref_target = smooth_ball + np.array([-10.0, 9.0]) * np.where(smooth_ball[:, :1] > LENGTH / 2, 1, -1)
    people[:, REFEREE] = _chase(ref_target[:, None], MAX_RUN * 0.7 / FPS)[:, 0]
    team = np.array([0] * 11 + [1] * 11 + [2])
    keeper = np.zeros(N_PLAYERS + 1, bool)
    keeper[[0, 11]] = True
    return World(ball=ball.astype(np.float32), players=people.astype(np.float32), arms=arms.astype(np.float32),
                 team=team, keeper=keeper, events=placed)


def _pull(weight: np.ndarray, duty: np.ndarray, player: int, spot, arrive: int, leave: int | None = None,
          before: float = 1.6, after: float = 1.2) -> None:
    """Bring ``player`` to ``spot``: a smooth run in over ``before`` seconds ending at frame
    ``arrive``, there until ``leave``, then a release over ``after`` seconds. ``spot`` is an
    (x, y) or an array of them, one per frame from ``arrive`` to ``leave``."""
    n = len(weight)
    leave = arrive if leave is None else leave
    lo = max(0, arrive - int(before * FPS))
    hi = min(n, leave + int(after * FPS) + 1)
    f = np.arange(lo, hi)
    up = _smoothstep((f - lo + 1) / max(arrive - lo + 1, 1))
    down = 1 - _smoothstep((f - leave) / max(after * FPS, 1))
    w = np.where(f < arrive, up, np.where(f <= leave, 1.0, down))
    spots = np.asarray(spot, float)
    if spots.ndim == 2:  # a moving spot: hold each frame's, and the ends before and after
        idx = np.clip(f - arrive, 0, len(spots) - 1)
        spots = spots[idx]
    else:
        spots = np.broadcast_to(spots, (len(f), 2))
    # Overlapping duties blend by their odds w / (1 - w): a duty at full weight dominates, and
    # positions stay continuous as one duty hands over to the next.
    odds = w / (1.0 - w + 1e-3)
    weight[lo:hi, player] = np.maximum(weight[lo:hi, player], w)
    duty[lo:hi, player, :2] += odds[:, None] * spots
    duty[lo:hi, player, 2] += odds


def _ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """Zero-lag exponential smoothing (forward then backward), as a cameraman anticipates."""
    out = np.empty_like(x, dtype=float)
    acc = x[0].astype(float)
    for i in range(len(x)):
        acc = acc + alpha * (x[i] - acc)
        out[i] = acc
    acc = out[-1].copy()
    for i in range(len(x) - 1, -1, -1):
        acc = acc + alpha * (out[i] - acc)
        out[i] = acc
    return out


def _chase(targets: np.ndarray, max_step: float) -> np.ndarray:
    """Positions (N, P, 2) that follow ``targets`` at no more than ``max_step`` metres a frame."""
    pos = np.empty_like(targets, dtype=float)
    cur = targets[0].astype(float)
    for i in range(len(targets)):
        delta = targets[i] - cur
        dist = np.linalg.norm(delta, axis=-1, keepdims=True)
        cur = cur + delta * np.minimum(1.0, max_step / np.maximum(dist, 1e-9))
        pos[i] = cur
    return pos
