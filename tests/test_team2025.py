"""The 2025 Team Ball Action Spotting task end to end: side-labelled (left/right) games are
scored, trained, imported, exported and downloaded like BAS-2024's home/away games.

Reference scorer: sn-teamspotting (https://github.com/SoccerNet/sn-teamspotting), commit
091fed2fc35c33f7489f3596958a2fe385e37d65 ("fix evaluation codabench", 2025-08-26),
``util/eval.py::mAPevaluateCodabench`` (labels and predictions to 24-column vectors
``<LABEL>-left``/``<LABEL>-right``) with ``util/score.py::compute_amAP`` (per-class AP weighted
by the sums of the label vectors, "not shown" events counting -1), on SoccerNet 0.2.0's
``average_mAP``. The constants below are what it printed for the real labels in
``../shared/data/soccernet-ball-2024`` turned into sides (:func:`side_document`) with the
predictions :func:`perturbed_predictions` builds, on all five games at once. Command (outside
this project; ``/tmp/h2team`` holds ``git archive 091fed2 util`` of that repository, and the
driver imports this file's builders so that both sides score the very same events):

    cd /tmp/h2team && /work/main/.venv/bin/python driver.py

The driver writes the label and prediction trees, replaces ``util.eval.getListGames`` by the
five games (the script's own split lists name them in train and val), and calls
``mAPevaluateCodabench(labels, predictions, split="test", event_team=True, metric=...)``.

The 2025 label file layout (``halftime``, a top-level key: the end of the first half as a
``gameTime``, e.g. "1 - 46:04"; teams ``left``/``right``) is from the public write-up
https://int8.io/team-ball-action-spotting-challenge-2025 ; the Hugging Face dataset
SoccerNet/SN-BAS-2025 holds one zip per split (``train.zip``, ``valid.zip``, ``test.zip``,
``challenge.zip``: ``<league>/<season>/<game>/`` with ``Labels-ball.json`` and the videos),
as SoccerNet's own downloader (``SoccerNet/Downloader.py``, task ``spotting-ball-2025``:
``allow_patterns=["*" + split + ".zip"]``) fetches them.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import launch
from conftest import REAL_DATA, ROOT, annotation, make_game, real_label_files
from core.errors import InputError
from core.export import export
from core.formats import dumps
from core.ingest import import_source
from core.labels import CLASSES, LABEL_FILE, PREDICTION_FILE, TEAMS_SIDE, frame_to_ms, game_time
from core.metrics import GameEvents, average_map, team_map
from core.store import Store
from core.workspace import Workspace

#: Where each real game's first half ends (seconds of the video), for its ``halftime`` and for
#: the sides: teams change ends at half time, so home is left before it and right after it.
HALFTIME_S = {
    "2019-10-01 - Blackburn Rovers - Nottingham Forest": 2764,
    "2019-10-01 - Brentford - Bristol City": 2790,
    "2019-10-01 - Hull City - Sheffield Wednesday": 2811,
    "2019-10-01 - Leeds United - West Bromwich": 2758,
    "2019-10-01 - Middlesbrough - Preston North End": 2777,
}


def side_document(doc: dict, *, unshown_every: int = 0) -> dict:
    """A real BAS-2024 label file as the 2025 release writes it: ``halftime`` after
    ``UrlYoutube``, home/away turned into the side of the video (swapped after half time);
    ``unshown_every`` > 0 marks every n-th annotation "not shown"."""
    halftime = HALFTIME_S[doc["UrlLocal"].rsplit("/", 1)[1]]
    annotations = []
    for i, a in enumerate(doc["annotations"]):
        first_half = int(a["position"]) < halftime * 1000
        side = TEAMS_SIDE[(a["team"] == "away") != (not first_half)]
        visibility = "not shown" if unshown_every and i % unshown_every == unshown_every - 1 else a["visibility"]
        annotations.append({**a, "team": side, "visibility": visibility})
    return {"UrlLocal": doc["UrlLocal"], "UrlYoutube": doc["UrlYoutube"],
            "halftime": f"1 - {halftime // 60:02d}:{halftime % 60:02d}", "annotations": annotations}


def perturbed_predictions(labels: list[dict], seed: int) -> list[dict]:
    """Deterministic predictions from labels: 15% dropped; the rest shifted by up to 20 frames
    (the 1 s tolerance is +-12) and by 0..39 ms off the frame grid (SoccerNet's float frame
    conversion), 20% on the wrong side, 5% of another class, random confidences; plus 10%
    spurious events and 3% repeats on a taken frame (a later one overwrites)."""
    rng = np.random.default_rng(seed)
    out = []
    for a in labels:
        if rng.random() < 0.15:
            continue
        frame = max(0, int(a["position"]) // 40 + int(rng.integers(-20, 21)))
        team = a["team"] if rng.random() >= 0.2 else TEAMS_SIDE[1 - TEAMS_SIDE.index(a["team"])]
        label = a["label"] if rng.random() >= 0.05 else CLASSES[int(rng.integers(len(CLASSES)))]
        out.append({"gameTime": game_time(frame), "label": label,
                    "position": str(frame_to_ms(frame) + int(rng.integers(0, 40))), "half": "1",
                    "confidence": float(rng.random()), "team": team})
    last = max(int(a["position"]) for a in labels) // 40
    for _ in range(len(labels) // 10):
        frame = int(rng.integers(0, last))
        out.append({"gameTime": game_time(frame), "label": CLASSES[int(rng.integers(len(CLASSES)))],
                    "position": str(frame_to_ms(frame)), "half": "1", "confidence": float(rng.random()),
                    "team": TEAMS_SIDE[int(rng.integers(2))]})
    for _ in range(len(labels) // 33):
        taken = out[int(rng.integers(len(out)))]
        out.append({**taken, "confidence": float(rng.random())})
    return out


def scenario(unshown_every: int = 0) -> list[tuple[str, dict, dict]]:
    """(relative game folder, 2025-style label document, prediction document) of the five real games."""
    games = []
    for seed, path in enumerate(real_label_files()):
        doc = side_document(json.loads(path.read_text()), unshown_every=unshown_every)
        preds = {"UrlLocal": doc["UrlLocal"], "predictions": perturbed_predictions(doc["annotations"], 2025 + seed)}
        games.append((str(path.parent.relative_to(REAL_DATA)), doc, preds))
    return games


def write_scenario(root: Path, unshown_every: int = 0) -> tuple[Path, Path]:
    """The scenario as label and prediction trees under ``root`` (what the official scorer reads)."""
    for rel, doc, preds in scenario(unshown_every):
        for folder, name, content in (("labels", "Labels-ball.json", doc), ("preds", "results_spotting.json", preds)):
            (root / folder / rel).mkdir(parents=True, exist_ok=True)
            (root / folder / rel / name).write_text(json.dumps(content, indent=2))
    return root / "labels", root / "preds"

# ----------------------------------------------------------------------------- the metric

#: sn-teamspotting's printout (see the module docstring): scenario -> (Team mAP, Team AP per
#: class in CLASSES order, mAP without teams, which its script also prints).
OFFICIAL = {
    ("visible", "at1"): (0.1642161544303052, [
        0.23225091488269833, 0.22606134982482134, 0.23254576315080017, 0.2095341735646626, 0.17142505909735223,
        0.16139130158319923, 0.13955498037905983, 0.1528661437857362, 0.12365076051808604, 0.11206227728432347,
        0.09768428797384338, 0.11156684111907991], 0.22788326591420194),
    ("visible", "tight"): (0.32704713885443265, [
        0.4810619610855642, 0.47272227586688453, 0.4665338573727494, 0.4171187292848333, 0.39202942065152646,
        0.31803963335515384, 0.3330850855321531, 0.3159355743856745, 0.26380814180473905, 0.18919497592990553,
        0.1180146244103829, 0.15702138657362538], 0.4775717463982094),
    # Every 10th event "not shown": it weighs -1 in the team weights (counting it +1 gives 2.8e-4 less).
    ("unshown10", "at1"): (0.164496533311721, [
        0.23226805668592787, 0.22612007387140914, 0.23246829917293357, 0.2095234912741529, 0.17195127889752326,
        0.16114058524221606, 0.139704552489665, 0.15282270478283916, 0.12646596024852988, 0.1152640445830145,
        0.0946625113733608, 0.11156684111907991], 0.22788326591420194),
}


def _games(unshown_every: int = 0) -> list[GameEvents]:
    return [GameEvents(rel, doc["annotations"], preds["predictions"]) for rel, doc, preds in scenario(unshown_every)]


@pytest.mark.parametrize("case", list(OFFICIAL), ids=lambda c: "-".join(c))
def test_team_map_equals_sn_teamspotting_on_real_labels_as_sides(case):
    labels, metric = case
    team_map_official, per_class_official, plain_official = OFFICIAL[case]
    games = _games(10 if labels == "unshown10" else 0)
    ours = team_map(games, metric=metric)
    assert ours.teams == TEAMS_SIDE  # read from the labels: nobody said left/right
    assert all(ours.support[c] > 0 for c in CLASSES)
    assert abs(ours.mAP - team_map_official) < 1e-9
    for cls, theirs in zip(CLASSES, per_class_official):
        assert abs(ours.per_class[cls] - theirs) < 1e-9, cls
    assert abs(average_map(games, metric).mAP - plain_official) < 1e-9


def test_evaluate_team_scores_the_vocabulary_the_labels_use(tmp_path, capsys):
    """``launch.py evaluate --team`` on left/right labels: Team mAP of left/right (it was 0
    with support 0 when only home/away was scored), the official number."""
    labels, preds = write_scenario(tmp_path)
    assert launch.main(["evaluate", "--labels", str(labels), "--predictions", str(preds), "--team", "--json"]) == 0
    plain, team = json.loads(capsys.readouterr().out)
    assert team["teams"] == ["left", "right"] and "teams" not in plain
    assert abs(team["mAP"] - OFFICIAL[("visible", "at1")][0]) < 1e-9
    assert team["support"]["PASS"] == plain["support"]["PASS"] > 1000
    assert launch.main(["evaluate", "--labels", str(labels), "--predictions", str(preds), "--team"]) == 0
    assert "team-at1 mAP: 16.42  (5 games, teams left/right)" in capsys.readouterr().out


def _tree(root: Path, games: dict[str, tuple[list[dict], list[dict]]]) -> tuple[Path, Path]:
    for name, (labels, preds) in games.items():
        for folder, file, doc in (("l", LABEL_FILE, {"annotations": labels}), ("p", PREDICTION_FILE,
                                                                               {"predictions": preds})):
            (root / folder / name).mkdir(parents=True, exist_ok=True)
            (root / folder / name / file).write_text(json.dumps(doc))
    return root / "l", root / "p"


def test_mixed_or_unknown_teams_are_errors_naming_the_files(tmp_path, capsys):
    left = annotation(10, team="left")
    pred = {**annotation(10, team="left"), "confidence": 0.9}

    def evaluate(root: Path) -> str:
        labels, preds = root / "l", root / "p"
        assert launch.main(["evaluate", "--labels", str(labels), "--predictions", str(preds), "--team"]) == 2
        return capsys.readouterr().err

    _tree(tmp_path / "a", {"x/y/g1": ([left], [pred]), "x/y/g2": ([annotation(20, team="home")], [])})
    err = evaluate(tmp_path / "a")
    assert "mix team vocabularies" in err and "left/right: x/y/g1/Labels-ball.json" in err
    assert "home/away: x/y/g2/Labels-ball.json" in err and "Traceback" not in err
    _tree(tmp_path / "b", {"x/y/g1": ([left, annotation(30, team="away")], [pred])})
    assert "x/y/g1/Labels-ball.json: the teams mix home/away" in evaluate(tmp_path / "b")
    _tree(tmp_path / "c", {"x/y/g1": ([left, annotation(30, team="Right")], [pred])})
    assert "x/y/g1/Labels-ball.json: unknown team 'Right'" in evaluate(tmp_path / "c")
    # A prediction of a team the labels do not use: the official scorer stops on it (a KeyError), so do we.
    _tree(tmp_path / "d", {"x/y/g1": ([left], [pred, {**pred, "position": "800", "team": "home"}])})
    err = evaluate(tmp_path / "d")
    assert "x/y/g1/results_spotting.json: predictions[1] team 'home'" in err and "(left/right)" in err
    # Without --team the teams do not matter, as for SoccerNet's plain mAP.
    assert launch.main(["evaluate", "--labels", str(tmp_path / "d" / "l"),
                        "--predictions", str(tmp_path / "d" / "p")]) == 0


# ----------------------------------------------------------------------------- import and export


def test_a_2025_label_file_round_trips_byte_for_byte(store, workspace, tmp_path):
    """left/right and the file-level ``halftime`` are stored (``games.extra``) and written back:
    the exported file is the imported one, byte for byte."""
    real = real_label_files()[0]
    doc = side_document(json.loads(real.read_text()))
    src = tmp_path / "src" / doc["UrlLocal"]
    src.mkdir(parents=True)
    (src / LABEL_FILE).write_text(dumps(doc))
    report = import_source(store, tmp_path / "src", workspace=workspace)
    assert report.result.labels == len(doc["annotations"])
    game = store.game(doc["UrlLocal"])
    assert game["extra"] == {"halftime": "1 - 46:04"}
    assert {r["team"] for r in store.labels(game["id"])} == set(TEAMS_SIDE)
    export(store, tmp_path / "out")
    assert (tmp_path / "out" / doc["UrlLocal"] / LABEL_FILE).read_bytes() == (src / LABEL_FILE).read_bytes()
    # A newer file without halftime replaces what the old one said, as it replaces its labels.
    doc.pop("halftime")
    (src / LABEL_FILE).write_text(dumps(doc))
    import_source(store, tmp_path / "src", workspace=workspace, replace=True)
    assert store.game(doc["UrlLocal"])["extra"] == {}


def test_a_file_naming_teams_both_ways_is_refused_at_import(store, workspace, tmp_path):
    make_game(tmp_path / "src", "x/y/g", [annotation(1, team="left"), annotation(5, team="right"),
                                          annotation(9, team="home")])
    with pytest.raises(InputError) as err:
        import_source(store, tmp_path / "src", workspace=workspace)
    assert len(err.value.problems) == 1
    assert "annotations[2] (position '360', label 'PASS'): team 'home': 2 annotations of this file name teams " \
           "left/right and 1 home/away" in str(err.value)
    assert store.games() == []


def _locked(path: Path) -> Path:
    """Mark every entry of a zip encrypted (bit 0 of the flags, local headers and directory),
    as SoccerNet's password-protected split zips are: what the importer sees of them."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset] |= 0x1
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    return path


