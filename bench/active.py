#!/usr/bin/env python3
"""Active learning, measured: does the review queue save analysts' time?

The set-up. Synthetic games at 320x180 (ball drawn 3x). Round 0 is one model for every seed,
the scarce labels: cpu_small (its synthetic pretraining, then training) on a few fully labelled
minutes (``base_games`` x ``base_minutes``), as the analyst's model trained on the labelled games
they have (the encoder's pretraining, from the sidecars only, on each seed's ``start_minutes``
game). Per seed, a workspace holds those labelled games (the train split: a retrain learns from
them again, as it does in the app), a pool game whose labels are hidden and play the analyst,
and, shared by all seeds, a held-out game: the validation split, and, imported a second time
without labels, "a new game" for the analyst time figures. From round 0 each strategy runs
``rounds`` rounds: review ``budget`` items of the pool, retrain (the product's retrain: fine-tune
from the active version with its schedule, ``core.jobs.FINE_TUNE``, here ``round_epochs`` x
``round_samples`` clips, on the labelled games and every review decision), re-infer the pool,
activate it (decisions carried over). Seeds vary the pool game, every training's seed and the
random picks.

The analyst is an oracle with the truth and ``core.effort``'s judge: a prediction is accepted
(moved and team-fixed as needed) when a true event of its class is within 12 frames, relabelled
when another class happened there, else rejected; a missed-event item becomes a label when an
event of its class is there, else it is dismissed (kept as a rejected sub-threshold prediction).

Strategies, the same budget of ``--budget`` reviewed items per round (the goal is stated in
reviews; each review costs analyst seconds by ``core.effort``, printed beside):

* ``queue``: the review queue's first items (uncertain and missed-event items), as in the app;
* ``queue-plain``: the queue without this issue's changes (no rare-class boost, no spacing, no
  dismissals kept): what it was, for before/after;
* ``random``: pending predictions at random; ``confidence``: the pending predictions with the
  confidence closest to the queue's coin toss (0.5);
* ``scratch``: no model: the analyst watches the pool in time order from where they stopped and
  labels every event, for the analyst seconds the queue spent in that round.

Measured per round: validation mAP@1 (the held-out game, what the Models tab shows), the reviews
and analyst minutes spent; and for the queue's model of each round, the analyst minutes to label
a new 10-minute game fully and correctly (``core.effort``, scaled from the held-out game):
(a) from scratch, (b) reviewing the model's predictions in time order, (c) following the queue.
Goal: the queue reaches random's final mAP@1 with at most 60 % of random's reviews (mean over
seeds, the saving larger than two standard errors), and (b) or (c) at most half of (a).

Sizes of the full run (defaults) and why: round 0 on 2 x 4 labelled minutes, trained once (a
model from 1.5 minutes scored 0.06 and only got worse; fine-tuning without round 0's games in the
workspace forgot them, 0.32 to 0.30 in three rounds whatever was reviewed); 5 seeds x 4
strategies (``queue-plain`` is added to a finished run with ``--resume --strategies queue-plain``)
x 4 rounds of 15 items; a 3-minute pool and a 6-minute held-out game (``Plan``); inference without the flip
(TTA); 2 epochs of 300 clips a round (``--round-epochs``, ``--round-samples``): a round costs
about a minute of CPU per strategy (mostly the ball's track of every training frame, which a
retrain computes again, and inference of the pool and the held-out game), where one full-length
cpu_small training takes 11. The README has the time the run took here.
``--quick``: one seed, two rounds of 6 items on 15-second games with ``tiny.yaml``: the
machinery, checked in CI.
Every result is written as it comes (``--out``/active.json), and a rerun with ``--resume`` skips
the (seed, strategy) runs already there. Two cores run it as two shares of one thread each
(``--only``, a seed's scratch in the share with its queue), merged at the end (``--merge``).

Repeatability: a seed fixes a run on one machine with the same ``--threads`` (default 2; float
sums split over another number of threads add up in another order, and the weights differ).
The games are rendered fast (not ``SynthConfig.exact``), which is not byte-repeatable: the JSON
keeps each video's digest, so a run elsewhere can tell whether it trained on the same games.

    python bench/active.py [--seeds 5] [--rounds 4] [--budget 15] [--strategies queue,random,...] [--resume]
    python bench/active.py --quick
    taskset -c 0 python bench/active.py --threads 1 --only 0,1,4:queue+scratch --out /tmp/a &
    taskset -c 1 python bench/active.py --threads 1 --only 2,3,4:random+confidence --out /tmp/b; wait
    python bench/active.py --merge /tmp/a/active.json,/tmp/b/active.json
    python bench/active.py --wait [--demo DIR]     # Retrain -> new predictions on the game under review
"""
from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

from core.active import QueueConfig, QueueItem, dismiss_missed, review_queue  # noqa: E402
from core.effort import (Effort, best_cut, decision_seconds, follow_queue, from_scratch, judge,  # noqa: E402
                         passed, per_minutes, review_in_time_order, watch_through)
from core.ingest import import_source  # noqa: E402
from core.jobs import InferParams, RetrainParams, reinfer, retrain, review_focus  # noqa: E402
from core.labels import LABEL_FILE, ms_to_frame  # noqa: E402
from core.metrics import VALID_MAP  # noqa: E402
from core.progress import quiet  # noqa: E402
from core.runner import resolve_model  # noqa: E402
from core.store import Store  # noqa: E402
from core.synth import RenderOptions, SynthConfig, generate_game  # noqa: E402
from core.versions import active_version, hand_over, learning_curve  # noqa: E402
from core.workspace import Workspace  # noqa: E402

STRATEGIES = ("queue", "queue-plain", "random", "confidence", "scratch")
MODEL_STRATEGIES = ("queue", "queue-plain", "random", "confidence")
NEW_GAME = "bench/new-game"  # the held-out game again, without labels: the analyst's new game
EFFORT = Effort()


