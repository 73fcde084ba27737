"""Import of SoccerNet trees, folders and zips; export that reproduces the files exactly."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from conftest import REAL_DATA, REAL_LABELS, annotation, make_game, real_label_files
from core.errors import ConflictError
from core.export import DOWNLOAD_PREFIX, download_folder, export
from core.ingest import import_source
from core.labels import LABEL_FILE, game_time

GAME = "league_x/2024-2025/2024-08-01 - Alpha - Beta"


def _annotation_set(doc: dict) -> set[tuple]:
    return {(a["position"], a["label"], a["team"], a["visibility"]) for a in doc["annotations"]}


def test_real_games_round_trip_exactly(store, workspace, tmp_path):
    report = import_source(store, REAL_DATA, workspace=workspace)
    assert len(report.games) == 5 and report.result.labels == REAL_LABELS
    assert sum(len(store.labels(g["id"])) for g in store.games()) == REAL_LABELS
    splits = {g["url_local"].split(" - ", 1)[1]: g["split"] for g in store.games()}
    assert splits["Middlesbrough - Preston North End"] == "valid"
    assert splits["Brentford - Bristol City"] == "train"

    out = tmp_path / "out"
    written = export(store, out, predictions=None)
    assert len(written) == 5
    for original in real_label_files():
        src = json.loads(original.read_text())
        dst = json.loads((out / src["UrlLocal"] / LABEL_FILE).read_text())
        assert dst["UrlLocal"] == src["UrlLocal"]
        assert _annotation_set(dst) == _annotation_set(src)
        # Same entries in the same order, gameTime included: the files are equal as JSON.
        assert dst == src


def test_export_zip_matches_folder_export(store, workspace, tmp_path):
    import_source(store, REAL_DATA, workspace=workspace)
    export(store, tmp_path / "dir")
    export(store, tmp_path / "labels.zip")
    with zipfile.ZipFile(tmp_path / "labels.zip") as zf:
        names = sorted(zf.namelist())
        assert len(names) == 5 and all(n.endswith("/" + LABEL_FILE) for n in names)
        for name in names:
            assert zf.read(name).decode() == (tmp_path / "dir" / name).read_text()


def test_export_one_game(store, workspace, tmp_path):
    import_source(store, REAL_DATA, workspace=workspace)
    url = store.games()[0]["url_local"]
    written = export(store, tmp_path / "one", games=[url])
    assert written == [f"{url}/{LABEL_FILE}"]


def test_download_folders_an_app_left_behind_are_removed_after_an_hour(tmp_path):
    """Each export for the browser gets a folder in the temporary folder; an app stopped by a
    signal cannot remove its last one, so the next export removes those over an hour old (not
    a fresh one another app may still serve, not a link, not other files)."""
    import os
    import time

    old, fresh, other = (tmp_path / f"{DOWNLOAD_PREFIX}old", tmp_path / f"{DOWNLOAD_PREFIX}fresh",
                         tmp_path / "ballspot-other")
    for folder in (old, fresh, other):
        folder.mkdir()
        (folder / "labels.zip").write_bytes(b"zip")
    (tmp_path / f"{DOWNLOAD_PREFIX}link").symlink_to(other)
    two_hours_ago = time.time() - 7200
    for path in (old, other, tmp_path / f"{DOWNLOAD_PREFIX}link"):
        os.utime(path, (two_hours_ago, two_hours_ago), follow_symlinks=False)
    made = download_folder(tmp_path)
    assert made.is_dir() and made.parent == tmp_path and made.name.startswith(DOWNLOAD_PREFIX)
    assert not old.exists() and (fresh / "labels.zip").is_file() and (other / "labels.zip").is_file()
    assert (tmp_path / f"{DOWNLOAD_PREFIX}link").is_symlink()


def test_game_time_is_derived_like_soccernet():
    assert game_time(17) == "1 - 00:00"
    assert game_time(25) == "1 - 00:01"
    assert game_time(142765) == "1 - 95:10"  # 5710600 ms, the last Blackburn label


def test_import_one_game_folder_with_video(store, workspace, tmp_path):
    folder = make_game(tmp_path / "src", GAME, [annotation(3), annotation(10, "DRIVE", "away")], video_frames=40)
    report = import_source(store, folder, workspace=workspace, split="train")
    g = store.game(GAME)
    assert report.result.videos == 1
    assert g["split"] == "train" and g["frame_count"] == 40 and g["fps"] == 25
    assert g["width"] == 64 and g["height"] == 48 and abs(g["duration_s"] - 1.6) < 1e-6
    assert Path(g["video_path"]) == (folder / "224p.mp4").resolve()  # referenced in place, not copied
    labels = [(r["frame"], r["label"], r["team"]) for r in store.labels(GAME)]
    assert labels == [(3, "PASS", "home"), (10, "DRIVE", "away")]


def test_linked_game_folders_are_found_and_a_link_cycle_ends(store, workspace, tmp_path):
    """A tree whose games are symbolic links (a dataset linked in from a shared disk) imports;
    a link back up the tree neither hangs nor imports a game twice."""
    real = make_game(tmp_path / "disk", GAME, [annotation(3)])
    tree = tmp_path / "tree"
    (tree / "league").mkdir(parents=True)
    (tree / "league" / "game").symlink_to(real, target_is_directory=True)
    (tree / "league" / "loop").symlink_to(tree, target_is_directory=True)
    report = import_source(store, tree, workspace=workspace, split="train")
    assert report.result.games_added == 1 and report.result.labels == 1
    assert [r["frame"] for r in store.labels(GAME)] == [3]


def test_video_without_labels_is_a_game(store, workspace, tmp_path):
    folder = tmp_path / "src" / GAME
    from conftest import make_video
    make_video(folder / "720p.mp4", frames=30)
    import_source(store, folder, workspace=workspace, split="challenge")
    g = store.game(GAME)
    assert g["label_path"] is None and g["frame_count"] == 30 and store.labels(GAME) == []


def test_import_zip_of_a_tree(store, workspace, tmp_path):
    src = tmp_path / "src"
    make_game(src, GAME, [annotation(5)])
    make_game(src, GAME.replace("Alpha", "Gamma"), [annotation(6, "SHOT")])
    zpath = tmp_path / "valid.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in src.rglob("*"):
            if f.is_file():
                zf.write(f, f.relative_to(src).as_posix())
    report = import_source(store, zpath, workspace=workspace, split="valid")
    assert len(report.games) == 2 and {g["split"] for g in store.games()} == {"valid"}
    # Importing the same zip again reuses its unpacked folder and refuses the known games.
    with pytest.raises(ConflictError, match="already in the workspace"):
        import_source(store, zpath, workspace=workspace)
    assert len(list(workspace.sources_dir.iterdir())) == 1


def test_reimport_refuses_then_replace_keeps_history(store, workspace, tmp_path):
    src = tmp_path / "src"
    make_game(src, GAME, [annotation(5), annotation(9)])
    import_source(store, src, workspace=workspace)
    human = store.add_label(GAME, 20, "SHOT", "away", author="ana")
    before = store.dump()
    with pytest.raises(ConflictError, match="--replace"):
        import_source(store, src, workspace=workspace)
    assert store.dump() == before

    make_game(src, GAME, [annotation(7, "CROSS")])
    report = import_source(store, src, workspace=workspace, replace=True, author="ana")
    assert report.result.games_replaced == 1 and report.result.labels_replaced == 3
    assert [(r["frame"], r["label"]) for r in store.labels(GAME)] == [(7, "CROSS")]
    deleted = [c for a in store.history(GAME) for c in a["changes"] if c["op"] == "delete"]
    assert {json.loads(c["before"])["frame"] for c in deleted} == {5, 9, human["frame"]}


def test_unknown_annotation_keys_survive_a_round_trip(store, workspace, tmp_path):
    make_game(tmp_path / "src", GAME, [annotation(5, halftime=1)])
    import_source(store, tmp_path / "src", workspace=workspace)
    export(store, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / GAME / LABEL_FILE).read_text())
    assert doc["annotations"] == [annotation(5, halftime=1)]


def test_off_grid_position_is_snapped_with_a_warning(store, workspace, tmp_path):
    item = annotation(5)
    item["position"] = "210"
    make_game(tmp_path / "src", GAME, [item])
    report = import_source(store, tmp_path / "src", workspace=workspace)
    assert store.labels(GAME)[0]["frame"] == 5
    assert len(report.warnings) == 1 and "snapped to 200 ms" in str(report.warnings[0])
    assert "annotations[0]" in str(report.warnings[0])


def test_predictions_export_is_soccernet_results(store, workspace, tmp_path):
    make_game(tmp_path / "src", GAME, [annotation(5)])
    import_source(store, tmp_path / "src", workspace=workspace)
    store.register_model("v1")
    store.add_predictions("v1", GAME, [(5, "PASS", "home", 0.9), (30, "SHOT", "away", 0.25)])
    export(store, tmp_path / "pred", predictions="v1")
    doc = json.loads((tmp_path / "pred" / GAME / "results_spotting.json").read_text())
    assert doc["UrlLocal"] == GAME
    assert doc["predictions"] == [
        {"gameTime": "1 - 00:00", "label": "PASS", "position": "200", "half": "1", "confidence": 0.9, "team": "home"},
        {"gameTime": "1 - 00:01", "label": "SHOT", "position": "1200", "half": "1", "confidence": 0.25, "team": "away"},
    ]


def test_import_a_loose_label_file(store, workspace, tmp_path):
    """An uploaded file (any name) is imported by the UrlLocal it declares."""
    doc = {"UrlLocal": GAME, "UrlYoutube": "", "annotations": [annotation(4), annotation(6, "OUT", "away")]}
    path = tmp_path / "upload-123.json"
    path.write_text(json.dumps(doc))
    import_source(store, path, workspace=workspace, split="train")
    assert [r["label"] for r in store.labels(GAME)] == ["PASS", "OUT"]
    assert store.game(GAME)["split"] == "train"

    nameless = tmp_path / "nameless.json"
    nameless.write_text(json.dumps({"annotations": [annotation(4)]}))
    from core.errors import InputError
    with pytest.raises(InputError, match=r"nameless.json: UrlLocal: missing"):
        import_source(store, nameless, workspace=workspace)


def test_import_a_label_file_inside_its_game_folder_uses_its_video(store, workspace, tmp_path):
    folder = make_game(tmp_path / "src", GAME, [annotation(4)], video_frames=30)
    import_source(store, folder / LABEL_FILE, workspace=workspace)
    assert store.game(GAME)["frame_count"] == 30


def test_export_of_no_game_is_an_error(store, workspace, tmp_path):
    from core.errors import BallspotError
    import_source(store, REAL_DATA, workspace=workspace)
    with pytest.raises(BallspotError, match="no game to export"):
        export(store, tmp_path / "o", games=[])