def test_an_encrypted_split_zip_says_to_unpack_it_with_the_password(store, workspace, tmp_path):
    make_game(tmp_path / "src", "x/y/g", [annotation(1, team="left")], video_frames=5)
    with zipfile.ZipFile(tmp_path / "train.zip", "w") as zf:
        for f in sorted((tmp_path / "src").rglob("*.*")):
            zf.write(f, f.relative_to(tmp_path / "src").as_posix())
    with pytest.raises(InputError) as err:
        import_source(store, _locked(tmp_path / "train.zip"), workspace=workspace)
    assert "2 of its 2 entries are encrypted" in str(err.value) and '7z x "train.zip" -oFOLDER' in str(err.value)
    assert store.games() == [] and not any(workspace.sources_dir.iterdir())


# ----------------------------------------------------------------------------- download

VALID = "england_efl/2019-2020/2019-10-01 - Middlesbrough - Preston North End"
TEST = "england_efl/2019-2020/2019-10-01 - Reading - Fulham"


def _release(root: Path) -> Path:
    """A local copy of SN-BAS-2025's layout: ``valid.zip`` (a game with a video) and ``test.zip``,
    label files in the 2025 form (sides, ``halftime``)."""
    for split, game, frames in (("valid", VALID, 20), ("test", TEST, None)):
        folder = make_game(root / "unpacked" / split, game, [annotation(3, team="left"),
                                                             annotation(8, "OUT", "right")], video_frames=frames)
        doc = json.loads((folder / LABEL_FILE).read_text())
        (folder / LABEL_FILE).write_text(dumps({**doc, "halftime": "1 - 47:10"}))
        with zipfile.ZipFile(root / f"{split}.zip", "w") as zf:
            for f in sorted((root / "unpacked" / split).rglob("*.*")):
                zf.write(f, f.relative_to(root / "unpacked" / split).as_posix())
    return root