@dataclass
class Plan:
    """The sizes of one run."""

    seeds: int = 5
    rounds: int = 4
    budget: int = 15
    strategies: tuple[str, ...] = ("queue", "random", "confidence", "scratch")
    start_minutes: float = 1.5
    pool_minutes: float = 3.0
    #: 6, not 3: on a 3-minute game (51 events, 9 of 12 classes, FREE KICK once) one event
    #: ranked below a false alarm moved mAP@1 by 0.04, more than any strategy's effect.
    heldout_minutes: float = 6.0
    config: str = str(ROOT / "core" / "configs" / "cpu_small.yaml")
    pretrain_steps: int | None = None  # None: the config's
    base_games: int = 2
    base_minutes: float = 4.0
    round0_epochs: int = 6
    round0_samples: int = 1000
    round0_track_steps: int = 3000
    #: Each round's fine-tune: the retrain's schedule (core.jobs.FINE_TUNE: its rate and average,
    #: the track's branch kept), shortened to these epochs and clips per epoch.
    round_epochs: int = 2
    round_samples: int = 300
    size: tuple[int, int] = (320, 180)
    quick: bool = False


def quick_plan() -> Plan:
    return Plan(seeds=1, rounds=2, budget=6, strategies=STRATEGIES, start_minutes=0.25, pool_minutes=0.25,
                heldout_minutes=0.25, config=str(ROOT / "core" / "configs" / "tiny.yaml"), pretrain_steps=0,
                base_games=1, base_minutes=0.25,
                round0_epochs=1, round0_samples=64, round0_track_steps=0, round_epochs=1, round_samples=32,
                size=(160, 90), quick=True)


# --------------------------------------------------------------------------- games and workspaces


def _render(folder: Path, config: SynthConfig, index: int) -> Path:
    """One game (cached): its folder holding the video and Labels-ball.json."""
    done = list(folder.rglob(LABEL_FILE))
    if not done or not any(folder.rglob("*.mp4")):
        shutil.rmtree(folder, ignore_errors=True)
        generate_game(folder, config, index=index)
        done = list(folder.rglob(LABEL_FILE))
    return done[0].parent


def truth_of(folder: Path) -> list[dict]:
    doc = json.loads((folder / "truth.json").read_text())
    return [{"id": i, "frame": ms_to_frame(int(a["position"])), "label": a["label"], "team": a["team"]}
            for i, a in enumerate(doc["annotations"])]


def hide_labels(folder: Path, url_local: str | None = None) -> None:
    """Keep a game's labels aside as ``truth.json`` and leave its label file empty (or renamed)."""
    if not (folder / "truth.json").is_file():
        shutil.copy(folder / LABEL_FILE, folder / "truth.json")
    doc = json.loads((folder / "truth.json").read_text())
    (folder / LABEL_FILE).write_text(json.dumps({**doc, "UrlLocal": url_local or doc["UrlLocal"], "annotations": []}))


def synth(plan: Plan, minutes: float, seed: int) -> SynthConfig:
    return SynthConfig(minutes=minutes, seed=seed, render=RenderOptions(*plan.size, ball_scale=3), exact=False)


def games(plan: Plan, data: Path) -> dict:
    """Render (once) the shared held-out game and each seed's start and pool games. A game's
    folder is named by its length, so a plan with other lengths renders its own."""
    root = data / "games"
    heldout = _render(root / f"heldout-{plan.heldout_minutes:g}min", synth(plan, plan.heldout_minutes, 900), 0)
    new = root / f"new-game-{plan.heldout_minutes:g}min"
    if not (new / "truth.json").is_file():
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        for f in heldout.iterdir():
            if f.suffix == ".mp4" or f.name == LABEL_FILE:
                shutil.copy(f, new / f.name)
        hide_labels(new, NEW_GAME)
    base = [_render(root / f"base-{k}-{plan.base_minutes:g}min", synth(plan, plan.base_minutes, 905), k)
            for k in range(plan.base_games)]
    seeds = {}
    for s in range(plan.seeds):
        start = _render(root / f"start-{s}-{plan.start_minutes:g}min", synth(plan, plan.start_minutes, 910 + s), 0)
        pool = _render(root / f"pool-{s}-{plan.pool_minutes:g}min", synth(plan, plan.pool_minutes, 910 + s), 1)
        hide_labels(pool)
        seeds[s] = {"start": start, "pool": pool}
    return {"heldout": heldout, "new": new, "base": base, "seeds": seeds}


def video_digests(found: dict) -> dict:
    """SHA-256 of every game's video: the games are rendered fast (x264's assembly on, not
    ``exact``), which is not byte-repeatable, so a run elsewhere compares its games here."""
    import hashlib

    folders = {"heldout": found["heldout"], **{f"base-{k}": f for k, f in enumerate(found["base"])},
               **{f"pool-{s}": v["pool"] for s, v in found["seeds"].items()}}
    return {name: hashlib.sha256(next(Path(f).glob("*.mp4")).read_bytes()).hexdigest()[:16]
            for name, f in folders.items()}


def config_file(plan: Plan, data: Path, name: str, encoder: str | None, **changes) -> str:
    """The plan's config with ``changes``: the shared pretrained encoder, no pretraining again."""
    cfg = yaml.safe_load(Path(plan.config).read_text())
    cfg.update(changes)
    cfg["pretrain"] = {**(cfg.get("pretrain") or {}), "steps": 0}  # done once, for every seed (``pretrained``)
    if encoder:
        cfg["model"]["pretrained"] = encoder
    path = data / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")  # two shares (--only) may write it at once
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tmp.replace(path)
    return str(path)


def pretrained(plan: Plan, data: Path, found: dict, log) -> str | None:
    """The encoder and ball detector, pretrained once (cached) on every seed's labelled game: the
    sidecar's ball and players, no event labels."""
    from core.training import TrainConfig
    from core.training.pretrain import pretrain

    config = TrainConfig.load(plan.config)
    steps = config.pretrain.steps if plan.pretrain_steps is None else plan.pretrain_steps
    if not steps:
        return None
    out = data / f"encoder-{plan.seeds}seeds-{steps}steps.safetensors"
    if out.is_file():
        return str(out)
    ws = Workspace.at(data / "ws-pretrain")
    shutil.rmtree(ws.root, ignore_errors=True)
    ws.ensure()
    t0 = time.perf_counter()
    with Store.open(ws) as store:
        for s in range(plan.seeds):
            import_source(store, found["seeds"][s]["start"], workspace=ws, split="train")
        config.pretrain.steps = steps

        def progress(r: dict) -> None:
            if r["step"] % 400 == 1 or r["step"] == steps:
                log(f"pretraining step {r['step']}/{steps}: ball cell found {r['ball_cell_accuracy']:.0%} "
                    f"({r['seconds']:.0f} s)")
        pretrain(config.model, config.pretrain, store, ws, ["train"], out, seed=0, progress=progress)
    shutil.rmtree(ws.root, ignore_errors=True)
    log(f"pretrained the encoder and ball detector: {steps} steps, {time.perf_counter() - t0:.0f} s")
    return str(out)


