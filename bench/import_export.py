#!/usr/bin/env python3
"""Import and export speed on the five real BAS-2024 label files, side by side in one run.

Prints seconds, the ratio to the 10 s import target (below 1.0 passes), and the ratio to a
bare ``json.load`` of the same files (the floor any importer pays).

    python bench/import_export.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from core.export import export
from core.ingest import import_source
from core.labels import LABEL_FILE
from core.store import Store
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


DATA = ROOT.parent / "shared" / "data" / "soccernet-ball-2024"
IMPORT_TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = sorted(args.data.rglob(LABEL_FILE))
    best = {"json.load": 1e9, "import": 1e9, "export": 1e9}
    labels = 0
    for _ in range(args.repeat):
        t = time.perf_counter()
        labels = sum(len(json.loads(f.read_text())["annotations"]) for f in files)
        best["json.load"] = min(best["json.load"], time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace.at(Path(tmp) / "ws").ensure()
            with Store.open(ws) as store:
                t = time.perf_counter()
                import_source(store, args.data, workspace=ws)
                best["import"] = min(best["import"], time.perf_counter() - t)
                t = time.perf_counter()
                export(store, Path(tmp) / "out")
                best["export"] = min(best["export"], time.perf_counter() - t)
    print(f"{len(files)} games, {labels} labels, best of {args.repeat}")
    for name, seconds in best.items():
        print(f"  {name:10s} {seconds * 1000:8.1f} ms  ({labels / seconds:,.0f} labels/s)")
    print(f"import / 10 s target:  {best['import'] / IMPORT_TARGET_S:.3f}  (< 1 passes)")
    print(f"import / json.load:    {best['import'] / best['json.load']:.1f}x")
    print(f"export / json.load:    {best['export'] / best['json.load']:.1f}x")


if __name__ == "__main__":
    main()