def _imported(ws: Path) -> dict[str, dict]:
    with Store.open(Workspace.at(ws)) as s:
        return {g["url_local"]: {**g, "teams": [r["team"] for r in s.labels(g["id"])]} for g in s.games()}


def test_download_2025_fetches_the_split_zips_from_the_hub_and_imports_each(tmp_path, monkeypatch, capsys):
    """The network step is huggingface_hub's (replaced here by a copy of the dataset's layout);
    what follows it (the zips found, unpacked and imported split by split) is the real path."""
    import huggingface_hub

    release = _release(tmp_path / "hub")
    calls = []

    def hub_download(*, repo_id, repo_type, filename, local_dir):
        calls.append((repo_id, repo_type, filename))
        target = Path(local_dir) / filename
        target.write_bytes((release / filename).read_bytes())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_download)
    ws = tmp_path / "W"
    assert launch.main(["download", "--release", "2025", "--split", "valid", "test", "--workspace", str(ws)]) == 0
    assert calls == [("SoccerNet/SN-BAS-2025", "dataset", f"{split}.zip") for split in ("valid", "test")]
    assert (Workspace.at(ws).soccernet_dir / "SN-BAS-2025" / "valid.zip").is_file()
    games = _imported(ws)
    assert games[VALID]["split"] == "valid" and games[TEST]["split"] == "test"
    assert games[VALID]["teams"] == ["left", "right"] and games[VALID]["extra"] == {"halftime": "1 - 47:10"}
    assert games[VALID]["frame_count"] == 20
    assert Workspace.at(ws).sources_dir in Path(games[VALID]["video_path"]).parents
    out = capsys.readouterr()
    assert out.out.count("Imported 1 game(s)") == 2 and "downloading test.zip of SoccerNet/SN-BAS-2025" in out.err