def base_model(plan: Plan, data: Path, found: dict, encoder: str | None, log) -> Path:
    """Round 0, one model for every seed: the config trained on the round-0 games, validated on
    the held-out game (cached: its folder, with ``metrics.json``)."""
    out = data / f"base-model-{plan.heldout_minutes:g}min"  # validated on that held-out game
    if (out / "metrics.json").is_file():
        return out
    cfg = config_file(plan, data, "round0", encoder, epochs=plan.round0_epochs, samples_per_epoch=plan.round0_samples,
                      track_steps=plan.round0_track_steps, valid_every=plan.round0_epochs)
    ws = Workspace.at(data / "ws-base")
    shutil.rmtree(ws.root, ignore_errors=True)
    ws.ensure()
    t0 = time.perf_counter()
    with Store.open(ws) as store:
        for folder in found["base"]:
            import_source(store, folder, workspace=ws, split="train")
        import_source(store, found["heldout"], workspace=ws, split="valid")
        done = retrain(store, ws, RetrainParams(config=cfg, infer_games=[]), quiet)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(store.model(done["version"])["path"], out)
    shutil.rmtree(ws.root, ignore_errors=True)
    log(f"round 0 (every seed): valid mAP@1 {json.loads((out / 'metrics.json').read_text())[VALID_MAP]:.4f} "
        f"({time.perf_counter() - t0:.0f} s)")
    return out


