#!/usr/bin/env python3
"""Ballspot Studio: the one entry point.

    python launch.py                      # the review app in the browser (builds the demo on an empty workspace)
    python launch.py demo                 # build the demo workspace (synthetic games, the demo model)
    python launch.py import SRC           # SoccerNet labels (tree, game folder or .zip) into the workspace
    python launch.py export OUT           # labels (or --predictions VERSION) as SoccerNet JSON
    python launch.py download --split ... # SoccerNet's BAS-2024 (--release 2025: the team task's), then import
    python launch.py games                # the workspace at a glance
    python launch.py synth OUT            # synthetic matches with exact labels (offline demo, tests)
    python launch.py train --config C     # train a model on the workspace's labels
    python launch.py weights ENCODER --out FILE  # an encoder's ImageNet weights, kept for offline machines
    python launch.py infer --model M      # a model's predictions on the workspace's games
    python launch.py evaluate --predictions P --labels L   # SoccerNet's mAP (and Team mAP)
    python launch.py queue                # what to review next, with the reasons
    python launch.py retrain              # fine-tune the active model on everything reviewed
    python launch.py jobs                 # background jobs: list, cancel, start the next

Every subcommand that works on a workspace takes ``--workspace DIR`` (default ``./data``). Training on several GPUs runs
the same code under torchrun, one command per node:
``torchrun --nproc_per_node 4 -m core.training --config core/configs/ball_action.yaml``.
"""
from __future__ import annotations

import argparse
import sys

from core.errors import BallspotError
from core.progress import bar
from core.workspace import DEFAULT_WORKSPACE, Workspace


def _store(args: argparse.Namespace):
    from core.store import Store

    return Store.open(Workspace.at(args.workspace))


def cmd_import(args: argparse.Namespace) -> int:
    from core.ingest import import_source

    ws = Workspace.at(args.workspace)
    with _store(args) as store, bar("import") as progress:
        report = import_source(store, args.src, workspace=ws, split=args.split, replace=args.replace,
                               author=args.author, progress=progress)
    print(report.summary())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from core.export import export, unreviewed_note

    with _store(args) as store:
        written = export(store, args.out, games=args.game, predictions=args.predictions)
        note = unreviewed_note(store, args.game) if args.predictions is None else ""
    print(f"Wrote {len(written)} file(s) to {args.out}")
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from core.download import download

    ws = Workspace.at(args.workspace)
    with _store(args) as store, bar("download") as progress:
        reports = download(store, ws, args.split, release=args.release, source=args.source, replace=args.replace,
                           progress=progress)
    for report in reports:
        print(report.summary())
    return 0