def test_download_2025_from_a_local_copy_needs_no_network(tmp_path, monkeypatch):
    import huggingface_hub

    release = _release(tmp_path / "copy")
    (release / "valid.zip").unlink()  # valid as an unpacked folder, test as its zip
    (release / "unpacked" / "valid").rename(release / "valid")

    def no_network(**kwargs):
        raise AssertionError("--from must not reach the hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    ws = tmp_path / "W"
    assert launch.main(["download", "--release", "2025", "--split", "valid", "test", "--from", str(release),
                        "--workspace", str(ws)]) == 0
    games = _imported(ws)
    assert {g: games[g]["split"] for g in games} == {VALID: "valid", TEST: "test"}
    assert games[TEST]["extra"] == {"halftime": "1 - 47:10"}
    assert launch.main(["download", "--split", "train", "--from", str(release), "--workspace", str(ws)]) == 2


def _hub_error(name: str, status: int | None = None) -> Exception:
    """An error as huggingface_hub raises it (the real classes; an HTTP one with its response)."""
    import importlib

    from huggingface_hub import errors

    if status is None:  # what hf_hub_download raises with no network and nothing cached (seen here)
        return errors.LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we "
                                              "cannot find the requested files in the local cache.")
    http = importlib.import_module(errors.Response.__module__.split(".")[0])  # the hub's HTTP client
    request = http.Request("HEAD", "https://huggingface.co/datasets/SoccerNet/SN-BAS-2025/resolve/main/train.zip")
    return getattr(errors, name)(f"{status} Client Error", response=http.Response(status, request=request))


