#!/usr/bin/env python3
"""Active learning, measured: reviewing what the queue picks versus random picks.

Synthetic games: a few labelled minutes to start from (train), a pool game whose labels are
hidden and play the reviewer (an oracle: a prediction is accepted when a true event of its
class lies within 12 frames, else rejected; a missed-event candidate with a true event of its
class near becomes a label there), and a held-out validation game. Round 0 trains a first
model on the labelled minutes and predicts the pool. Then, for each arm (queue, random), each
round reviews N items of the pool, retrains from that arm's last version on everything
reviewed, and re-infers the pool. Prints validation mAP@1 per round for both arms.

    python bench/active.py [--rounds 3] [--per-round 40] [--config core/configs/cpu_small.yaml] [--epochs 5]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

from core.active import review_queue
from core.ingest import import_source
from core.jobs import InferParams, RetrainParams, reinfer, retrain
from core.progress import quiet
from core.labels import LABEL_FILE, ms_to_frame
from core.store import Store
from core.synth import RenderOptions, SynthConfig, generate_game
from core.versions import nearest, set_active
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


NEAR = 12


def render(data: Path) -> dict[str, Path]:
    """Seed minutes (train), pool (its labels hidden from the store), validation."""
    plans = {"seed": (2, 0), "pool": (4, 1), "valid": (3, 2)}
    out = {}
    for name, (minutes, index) in plans.items():
        config = SynthConfig(minutes=minutes, seed=61, render=RenderOptions(320, 180, ball_scale=3), exact=False)
        folder = data / name
        if not any(folder.rglob("*.mp4")):
            generate_game(folder, config, index=index)
        out[name] = next(folder.rglob(LABEL_FILE)).parent
    return out


def oracle_truth(folder: Path) -> list[dict]:
    doc = json.loads((folder / "truth.json").read_text())
    return [{"id": i, "frame": ms_to_frame(int(a["position"])), "label": a["label"], "team": a["team"]}
            for i, a in enumerate(doc["annotations"])]


def review(store: Store, ws: Workspace, arm: str, version: str, pool_id: int, truth: list, n: int,
           rng: random.Random) -> int:
    """Review ``n`` items of the pool as the oracle would; returns the labels gained."""
    if arm == "queue":
        items = [it for it in review_queue(store, ws, version, games=[pool_id], limit=None)
                 if it.kind in ("uncertain", "missed")][:n]
    else:
        pending = [p for p in store.predictions(pool_id, version) if p["status"] == "pending"]
        items = rng.sample(pending, min(n, len(pending)))
    gained = 0
    for it in items:
        frame, label = (it.frame, it.label) if arm == "queue" else (it["frame"], it["label"])
        hit = nearest(truth, frame, label, NEAR)
        kind = it.kind if arm == "queue" else "uncertain"
        if kind == "uncertain":
            pid = int(it.event_id[1:]) if arm == "queue" else it["id"]
            if hit:
                store.accept(pid, reviewer="oracle", frame=hit["frame"], team=hit["team"])
                gained += 1
            else:
                store.reject(pid, reviewer="oracle")
        elif hit and not any(r["frame"] == hit["frame"] and r["label"] == label for r in store.labels(pool_id)):
            store.add_label(pool_id, hit["frame"], label, hit["team"], author="oracle")
            gained += 1
    return gained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/tmp/ballspot-bench-active")
    parser.add_argument("--config", default=str(ROOT / "core" / "configs" / "cpu_small.yaml"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=40)
    args = parser.parse_args()
    data = Path(args.data)
    games = render(data)
    pool_folder = games["pool"]
    if not (pool_folder / "truth.json").is_file():
        shutil.copy(pool_folder / LABEL_FILE, pool_folder / "truth.json")
        doc = json.loads((pool_folder / LABEL_FILE).read_text())
        (pool_folder / LABEL_FILE).write_text(json.dumps({**doc, "annotations": []}))
    truth = oracle_truth(pool_folder)

    base = data / "ws-round0"
    shutil.rmtree(base, ignore_errors=True)
    ws = Workspace.at(base).ensure()
    t0 = time.perf_counter()
    with Store.open(ws) as store:
        import_source(store, games["seed"], workspace=ws, split="train")
        import_source(store, pool_folder, workspace=ws, split="train")
        import_source(store, games["valid"], workspace=ws, split="valid")
        pool = store.game(json.loads((pool_folder / LABEL_FILE).read_text())["UrlLocal"])
        first = retrain(store, ws, RetrainParams(config=args.config, epochs=args.epochs, infer_games=[]), quiet)
        reinfer(store, ws, InferParams(version=first["version"], games=[pool["url_local"]], tta=True), quiet)
        start_map = first["comparison"]["map_new"]
    print(f"round 0: {first['version']} on the seed minutes: valid mAP@1 {start_map:.4f} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    results = {"queue": [start_map], "random": [start_map]}
    for arm in ("queue", "random"):
        folder = data / f"ws-{arm}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(base, folder)
        ws = Workspace.at(folder)
        rng = random.Random(0)
        with Store.open(ws) as store:
            store.conn.execute("UPDATE models SET path = replace(path, ?, ?)", (str(base), str(folder)))
            store.conn.commit()
            version = first["version"]
            for k in range(1, args.rounds + 1):
                gained = review(store, ws, arm, version, pool["id"], truth, args.per_round, rng)
                done = retrain(store, ws, RetrainParams(config=args.config, epochs=args.epochs, auto_activate=True,
                                                        infer_games=[pool["url_local"]]), quiet)
                if not done["activated"]:  # keep reviewing the newest version's predictions
                    set_active(store, done["version"])
                    reinfer(store, ws, InferParams(version=done["version"], games=[pool["url_local"]],
                                                   carry_from=version), quiet)
                version = done["version"]
                results[arm].append(done["comparison"]["map_new"])
                print(f"{arm:6s} round {k}: +{gained} labels from {args.per_round} reviews, {version} valid mAP@1 "
                      f"{done['comparison']['map_new']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\nvalid mAP@1 per round (round 0 = the seed minutes):")
    print("round  " + "  ".join(f"{k:7d}" for k in range(args.rounds + 1)))
    for arm, maps in results.items():
        print(f"{arm:6s} " + "  ".join(f"{m:7.4f}" for m in maps))
    print(f"queue - random after round {args.rounds}: {results['queue'][-1] - results['random'][-1]:+.4f}")


if __name__ == "__main__":
    main()
