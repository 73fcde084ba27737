"""launch.py's subcommands, as a user runs them."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REAL_DATA, REAL_LABELS, ROOT, annotation, make_game
from core.store import Store
from core.workspace import Workspace

import launch


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_import_games_export_round_trip(tmp_path):
    ws = tmp_path / "W"
    done = run("import", str(REAL_DATA), "--workspace", str(ws))
    assert done.returncode == 0, done.stderr
    assert "Imported 5 game(s)" in done.stdout and f"{REAL_LABELS} labels" in done.stdout

    table = run("games", "--workspace", str(ws), "--format", "json")
    rows = json.loads(table.stdout)
    assert len(rows) == 5 and sum(r["labels"] for r in rows) == REAL_LABELS
    assert {r["split"] for r in rows} == {"train", "valid"}
    assert run("games", "--workspace", str(ws)).stdout.count("england_efl") == 5

    out = tmp_path / "out.zip"
    done = run("export", str(out), "--workspace", str(ws))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as zf:
        assert len(zf.namelist()) == 5

    again = run("--workspace", str(ws), "import", str(REAL_DATA))
    assert again.returncode == 2 and "--replace" in again.stderr and "Traceback" not in again.stderr


def test_bad_input_exits_with_a_clear_error(tmp_path):
    make_game(tmp_path / "src", "l/s/g", [annotation(1, "PAS")])
    done = run("import", str(tmp_path / "src"), "--workspace", str(tmp_path / "W"))
    assert done.returncode == 2
    assert "unknown label 'PAS'" in done.stderr and "annotations[0]" in done.stderr
    assert "Traceback" not in done.stderr


def test_export_unknown_model_version_is_an_error(tmp_path):
    done = run("export", str(tmp_path / "o"), "--workspace", str(tmp_path / "W"), "--predictions", "v9")
    assert done.returncode == 2 and "no model version 'v9'" in done.stderr


def test_download_unpacks_and_imports_the_split_zips(tmp_path, monkeypatch, capsys):
    """The network step is SoccerNet's; what follows it (unzip, split, import) is ours."""
    import SoccerNet.Downloader

    src = tmp_path / "src"
    valid = "england_efl/2019-2020/2019-10-01 - Middlesbrough - Preston North End"
    test = "england_efl/2019-2020/2019-10-01 - Reading - Fulham"
    make_game(src / "valid", valid, [annotation(3), annotation(8, "OUT", "away")], video_frames=20)
    make_game(src / "test", test, [annotation(4)])
    calls = []

    class FakeDownloader:
        def __init__(self, LocalDirectory):
            self.root = Path(LocalDirectory)

        def downloadDataTask(self, task, split):
            calls.append((task, split))
            for name in split:
                target = self.root / task / f"{name}.zip"
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(target, "w") as zf:
                    for f in (src / name).rglob("*"):
                        zf.write(f, f.relative_to(src / name).as_posix())

    monkeypatch.setattr(SoccerNet.Downloader, "SoccerNetDownloader", FakeDownloader)
    ws = tmp_path / "W"
    assert launch.main(["download", "--workspace", str(ws), "--split", "valid", "test"]) == 0
    assert calls == [("spotting-ball-2024", ["valid", "test"])]
    with Store.open(Workspace.at(ws)) as s:
        games = {g["url_local"]: g for g in s.games()}
        assert games[valid]["split"] == "valid" and games[test]["split"] == "test"
        assert games[valid]["frame_count"] == 20
        assert Workspace.at(ws).sources_dir in Path(games[valid]["video_path"]).parents
        assert [r["label"] for r in s.labels(valid)] == ["PASS", "OUT"]


def test_download_without_network_says_so(tmp_path, monkeypatch, capsys):
    import SoccerNet.Downloader

    class Offline:
        def __init__(self, LocalDirectory):
            pass

        def downloadDataTask(self, task, split):
            print("connection refused")

    monkeypatch.setattr(SoccerNet.Downloader, "SoccerNetDownloader", Offline)
    assert launch.main(["download", "--workspace", str(tmp_path / "W"), "--split", "train"]) == 2
    assert "did not produce the train split" in capsys.readouterr().err


def test_games_on_an_empty_workspace(tmp_path):
    done = run("games", "--workspace", str(tmp_path / "empty"))
    assert done.returncode == 0 and "No games" in done.stdout


def test_help_lists_every_command_of_the_docstring_and_nothing_internal():
    import re

    text = launch.build_parser().format_help()
    documented = set(re.findall(r"python launch\.py (\w[\w-]*)", launch.__doc__))
    listed = set(re.findall(r"^    (\w[\w-]*) ", text, flags=re.M))
    assert documented == listed, (documented ^ listed)
    assert "SUPPRESS" not in text and "job-run" not in text


def test_exporting_labels_says_how_many_predictions_are_not_reviewed(tmp_path):
    make_game(tmp_path / "src", "l/s/g", [annotation(3)])
    ws = Workspace.at(tmp_path / "W")
    assert run("import", str(tmp_path / "src"), "--workspace", str(ws.root), "--split", "test").returncode == 0
    with Store.open(ws) as store:
        store.register_model("v1")
        store.add_predictions("v1", "l/s/g", [(10, "PASS", "home", 0.9), (20, "SHOT", "away", 0.4)])
        store.accept(store.predictions("l/s/g", "v1")[0]["id"])
    done = run("export", str(tmp_path / "out"), "--workspace", str(ws.root))
    assert done.returncode == 0 and "1 prediction(s) of v1 not reviewed yet" in done.stderr
    done = run("export", str(tmp_path / "p"), "--workspace", str(ws.root), "--predictions", "v1")
    assert done.returncode == 0 and "not reviewed" not in done.stderr