@pytest.mark.parametrize("error, says", [
    (("LocalEntryNotFoundError", None), ["cannot reach the Hugging Face hub to download train.zip",
                                         "--release 2025 --split train --from FOLDER"]),
    (("GatedRepoError", 403), ["no access to the Hugging Face dataset SoccerNet/SN-BAS-2025 (GatedRepoError)",
                               "accept its terms at https://huggingface.co/datasets/SoccerNet/SN-BAS-2025",
                               "hf auth login", "HF_TOKEN"]),
    (("RepositoryNotFoundError", 401), ["no access to the Hugging Face dataset", "HF_TOKEN"]),
    (("RemoteEntryNotFoundError", 404), ["the Hugging Face dataset SoccerNet/SN-BAS-2025 has no train.zip"]),
], ids=["offline", "gated", "no-token", "no-such-split"])
def test_download_2025_failures_say_what_to_do(tmp_path, monkeypatch, capsys, error, says):
    import huggingface_hub

    def hub_download(**kwargs):
        raise _hub_error(*error)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_download)
    ws = tmp_path / "W"
    assert launch.main(["download", "--release", "2025", "--split", "train", "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert all(s in err for s in says), err
    assert "Traceback" not in err and _imported(ws) == {}


# ----------------------------------------------------------------------------- training


def test_side_labelled_games_train_the_side_mode_without_being_told(tmp_path):
    """A game labelled left/right trains a model whose config says ``side`` (the config file
    says nothing of it) and whose predictions name sides, flip TTA included."""
    from core.infer import InferConfig, infer_video
    from core.model import load as load_model
    from core.training import TrainConfig, train

    events = [annotation(f, CLASSES[i % 3], TEAMS_SIDE[i % 2]) for i, f in enumerate(range(12, 110, 7))]
    folder = make_game(tmp_path / "src", "x/y/g", events, video_frames=120)
    workspace = Workspace.at(tmp_path / "ws").ensure()
    config = TrainConfig.load(ROOT / "core" / "configs" / "tiny.yaml", epochs=1, samples_per_epoch=32, batch=8,
                              valid_splits=["train"], pretrain={"steps": 0})
    assert config.model.team_mode == "role"
    with Store.open(workspace) as store:
        import_source(store, tmp_path / "src", workspace=workspace, split="train")
        row = train(config, store, workspace, out=tmp_path / "run")
    model = load_model(Path(row["path"]))
    assert model.config.team_mode == "side" and row["config"]["model"]["team_mode"] == "side"
    _, found = infer_video(model, folder / "224p.mp4", InferConfig(height=0.0, batch=8))
    assert found and {e.team for e in found} <= set(TEAMS_SIDE)


def test_training_games_naming_teams_both_ways_are_refused():
    from core.errors import BallspotError
    from core.training.data import GameData, team_mode

    def game(name: str, teams: list[str]) -> GameData:
        return GameData(1, name, 10, None, {}, np.zeros((0, 3), np.int64), np.zeros((0, 2), np.int64),
                        [annotation(i, team=t) for i, t in enumerate(teams)])

    assert team_mode([game("a", ["left", "right"]), game("b", [])]) == "side"
    assert team_mode([game("a", ["home"]), game("b", ["away", "home"])]) == "role"
    with pytest.raises(BallspotError, match=r"training games mix team vocabularies \(left/right: a; home/away: b\)"):
        team_mode([game("a", ["left"]), game("b", ["home"])])