def _copy_workspace(base: Workspace, folder: Path) -> Workspace:
    """A strategy's own copy of round 0 (models stay where they are: fine-tuning reads them; the
    frame cache is one folder per seed, linked)."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base.root, folder, symlinks=True, ignore=shutil.ignore_patterns("runs"))
    return Workspace.at(folder).ensure()


# --------------------------------------------------------------------------- the analyst


@dataclass
class Analyst:
    """The oracle reviewing one pool game, with its running totals."""

    truth: list[dict]
    pool_id: int
    reviews: int = 0
    seconds: float = 0.0
    labels: int = 0
    cursor: int = 0  # scratch: the frame watched up to
    rng: random.Random = field(default_factory=random.Random)

    def claimed(self, store: Store) -> list[dict]:
        """True events already labelled in the store (the oracle labels at the true frames)."""
        have = {(lab["frame"], lab["label"]) for lab in store.labels(self.pool_id)}
        return [t for t in self.truth if (t["frame"], t["label"]) in have]

    def decide(self, store: Store, prediction: dict, pending: list[dict]) -> None:
        """A pending prediction: accepted (corrected), relabelled or rejected, as ``judge`` says."""
        verdict = judge(pending, self.truth, claimed=self.claimed(store)).verdicts[prediction["id"]]
        self.seconds += EFFORT.jump() + decision_seconds(verdict, EFFORT)
        self.reviews += 1
        t = verdict.truth
        if verdict.action == "accept":
            store.accept(prediction["id"], reviewer="oracle", frame=t["frame"], team=t["team"])
            self.labels += 1
        else:
            store.reject(prediction["id"], reviewer="oracle")
            if verdict.action == "relabel":
                store.add_label(self.pool_id, t["frame"], t["label"], t["team"], author="oracle")
                self.labels += 1

    def missed(self, store: Store, version: str, item: QueueItem, keep_dismissal: bool) -> None:
        """A missed-event item: a label where an event of its class is, else dismissed."""
        taken = {id(t) for t in self.claimed(store)}
        hit = min((t for t in self.truth if id(t) not in taken and t["label"] == item.label
                   and abs(t["frame"] - item.frame) <= 12), key=lambda t: abs(t["frame"] - item.frame), default=None)
        self.reviews += 1
        self.seconds += EFFORT.jump()
        if hit is not None:
            store.add_label(self.pool_id, hit["frame"], hit["label"], hit["team"], author="oracle")
            self.labels += 1
            self.seconds += EFFORT.add_at(hit["frame"] - item.frame)
        else:
            self.seconds += EFFORT.dismiss()
            if keep_dismissal:
                dismiss_missed(store, version, item, reviewer="oracle")

    def watch(self, store: Store, seconds: float, n_frames: int) -> None:
        """Scratch: watch on from ``cursor`` in time order, labelling every event, for ``seconds``."""
        left = seconds
        for t in sorted(self.truth, key=lambda t: t["frame"]):
            if t["frame"] < self.cursor:
                continue
            cost = EFFORT.watch((t["frame"] - self.cursor) / 25, EFFORT.scratch_speed) + EFFORT.add_while_watching()
            if cost > left:
                break
            left -= cost
            self.cursor = t["frame"]
            store.add_label(self.pool_id, t["frame"], t["label"], t["team"], author="oracle")
            self.labels += 1
            self.reviews += 1
        else:  # the whole pool labelled: the rest of the budget is unused
            left = 0.0
        self.cursor = min(n_frames, self.cursor + int(left * EFFORT.scratch_speed * 25))
        self.seconds += seconds - max(left, 0.0)


def review_round(store: Store, ws: Workspace, strategy: str, version: str, analyst: Analyst, budget: int,
                 scratch_seconds: float | None, n_frames: int) -> None:
    """One round of ``budget`` reviews (scratch: ``scratch_seconds`` of watching and labelling)."""
    if strategy == "scratch":
        analyst.watch(store, scratch_seconds if scratch_seconds is not None else budget * 4.0, n_frames)
        return
    done = 0
    if strategy in ("queue", "queue-plain"):
        config = QueueConfig() if strategy == "queue" else QueueConfig(rare_boost=0.0, spacing_s=0.0)
        items = [it for it in review_queue(store, ws, version, games=[analyst.pool_id], config=config, limit=None)
                 if it.kind in ("uncertain", "missed")]
        for it in items:
            if done == budget:
                break
            if it.kind == "missed":
                analyst.missed(store, version, it, keep_dismissal=strategy == "queue")
            else:
                pending = [p for p in store.predictions(analyst.pool_id, version) if p["status"] == "pending"]
                p = next((q for q in pending if f"p{q['id']}" == it.event_id), None)
                if p is None:
                    continue  # decided meanwhile (a carried decision)
                analyst.decide(store, p, pending)
            done += 1
        return
    pending = [p for p in store.predictions(analyst.pool_id, version) if p["status"] == "pending"]
    if strategy == "random":
        chosen = analyst.rng.sample(pending, min(budget, len(pending)))
    else:  # confidence: closest to the coin toss
        chosen = sorted(pending, key=lambda p: (abs(p["confidence"] - QueueConfig().threshold), p["frame"]))[:budget]
    for p in chosen:
        analyst.decide(store, p, [q for q in store.predictions(analyst.pool_id, version) if q["status"] == "pending"])


def new_game_minutes(store: Store, ws: Workspace, version: str, new_truth: list[dict]) -> dict:
    """Analyst minutes per 10-minute game to label the new game (a), (b), (c), (d) with ``version``."""
    game = store.game(NEW_GAME)
    reinfer(store, ws, InferParams(version=version, games=[NEW_GAME], tta=False, carry_from=version), quiet)
    preds = store.predictions(game["id"], version)
    items = [it.as_dict() for it in review_queue(store, ws, version, games=[game["id"]], limit=None)
             if it.kind in ("uncertain", "missed")]
    n = game["frame_count"]
    slow = Effort(review_speed=EFFORT.scratch_speed)  # the assumption that matters most, undone
    return {"scratch": per_minutes(from_scratch(new_truth, n, EFFORT), n),
            "time_order": per_minutes(review_in_time_order(preds, new_truth, n, EFFORT), n),
            "queue": per_minutes(follow_queue(items, preds, new_truth, n, EFFORT), n),
            "time_order_1x": per_minutes(review_in_time_order(preds, new_truth, n, slow), n),
            "watch_through": per_minutes(watch_through(preds, new_truth, n, EFFORT), n),
            "watch_through_1x": per_minutes(watch_through(preds, new_truth, n, slow), n),
            "let_pass": sum(passed(preds, new_truth, EFFORT).values()),
            "predictions": len(preds), "missed_events": len(judge(preds, new_truth).missed)}


# --------------------------------------------------------------------------- one seed


def train_round(store: Store, ws: Workspace, plan: Plan, config: str, previous: str, infer: bool) -> tuple[str, float]:
    """The product's retrain, then (model strategies) the pool re-inferred and the new version
    activated with the decisions carried (what ``versions.activate`` does for a worse one too:
    the analyst goes on with the newest model). Returns (version, validation mAP@1)."""
    pool = [g["url_local"] for g in store.games() if g["split"] == "test" and g["url_local"] != NEW_GAME]
    done = retrain(store, ws, RetrainParams(config=config, infer_games=[], auto_activate=False), quiet)
    version = done["version"]
    if infer:
        reinfer(store, ws, InferParams(version=version, games=pool, tta=False, carry_from=previous, activate=True),
                quiet)
    else:
        hand_over(store, version, previous, [], activate=True)
    assert active_version(store) == version
    return version, store.model(version)["metrics"][VALID_MAP]


def round0(found: dict, base: Workspace, folder: Path, meta: Path, base_folder: Path, pool: Path,
           new_truth: list[dict], log, seed: int) -> None:
    """A seed's round-0 workspace: the labelled games, the pool, the held-out game twice, round
    0's model with its predictions on the pool and its new-game minutes (``meta``)."""
    shutil.rmtree(base.root, ignore_errors=True)
    base.ensure()
    (base.root / "cache").symlink_to(folder / "cache")
    t0 = time.perf_counter()
    with Store.open(base) as store:
        for labelled in found["base"]:  # what round 0 learnt from: a retrain learns from it again
            import_source(store, labelled, workspace=base, split="train")
        import_source(store, pool, workspace=base, split="test")
        import_source(store, found["heldout"], workspace=base, split="valid")
        import_source(store, found["new"], workspace=base, split="test")
        pool_name = json.loads((pool / LABEL_FILE).read_text())["UrlLocal"]
        # Round 0's model, as a model trained elsewhere is brought in: its folder, its metrics
        # (validated on this same held-out game).
        shutil.copytree(base_folder, base.models_dir / "round0")
        v0 = resolve_model(store, str(base.models_dir / "round0"))[0]
        store.set_model_metrics(v0, json.loads((base_folder / "metrics.json").read_text()))
        reinfer(store, base, InferParams(version=v0, games=[pool_name], tta=False), quiet)
        effort = new_game_minutes(store, base, v0, new_truth)
        info = {"version": v0, "map": store.model(v0)["metrics"][VALID_MAP], "pool": pool_name,
                "effort": effort, "seconds": time.perf_counter() - t0}
    meta.write_text(json.dumps(info))
    log(f"seed {seed} round 0: {v0} valid mAP@1 {info['map']:.4f} ({info['seconds']:.0f} s)")