def cmd_games(args: argparse.Namespace) -> int:
    import pandas as pd

    from core.overview import games_table

    with _store(args) as store:
        table = games_table(store)
    if args.format == "csv":
        print(table.to_csv(index=False), end="")
    elif args.format == "json":
        print(table.to_json(orient="records", indent=2))
    elif table.empty:
        print(f"No games in {Workspace.at(args.workspace).root}. Import some with: python launch.py import SRC")
    else:
        with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 60):
            print(table.to_string(index=False))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from core.synth import RenderOptions, SynthConfig, generate

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        extra = {"ball_scale": args.ball_scale} if args.ball_scale is not None else {}
        render = RenderOptions(width, height, motion_blur=args.blur, noise=args.noise, **extra)
        config = SynthConfig(minutes=args.minutes, seed=args.seed, render=render, crf=args.crf)
    except ValueError as exc:
        raise BallspotError(f"synth: {exc}") from None
    with bar("synth", "frame") as progress:
        folders = generate(args.out, config, games=args.games, progress=progress)
    for folder in folders:
        print(folder)
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from core.export import export
    from core.infer import InferConfig
    from core.runner import infer_games, resolve_model

    ws = Workspace.at(args.workspace)
    with _store(args) as store:
        version, folder = resolve_model(store, args.model)
        games = [args.game] if args.game else [g["url_local"] for g in store.games()
                                               if args.split is None or g["split"] == args.split]
        config = InferConfig(batch=args.batch, tta=not args.no_tta, device=args.device)
        with bar(f"infer {version}", "frame") as progress:
            done = infer_games(store, ws, version, folder, games, config, progress=progress,
                               skip_missing=args.game is None, gpus=args.gpus)
        skipped = sorted(set(games) - {g for g, _ in done})
        if skipped:
            print(f"Skipped {len(skipped)} game(s) without a video: {', '.join(skipped)}", file=sys.stderr)
        out = args.out or ws.run_dir("predictions", version)
        export(store, out, games=[g for g, _ in done], predictions=version)
    for game, n in done:
        print(f"{game}: {n} events")
    print(f"Stored as model version {version}; results_spotting.json files in {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from core.training.__main__ import run

    return run(args)


def cmd_weights(args: argparse.Namespace) -> int:
    """Save an encoder's ImageNet weights (from the hub or its cache) for ``model.pretrained: FILE``."""
    from core.weights import hub_weights, save_imagenet_weights

    print(f"ImageNet weights of {args.encoder}: {hub_weights(args.encoder).repo_id} (Hugging Face hub, or its cache)",
          file=sys.stderr)
    out = save_imagenet_weights(args.encoder, args.out)
    print(f"Wrote {out}. On a machine without the hub, set model.pretrained: {out} in the training config")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from core.labels import CLASSES
    from core.metrics import average_map, load_folders, team_map

    games = load_folders(args.labels, args.predictions)
    if not games:
        raise BallspotError(f"{args.labels}: no Labels-ball.json found")
    results = [average_map(games, args.metric)]
    if args.team:
        results.append(team_map(games, metric=args.metric))
    if args.json:
        print(json.dumps([{"metric": r.metric, "mAP": r.mAP, "per_class": r.per_class, "support": r.support,
                           **({"teams": list(r.teams)} if r.teams else {})} for r in results], indent=2))
        return 0
    table = pd.DataFrame({"events": [results[0].support[c] for c in CLASSES],
                          **{r.metric: [round(100 * r.per_class[c], 2) for c in CLASSES] for r in results}},
                         index=list(CLASSES))
    print(table.to_string())
    for r in results:
        teams = f", teams {'/'.join(r.teams)}" if r.teams else ""
        print(f"{r.metric} mAP: {100 * r.mAP:.2f}  ({len(games)} games{teams})")
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    """What to review next, most useful first, with the reasons."""
    import json

    from core.active import review_queue
    from core.versions import active_version

    ws = Workspace.at(args.workspace)
    with _store(args) as store:
        version = args.model or active_version(store)
        games = [store.game(g)["id"] for g in args.game] if args.game else None
        items = review_queue(store, ws, version, games=games, limit=args.limit)
    if args.json:
        print(json.dumps([it.as_dict() for it in items], indent=2))
        return 0
    print(f"Review queue of model {version or '(none)'}: {len(items)} item(s)")
    for it in items:
        conf = "" if it.confidence is None else f" {it.confidence:.2f}"
        print(f"{it.priority:4.2f}  {it.kind:11s} {it.game}  {it.as_dict()['clock']}  {it.label} "
              f"{it.team or ''}{conf}  - {'; '.join(it.reasons)}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    """Fine-tune the active model on everything reviewed, in the foreground (the app runs the
    same as a background job)."""
    from tqdm import tqdm

    from core.jobs import RetrainParams, retrain

    ws = Workspace.at(args.workspace)
    params = RetrainParams(config=args.config, epochs=args.epochs, gpus=args.gpus, games=args.game,
                           auto_activate=not args.no_activate, author=args.author)
    with _store(args) as store, tqdm(total=1000, desc="retrain", file=sys.stderr) as bar:
        def report(fraction: float, message: str) -> None:
            bar.update(round(1000 * fraction) - bar.n)
            bar.set_postfix_str(message[:80], refresh=True)

        result = retrain(store, ws, params, report)
    print(result["summary"])
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from core.jobs import cancel, refresh

    ws = Workspace.at(args.workspace)
    with _store(args) as store:
        if args.cancel:
            cancel(store, args.cancel)
        jobs = refresh(store, ws, start=args.start)
    for j in jobs:
        print(f"job {j['id']:3d}  {j['kind']:8s} {j['status']:9s} {100 * j['progress']:5.1f}%  "
              f"{j['error'] or j['message']}")
    return 0


def cmd_job_run(args: argparse.Namespace) -> int:
    from core.jobs import run_and_hand_over

    job = run_and_hand_over(Workspace.at(args.workspace), args.job)
    return 0 if job["status"] in ("done", "cancelled") else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the demo workspace (synthetic games, the demo model, its predictions)."""
    from core.demo import build_demo

    ws = Workspace.at(args.workspace).ensure()
    with _store(args) as store, bar("demo", "%") as progress:
        result = build_demo(store, ws, progress=progress)
    print(f"Demo ready in {ws.root}: {len(result['games'])} games, {result['predictions']} predictions of model "
          f"{result['model']}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from core.access import check_host, parse_auth

    check_host(args.host, args.auth)
    for auth in args.auth:
        parse_auth(auth)  # a bad --auth fails at once: before the UI's libraries load or the demo is built
    from app.main import launch_app
    from core.demo import is_empty

    ws = Workspace.at(args.workspace).ensure()
    with _store(args) as store:
        empty = is_empty(store)
    if empty and not args.no_demo:
        print(f"{ws.root} is empty: building the demo workspace first (about 2 minutes; --no-demo skips it)")
        cmd_demo(args)
    launch_app(ws, host=args.host, port=args.port, auth=args.auth, extra_hosts=args.allowed_host)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from core.jobs import DEFAULT_RETRAIN_CONFIG, ROOT
    from core.splits import SPLITS
    from core.cli import add_train_arguments

    help_ws = f"workspace folder (default: {DEFAULT_WORKSPACE})"
    # SUPPRESS in the subcommands so `launch.py --workspace W import ...` keeps W.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", default=argparse.SUPPRESS, metavar="DIR", help=help_ws)

    parser = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=None, metavar="DIR", help=help_ws)
    parser.add_argument("--host", default="127.0.0.1", help="address the app listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                        help="require a login; repeat for each user (passwords of at least 8 characters). "
                             "Edits are recorded under the login")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="another name the app is reached by (repeatable; requests naming any other "
                             "Host are refused: DNS rebinding)")
    parser.add_argument("--no-demo", action="store_true", help="start on an empty workspace without building the demo")
    parser.set_defaults(func=cmd_app)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("import", parents=[common], help="import SoccerNet labels (and videos in place)")
    p.add_argument("src", help="a SoccerNet tree, one game folder, or a .zip of either")
    p.add_argument("--split", default=None, help="split for games SoccerNet's lists do not know")
    p.add_argument("--replace", action="store_true", help="replace games already imported (history keeps the old)")
    p.add_argument("--author", default=None, help="who imported (recorded in the history)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", parents=[common], help="write labels or predictions as SoccerNet JSON")
    p.add_argument("out", help="output folder, or a file ending in .zip")
    p.add_argument("--game", action="append", metavar="URL_LOCAL", help="only this game (repeatable)")
    p.add_argument("--predictions", metavar="VERSION", help="a model version's predictions (results_spotting.json)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("download", parents=[common],
                       help="download SoccerNet BAS-2024 (or the 2025 team task's release) and import it")
    p.add_argument("--split", nargs="+", required=True, choices=SPLITS)
    p.add_argument("--release", choices=("2024", "2025"), default="2024",
                   help="2024: BAS-2024 (home/away) by SoccerNet's downloader; 2025: the team task (left/right), "
                        "the Hugging Face dataset SoccerNet/SN-BAS-2025 (accept its terms; hf auth login or HF_TOKEN)")
    p.add_argument("--from", dest="source", metavar="FOLDER",
                   help="import a local copy of the release instead (<split>.zip or <split>/ each): no network")
    p.add_argument("--replace", action="store_true")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("synth", help="render synthetic matches with exact labels")
    p.add_argument("out", help="output folder (SoccerNet layout)")
    p.add_argument("--games", type=int, default=1)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="640x360", metavar="WxH")
    p.add_argument("--blur", type=float, default=0.0, help="motion blur, 0..1")
    p.add_argument("--noise", type=float, default=0.0, help="sensor noise, grey levels")
    p.add_argument("--crf", type=int, default=23, help="compression, 18 (fine) .. 30 (rough)")
    p.add_argument("--ball-scale", type=float, default=None,
                   help="the ball drawn this many times its real size (default 2; the demo games and "
                        "the demo model's training games: 3)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("infer", parents=[common], help="run a model on games; store and export its predictions")
    p.add_argument("--model", required=True, metavar="PATH_OR_VERSION", help="a model folder or a registered version")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--game", metavar="URL_LOCAL")
    which.add_argument("--split", choices=SPLITS)
    p.add_argument("--no-tta", action="store_true", help="skip the horizontal-flip pass (twice as fast)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)")
    p.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="share the games out over N processes, one per GPU (cuda:0..N-1; CPU processes without CUDA)")
    p.add_argument("--out", default=None, help="folder for results_spotting.json (default: workspace runs/)")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("train", parents=[common], help="train a model on the workspace's labels")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("weights", help="save an encoder's ImageNet weights for offline machines (model.pretrained)")
    p.add_argument("encoder", help="a timm encoder name, e.g. tf_efficientnetv2_b0 (a config's model.encoder)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write them (.safetensors)")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("evaluate", help="score predictions against labels with SoccerNet's metric")
    p.add_argument("--predictions", required=True, help="folder of <game>/results_spotting.json")
    p.add_argument("--labels", required=True, help="folder of <game>/Labels-ball.json")
    p.add_argument("--metric", default="at1", choices=("at1", "at2", "at3", "at4", "at5", "tight", "loose"))
    p.add_argument("--team", action="store_true",
                   help="also Team mAP (class and team must match; home/away or left/right, as the labels say)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("queue", parents=[common], help="what to review next (uncertain, missed, inconsistent)")
    p.add_argument("--model", metavar="VERSION", help="model version (default: the active one)")
    p.add_argument("--game", action="append", metavar="URL_LOCAL", help="only this game (repeatable)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("retrain", parents=[common], help="fine-tune the active model on all reviewed labels")
    p.add_argument("--config", default=str(DEFAULT_RETRAIN_CONFIG),
                   help=f"training config (default: {DEFAULT_RETRAIN_CONFIG.relative_to(ROOT)})")
    p.add_argument("--epochs", type=int)
    p.add_argument("--gpus", type=int, default=1, help="more than 1: torchrun on this machine's GPUs")
    p.add_argument("--game", action="append", metavar="URL_LOCAL", help="train on these games only (repeatable)")
    p.add_argument("--no-activate", action="store_true", help="do not make the new version active")
    p.add_argument("--author", default=None)
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("jobs", parents=[common], help="background jobs: list, cancel, start the next queued")
    p.add_argument("--cancel", type=int, metavar="ID")
    p.add_argument("--start", action="store_true", help="start the next queued job if none runs")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("job-run", parents=[common], help="run one queued job in this process (the app's jobs do)")
    p.add_argument("job", type=int)
    p.set_defaults(func=cmd_job_run)
    # Internal: left out of --help (argparse's SUPPRESS would print "==SUPPRESS==" there).
    sub._choices_actions = [a for a in sub._choices_actions if a.dest != "job-run"]

    p = sub.add_parser("demo", parents=[common], help="build the demo workspace (synthetic games, demo model)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("games", parents=[common], help="list the workspace's games")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_games)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BallspotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