def run_seed(plan: Plan, data: Path, found: dict, encoder: str | None, base_folder: Path, seed: int,
             strategies: list[str], results: dict, save, log, advance=lambda: None) -> None:
    folder = data / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cache").mkdir(exist_ok=True)
    pool = found["seeds"][seed]["pool"]
    truth, new_truth = truth_of(pool), truth_of(found["new"])
    # The retrain applies FINE_TUNE to this config: at most its schedule, so these shorten it.
    rounds_cfg = config_file(plan, data, f"rounds-{seed}", encoder, seed=seed, valid_every=1000,
                             epochs=plan.round_epochs, samples_per_epoch=plan.round_samples)
    base = Workspace.at(folder / "ws-round0")
    meta = folder / "round0.json"
    with open(folder / ".round0.lock", "w") as lock:  # two shares (--only) of one seed: one builds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not meta.is_file() or not base.db_path.is_file():
            round0(found, base, folder, meta, base_folder, pool, new_truth, log, seed)
    info = json.loads(meta.read_text())
    per_seed = results["runs"].setdefault(str(seed), {})
    for strategy in strategies:
        if strategy in per_seed:
            continue
        t0 = time.perf_counter()
        ws = _copy_workspace(base, folder / f"ws-{strategy}")
        rows = [{"round": 0, "reviews": 0, "analyst_s": 0.0, "labels": 0, "map": info["map"],
                 "version": info["version"], **({"effort": info["effort"]} if strategy == "queue" else {})}]
        queue_seconds = [r["analyst_s"] for r in per_seed.get("queue", [])]
        with Store.open(ws) as store:
            pool_id = store.game(info["pool"])["id"]
            analyst = Analyst(truth, pool_id, rng=random.Random(seed))
            version = info["version"]
            n_frames = store.game(pool_id)["frame_count"]
            for k in range(1, plan.rounds + 1):
                spent = (queue_seconds[k] - queue_seconds[k - 1]) if len(queue_seconds) > k else None
                review_round(store, ws, strategy, version, analyst, plan.budget, spent, n_frames)
                version, score = train_round(store, ws, plan, rounds_cfg, version, strategy != "scratch")
                row = {"round": k, "reviews": analyst.reviews, "analyst_s": round(analyst.seconds, 1),
                       "labels": analyst.labels, "map": score, "version": version}
                if strategy == "queue":
                    row["effort"] = new_game_minutes(store, ws, version, new_truth)
                rows.append(row)
                log(f"seed {seed} {strategy:11s} round {k}: {analyst.reviews:3d} reviews, "
                    f"{analyst.seconds / 60:5.1f} analyst min, {analyst.labels:3d} labels, valid mAP@1 {score:.4f} "
                    f"({time.perf_counter() - t0:.0f} s)")
            if strategy == "queue":
                results.setdefault("learning_curve", {})[str(seed)] = learning_curve(store)
        per_seed[strategy] = rows
        save()
        advance()


# --------------------------------------------------------------------------- the figures


def mean_sd(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else \
        (math.nan, math.nan)


def reviews_to_reach(rows: list[dict], target: float) -> float | None:
    """Reviews at which a curve first reaches ``target`` (linear between rounds), or None."""
    for a, b in zip(rows, rows[1:]):
        if b["map"] >= target:
            if a["map"] >= target:
                return float(a["reviews"])
            share = (target - a["map"]) / max(b["map"] - a["map"], 1e-12)
            return a["reviews"] + share * (b["reviews"] - a["reviews"])
    return float(rows[0]["reviews"]) if rows and rows[0]["map"] >= target else None


def summarise(results: dict, plan: Plan) -> dict:
    """Per strategy and round: mAP@1 mean and sd over seeds, reviews and analyst minutes; the
    queue's saving against random; the new game's analyst minutes."""
    runs = results["runs"]
    table: dict[str, list[dict]] = {}
    for strategy in STRATEGIES:  # every strategy run so far (a --resume may have added one)
        seeds = [runs[s][strategy] for s in runs if strategy in runs[s]]
        if not seeds:
            continue
        table[strategy] = []
        for k in range(plan.rounds + 1):
            maps = [rows[k]["map"] for rows in seeds if len(rows) > k]
            m, sd = mean_sd(maps)
            table[strategy].append({"round": k, "map_mean": m, "map_sd": sd, "n": len(maps),
                                    "reviews": statistics.fmean(rows[k]["reviews"] for rows in seeds if len(rows) > k),
                                    "analyst_min": statistics.fmean(rows[k]["analyst_s"] / 60 for rows in seeds
                                                                    if len(rows) > k)})
    out: dict = {"table": table}
    ratios = []
    for s in runs:
        if "queue" in runs[s] and "random" in runs[s]:
            rnd = runs[s]["random"]
            if rnd[-1]["map"] <= rnd[0]["map"]:
                out.setdefault("random_no_gain", []).append(s)  # nothing to reach: no ratio
                continue
            need = reviews_to_reach(runs[s]["queue"], rnd[-1]["map"])
            ratios.append(need / rnd[-1]["reviews"] if need is not None and rnd[-1]["reviews"] else math.inf)
    if ratios:
        finite = [r for r in ratios if math.isfinite(r)]
        m = statistics.fmean(ratios) if len(finite) == len(ratios) else math.inf
        se = statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) > 1 and m != math.inf else math.nan
        out["queue_vs_random"] = {"ratios": ratios, "mean": m, "se": se,
                                  "met": bool(m <= 0.6 and (1 - m) > 2 * se) if math.isfinite(se) else False}
    # Seeds share round 0 and each has its own pool game: the queue's final mAP@1 minus another
    # strategy's on the same seed, mean and standard error, is the fairer comparison.
    out["queue_minus"] = {}
    for other in STRATEGIES:
        gaps = [runs[s]["queue"][-1]["map"] - runs[s][other][-1]["map"] for s in runs
                if other != "queue" and "queue" in runs[s] and other in runs[s]]
        if len(gaps) > 1:
            out["queue_minus"][other] = {"gaps": gaps, "mean": statistics.fmean(gaps),
                                         "se": statistics.stdev(gaps) / math.sqrt(len(gaps))}
    efforts = [[r["effort"] for r in runs[s]["queue"]] for s in runs if "queue" in runs[s]]
    if efforts:
        rounds = min(len(e) for e in efforts)
        keys = [k for k in efforts[0][0] if all(k in e[r] for e in efforts for r in range(rounds))]
        out["new_game_minutes"] = [{k: statistics.fmean(e[r][k] for e in efforts) for k in keys} | {"round": r}
                                   for r in range(rounds)]
    return out


def print_summary(summary: dict, plan: Plan) -> None:
    table = summary["table"]
    print(f"\nvalidation mAP@1 per round, mean +- sd over {max((r[0]['n'] for r in table.values()), default=0)} "
          f"seed(s) ({plan.budget} reviews a round; scratch: the queue's analyst time)")
    print("strategy      " + "".join(f"  round {k:<12d}" for k in range(plan.rounds + 1)))
    for strategy, rows in table.items():
        print(f"{strategy:12s}  " + "".join(f"  {r['map_mean']:.3f} +- {r['map_sd']:.3f}  " for r in rows))
    print("\nreviews / analyst minutes spent by the end of each round")
    for strategy, rows in table.items():
        print(f"{strategy:12s}  " + "".join(f"  {r['reviews']:5.0f} / {r['analyst_min']:5.1f}     " for r in rows))
    qr = summary.get("queue_vs_random")
    if summary.get("random_no_gain"):
        print(f"\nseeds where random's last round did not beat round 0 (no ratio): {summary['random_no_gain']}")
    if qr:
        print("\nreviews the queue needs to reach random's final mAP@1, as a share of random's: "
              + ", ".join("never" if not math.isfinite(r) else f"{r:.2f}" for r in qr["ratios"])
              + f"; mean {qr['mean']:.2f} +- {qr['se']:.2f} (SE); goal <= 0.60 with the saving > 2 SE: "
              + ("MET" if qr["met"] else "NOT MET"))
    for other, gap in summary.get("queue_minus", {}).items():
        print(f"final mAP@1, queue minus {other} on the same seed: {gap['mean']:+.3f} +- {gap['se']:.3f} (SE; "
              f"{', '.join(f'{g:+.3f}' for g in gap['gaps'])})")
    ng = summary.get("new_game_minutes")
    if ng:
        print("\nanalyst minutes to label a new 10-minute game fully, with the queue's model of each round "
              f"(core.effort; review at {EFFORT.review_speed:g}x, scratch at {EFFORT.scratch_speed:g}x)")
        print("round  (a) scratch  (b) time order  (c) queue  (d) watch through   (b)/(a)  (d)/(a)  (b) at 1x  "
              "(d) at 1x  predictions  events missed")
        for r in ng:
            wt = r.get("watch_through", math.nan)
            print(f"{r['round']:5d}  {r['scratch']:11.1f}  {r['time_order']:14.1f}  {r['queue']:9.1f}  {wt:17.1f}   "
                  f"{r['time_order'] / r['scratch']:7.2f}  {wt / r['scratch']:7.2f}  "
                  f"{r.get('time_order_1x', math.nan):9.1f}  {r.get('watch_through_1x', math.nan):9.1f}  "
                  f"{r['predictions']:11.0f}  {r.get('missed_events', math.nan):13.0f}")


def plot(summary: dict, results: dict, plan: Plan, path: Path) -> None:
    """Learning curves (mean, sd shaded) against reviews and against analyst minutes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if summary.get("new_game_minutes") else 2, figsize=(15, 4.2))
    for strategy, rows in summary["table"].items():
        mean = [r["map_mean"] for r in rows]
        sd = [r["map_sd"] for r in rows]
        # Reviews are items of the model's; scratch labels events without one: on the time axis only.
        panels = [(axes[1], "analyst_min")] if strategy == "scratch" else [(axes[0], "reviews"),
                                                                            (axes[1], "analyst_min")]
        colour = f"C{STRATEGIES.index(strategy)}"
        for ax, key in panels:
            x = [r[key] for r in rows]
            ax.plot(x, mean, marker="o", label=strategy, color=colour)
            ax.fill_between(x, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                            color=colour, alpha=0.15)
    axes[0].set_xlabel("reviews (items decided)")
    axes[1].set_xlabel("analyst minutes (core.effort)")
    for ax in axes[:2]:
        ax.set_ylabel("validation mAP@1")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    n = max((r[0]["n"] for r in summary["table"].values()), default=0)
    axes[0].set_title(f"{n} seed(s), {plan.budget} reviews a round, mean +- sd")
    if summary.get("new_game_minutes"):
        ax = axes[2]
        ng = summary["new_game_minutes"]
        for key, name in (("scratch", "(a) from scratch"), ("time_order", "(b) model, time order"),
                          ("queue", "(c) model, the queue"), ("watch_through", "(d) model, watched through")):
            if key not in ng[0]:
                continue
            ax.plot([r["round"] for r in ng], [r[key] for r in ng], marker="o", label=name)
        ax.set_xlabel("round (the queue's model)")
        ax.set_ylabel("analyst minutes per new 10-minute game")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- the wait after Retrain


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the data loader's worker)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure_wait(demo: Path, log) -> dict:
    """From Retrain to the game under review's new predictions, on the demo's games: a copy of the
    demo workspace, a few decisions on its test game, the product's retrain (config and schedule
    as the app's button runs it), timed by its own progress lines."""
    from core.demo import build_demo

    source = Workspace.at(demo)
    if not source.db_path.is_file():
        source.ensure()
        with Store.open(source) as store:
            build_demo(store, source)
    copy = Workspace.at(demo.with_name(demo.name + "-wait"))
    shutil.rmtree(copy.root, ignore_errors=True)
    shutil.copytree(source.root, copy.root, ignore=shutil.ignore_patterns("runs", "cache"))
    with Store.open(copy) as store:
        # The demo model learnt from an hour of games, the demo workspace holds three minutes: a
        # retrain here may score below it on validation and would then wait for "Make active".
        # Its score cleared, the retrain runs its whole way, as an auto-activated one does (the
        # scores of both are in the result).
        demo_version = active_version(store)
        demo_map = store.model(demo_version)["metrics"].get(VALID_MAP)
        store.set_model_metrics(demo_version, {**store.model(demo_version)["metrics"], VALID_MAP: None})
    first = _timed_retrain(copy, log, decisions=range(0, 6))
    # The next retrain reads the ball's tracks the first one kept (cache/tracks) and starts from
    # the version the first made active.
    with Store.open(copy) as store:
        store.set_model_metrics(first["version"], {**store.model(first["version"])["metrics"], VALID_MAP: None})
    second = _timed_retrain(copy, log, decisions=range(6, 12))
    return {**first, "demo_map": demo_map, "again": second}


def _timed_retrain(copy: Workspace, log, decisions: range) -> dict:
    """A few review decisions on the test game, then the Retrain button's job, timed by its own
    progress lines."""
    marks: dict[str, float] = {}
    t0, cpu0 = time.perf_counter(), _cpu_seconds()

    def report(step) -> None:
        now = time.perf_counter() - t0
        text = step.text
        if text.startswith("inference with"):  # training is over
            marks.setdefault("inference", now)
        elif text.startswith("inference "):  # "inference <game>": that game's frames
            marks.setdefault(f"game:{text[len('inference '):]}", now)
        if "carrying review decisions over" in text:
            marks.setdefault("activation", now)

    with Store.open(copy) as store:
        test = next(g for g in store.games() if g["split"] == "test")
        pending = [p for p in store.predictions(test["id"], active_version(store)) if p["status"] == "pending"]
        for k, p in zip(decisions, pending):
            (store.accept if k % 2 else store.reject)(p["id"], reviewer="ana")
        result = retrain(store, copy, RetrainParams(focus_game=review_focus(store)), report)
        total, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        games = result.get("inference", {}).get("games", [])
        new_map = store.model(result["version"])["metrics"].get(VALID_MAP)
    # The focus game's predictions are stored when the next game's inference starts.
    focus_done = next((v for k, v in marks.items() if k.startswith("game:") and k != f"game:{test['url_local']}"),
                      marks.get("activation"))
    out = {"seconds": total, "cpu_s": cpu, "training_s": marks.get("inference", total),
           "activated_s": marks.get("activation"),
           "games": games, "focus": test["url_local"], "focus_first": bool(games) and games[0] == test["url_local"],
           "activated": result["activated"], "summary": result["summary"], "focus_done_s": focus_done,
           "version": result["version"], "map": new_map}
    log(f"Retrain -> new predictions on {test['url_local']}: {total:.0f} s, {cpu:.0f} s of CPU (training "
        f"{out['training_s']:.0f} s, the game under review inferred by {focus_done or 0:.0f} s; inference order "
        f"{games}); {result['summary']}")
    return out


# --------------------------------------------------------------------------- review cuts


#: Watching through where each marker let pass costs a decision's thought: the cautious reading.
CAREFUL = Effort(**{**EFFORT.as_dict(), "pass_s": EFFORT.think_s})
#: The two ways of reviewing a new game the cuts are measured for (``core.effort``).
WORKFLOWS = {"time_order": review_in_time_order, "watch_through": watch_through}


def review_cuts(data: Path, plan: Plan, log) -> dict:
    """Would a review cut, chosen where reviewing costs least on another game, make reviewing the
    new game cheaper, in time order (b) or watched through (d)? From a finished run's workspaces
    (no training): for each seed, round 0's model and the queue's last, the cut is chosen on the
    seed's pool game (its true events known to the bench, not to the model) and applied to the
    new game; the cut chosen on the new game itself bounds what any cut can do. A model that
    predicts every true event at its frame and nothing else bounds what any model can do."""
    new_truth = truth_of(data / "games" / f"new-game-{plan.heldout_minutes:g}min")
    rows = []
    for seed in range(plan.seeds):
        ws = Workspace.at(data / f"seed-{seed}" / "ws-queue")
        pool_folder = data / "games" / f"pool-{seed}-{plan.pool_minutes:g}min"
        if not ws.db_path.is_file() or not pool_folder.is_dir():
            log(f"seed {seed}: no finished run in {data}; skipped")
            continue
        pool_truth = truth_of(next(pool_folder.rglob("truth.json")).parent)
        with Store.open(ws) as store:
            new = store.game(NEW_GAME)
            n = new["frame_count"]
            pool = next(g for g in store.games() if g["split"] == "test" and g["id"] != new["id"])
            perfect = [{"id": k, "frame": t["frame"], "label": t["label"], "team": t["team"], "confidence": 1.0}
                       for k, t in enumerate(new_truth)]
            for version in ("round0", store.models()[-1]["version"]):
                on_pool, on_new = store.predictions(pool["id"], version), store.predictions(new["id"], version)
                row = {"seed": seed, "version": version, "predictions": len(on_new),
                       "scratch": per_minutes(from_scratch(new_truth, n, EFFORT), n)}
                for name, review in WORKFLOWS.items():
                    # Both games have true events, so both cuts exist (best_cut: None only without).
                    cut = best_cut([(on_pool, pool_truth, pool["frame_count"])], EFFORT, review=review)
                    bound = best_cut([(on_new, new_truth, n)], EFFORT, review=review)

                    def minutes(at: float) -> float:
                        kept = [p for p in on_new if p["confidence"] >= at]
                        return per_minutes(review(kept, new_truth, n, EFFORT), n)
                    row[name] = {"stored": minutes(0.0), "cut": cut, "at_cut": minutes(cut),
                                 "kept": sum(p["confidence"] >= cut for p in on_new), "bound_cut": bound,
                                 "at_bound": minutes(bound), "none": minutes(2.0),
                                 "perfect": per_minutes(review(perfect, new_truth, n, EFFORT), n),
                                 # each marker let pass costing a decision's thought (Effort.pass_s)
                                 "perfect_careful": per_minutes(review(perfect, new_truth, n, CAREFUL), n),
                                 "parts_at_cut": vars(review([p for p in on_new if p["confidence"] >= cut],
                                                             new_truth, n, EFFORT))}
                    r = row[name]
                    log(f"seed {seed} {version:>6} {name}: scratch {row['scratch']:.1f} min; all predictions "
                        f"{r['stored']:.1f} ({len(on_new)}); at the pool's cut {cut:.2f} {r['at_cut']:.1f} "
                        f"({r['kept']}); at the best cut for this game ({bound:.2f}) {r['at_bound']:.1f}; "
                        f"no prediction {r['none']:.1f}; a perfect model {r['perfect']:.1f}")
                row["let_pass"] = passed(on_new, new_truth, EFFORT)
                verdicts = judge(on_new, new_truth)
                row["verdicts"] = {"accept": sum(v.action == "accept" for v in verdicts.verdicts.values()),
                                   "of_them_team_wrong": sum(v.action == "accept" and v.team_flip
                                                             for v in verdicts.verdicts.values()),
                                   "relabel": sum(v.action == "relabel" for v in verdicts.verdicts.values()),
                                   "reject": sum(v.action == "reject" for v in verdicts.verdicts.values()),
                                   "missed": len(verdicts.missed)}
                rows.append(row)
    summary = {}
    for version in ("round0", "last"):
        chosen = [r for r in rows if (r["version"] == "round0") == (version == "round0")]
        if not chosen:
            continue
        scratch = statistics.mean(r["scratch"] for r in chosen)
        summary[version] = {"scratch": scratch}
        for name in WORKFLOWS:
            mean = {k: statistics.mean(r[name][k] for r in chosen)
                    for k in ("stored", "at_cut", "at_bound", "none", "perfect", "perfect_careful")}
            summary[version][name] = mean
            log(f"{version}, {name}, mean of {len(chosen)} seeds: scratch {scratch:.1f} min; all predictions "
                f"{mean['stored']:.1f} ({mean['stored'] / scratch:.2f}x); at the pool's cut "
                f"{mean['at_cut']:.1f} ({mean['at_cut'] / scratch:.2f}x); at the best cut "
                f"{mean['at_bound']:.1f} ({mean['at_bound'] / scratch:.2f}x); a perfect model "
                f"{mean['perfect']:.1f} ({mean['perfect'] / scratch:.2f}x; with a thought per marker let pass "
                f"{mean['perfect_careful']:.1f}, {mean['perfect_careful'] / scratch:.2f}x)")
    return {"effort": EFFORT.as_dict(), "rows": rows, "summary": summary}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/tmp/ballspot-bench-active", help="rendered games and workspaces")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="active.json and active.png go here")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--budget", type=int, help="reviews a round")
    parser.add_argument("--strategies", help=f"comma-separated, of {', '.join(STRATEGIES)}")
    parser.add_argument("--config", help="training config (default cpu_small; --quick: tiny)")
    parser.add_argument("--round-epochs", type=int, help="each round's fine-tune: epochs (default 2)")
    parser.add_argument("--round-samples", type=int, help="each round's fine-tune: clips per epoch (default 300)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads, the same on every machine: float sums split over another number "
                             "of threads add up in another order, and a seeded run repeats only with the same")
    parser.add_argument("--only", help="a share of the run, for two processes on two cores: seeds, each with "
                                       "its strategies if not all, e.g. 0,1,4:queue+scratch (a seed's scratch "
                                       "needs its queue in the same share)")
    parser.add_argument("--merge", help="comma-separated JSON files of shares (--only) to merge into --out")
    parser.add_argument("--quick", action="store_true", help="one seed, two short rounds, tiny games: CI-sized")
    parser.add_argument("--resume", action="store_true", help="keep the (seed, strategy) runs already in the JSON")
    parser.add_argument("--wait", action="store_true", help="measure Retrain -> new predictions on the demo's games")
    parser.add_argument("--cuts", action="store_true",
                        help="from a finished run in --data: review minutes on the new game at a confidence cut "
                             "chosen on the pool game (no training)")
    parser.add_argument("--demo", default="/tmp/ballspot-bench-demo",
                        help="--wait: the demo workspace (built if absent)")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    if args.wait:
        out = measure_wait(Path(args.demo), log)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "retrain_wait.json").write_text(json.dumps(out, indent=2))
        return 0
    plan = quick_plan() if args.quick else Plan()
    for name in ("seeds", "rounds", "budget", "config", "round_epochs", "round_samples"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    if args.cuts:
        out = review_cuts(Path(args.data), plan, log)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "review_cuts.json").write_text(json.dumps(out, indent=2))
        return 0
    import torch
    torch.set_num_threads(args.threads)
    if args.strategies:
        unknown = set(args.strategies.split(",")) - set(STRATEGIES)
        if unknown:
            parser.error(f"unknown strategies {', '.join(sorted(unknown))}")
        plan.strategies = tuple(s for s in STRATEGIES if s in args.strategies.split(","))
    data, out = Path(args.data), Path(args.out)
    name = "active-quick" if plan.quick else "active"
    result_path = out / f"{name}.json"
    results = {"plan": {k: v for k, v in vars(plan).items()}, "effort": EFFORT.as_dict(), "runs": {},
               "threads": args.threads}
    if args.resume and result_path.is_file():
        before = json.loads(result_path.read_text())
        results["runs"] = before.get("runs", {})
        results["learning_curve"] = before.get("learning_curve", {})
        if before.get("shares"):
            results["shares"] = before["shares"]
    if args.merge:
        results["shares"] = []
        for part in args.merge.split(","):
            share = json.loads(Path(part).read_text())
            for seed, runs in share.get("runs", {}).items():
                results["runs"].setdefault(seed, {}).update(runs)
            results.setdefault("learning_curve", {}).update(share.get("learning_curve", {}))
            results["shares"].append({"file": part, "only": share.get("only"), "wall_s": share.get("wall_s"),
                                      "threads": share.get("threads")})
    selection = {s: plan.strategies for s in range(plan.seeds)}
    if args.only:
        selection = {}
        for item in args.only.split(","):
            seed, _, names = item.partition(":")
            chosen = tuple(names.split("+")) if names else plan.strategies
            if set(chosen) - set(STRATEGIES) or not 0 <= int(seed) < plan.seeds:
                parser.error(f"--only {item}: a seed below {plan.seeds}, strategies of {', '.join(STRATEGIES)}")
            selection[int(seed)] = tuple(s for s in STRATEGIES if s in chosen)
        results["only"] = args.only
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def save() -> None:
        results["summary"] = summarise(results, plan)
        results["wall_s"] = time.perf_counter() - t0
        result_path.write_text(json.dumps(results, indent=1, default=float))

    from tqdm import tqdm

    data.mkdir(parents=True, exist_ok=True)
    with open(data / ".prepare.lock", "w") as lock:  # shares (--only) started together: one prepares
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = games(plan, data)
        results["videos"] = video_digests(found)
        log(f"games ready ({time.perf_counter() - t0:.0f} s)")
        encoder = pretrained(plan, data, found, log)
        base_folder = base_model(plan, data, found, encoder, log)
    with tqdm(total=sum(map(len, selection.values())), desc="seeds x strategies", file=sys.stderr) as bar:
        for seed, chosen in selection.items():
            order = [s for s in chosen if s == "queue"] + [s for s in chosen if s != "queue"]
            run_seed(plan, data, found, encoder, base_folder, seed, order, results, save, log, lambda: bar.update(1))
    save()
    summary = results["summary"]
    print_summary(summary, plan)
    plot(summary, results, plan, out / f"{name}.png")
    log(f"\nwrote {result_path} and {out / f'{name}.png'} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
