"""Bad input is refused with an error naming the file and the entry, and the database is
exactly what it was before (compared as a full SQL dump)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from conftest import annotation, make_game, make_video
from core.errors import InputError
from core.ingest import import_source
from core.labels import LABEL_FILE

GOOD = "league_x/2024-2025/2024-08-01 - Good - Game"
BAD = "league_x/2024-2025/2024-08-02 - Bad - Game"


@pytest.fixture
def populated(store, workspace, tmp_path):
    """A workspace that already holds a game and a human edit: the state that must survive."""
    make_game(tmp_path / "good", GOOD, [annotation(5), annotation(9, "SHOT", "away")])
    import_source(store, tmp_path / "good", workspace=workspace)
    store.add_label(GOOD, 12, "CROSS", "home", author="ana")
    return store


def _refused(store, workspace, source, *fragments: str) -> InputError:
    before = store.dump()
    with pytest.raises(InputError) as info:
        import_source(store, source, workspace=workspace)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error:\n{message}"
    assert store.dump() == before, "a refused import changed the database"
    assert store.integrity_check() == "ok"
    return info.value


def _label_file(root: Path, url: str = BAD) -> str:
    return str(root / url / LABEL_FILE)


def test_malformed_json(populated, workspace, tmp_path):
    make_game(tmp_path / "src", BAD, None, raw='{"annotations": [ {"label": "PASS",, } ]}')
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"), "line 1 column", "malformed JSON")


def test_not_an_object(populated, workspace, tmp_path):
    make_game(tmp_path / "src", BAD, None, raw="[1, 2]")
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"), "expected a JSON object")


def test_missing_annotations_key(populated, workspace, tmp_path):
    make_game(tmp_path / "src", BAD, None, raw=json.dumps({"UrlLocal": BAD}))
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"), "missing key 'annotations'")


def test_missing_key_in_an_annotation(populated, workspace, tmp_path):
    item = annotation(8)
    del item["label"]
    make_game(tmp_path / "src", BAD, [annotation(4), item])
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"),
             "annotations[1] (position '320')", "missing key 'label'")


def test_unknown_label(populated, workspace, tmp_path):
    make_game(tmp_path / "src", BAD, [annotation(4), annotation(6, "PAS")])
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"),
             "annotations[1] (position '240', label 'PAS')", "unknown label 'PAS'", "did you mean 'PASS'")


def test_unknown_team(populated, workspace, tmp_path):
    make_game(tmp_path / "src", BAD, [annotation(4, team="visitors")])
    _refused(populated, workspace, tmp_path / "src", "annotations[0]", "unknown team 'visitors'")


@pytest.mark.parametrize("position, why", [
    ("12a", "is not a whole number of milliseconds"),
    ("", "is not a whole number of milliseconds"),
    (None, "is not a whole number of milliseconds"),
    ("-40", "is negative"),
    (-80, "is negative"),
])
def test_bad_position(populated, workspace, tmp_path, position, why):
    item = annotation(4)
    item["position"] = position
    make_game(tmp_path / "src", BAD, [annotation(2), item])
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"), "annotations[1]", why)


def test_position_past_the_video(populated, workspace, tmp_path):
    # 40 frames at 25 fps: the video lasts 1.6 s, so a label at 1600 ms is past its end.
    make_game(tmp_path / "src", BAD, [annotation(39), annotation(40, "SHOT")], video_frames=40)
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"),
             "annotations[1] (position '1600', label 'SHOT')", "past the end of the video (1.60 s)")


def test_labels_only_replace_checked_against_stored_video(store, workspace, tmp_path):
    make_game(tmp_path / "v1", BAD, [annotation(3)], video_frames=40)
    import_source(store, tmp_path / "v1", workspace=workspace)
    make_game(tmp_path / "v2", BAD, [annotation(3), annotation(60, "OUT")])
    before = store.dump()
    with pytest.raises(InputError, match=r"label OUT at frame 60.*past the end of the video"):
        import_source(store, tmp_path / "v2", workspace=workspace, replace=True)
    assert store.dump() == before


def test_duplicate_label(populated, workspace, tmp_path):
    make_game(tmp_path / "src", BAD, [annotation(4), annotation(7), annotation(4)])
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"),
             "annotations[2] (position '160', label 'PASS'): duplicate of annotations[0]")


def test_bad_game_time(populated, workspace, tmp_path):
    make_game(tmp_path / "src", BAD, [annotation(4, gameTime="2 - 00:00"), annotation(5, gameTime="soon")])
    err = _refused(populated, workspace, tmp_path / "src", "annotations[0]", "half 2", "annotations[1]", "'soon'")
    assert len(err.problems) == 2


def test_every_problem_is_listed_and_nothing_of_the_good_games_is_stored(populated, workspace, tmp_path):
    src = tmp_path / "src"
    make_game(src, "league_x/2024-2025/2024-08-03 - Fine - Game", [annotation(1)])
    make_game(src, BAD, [annotation(1, "NOPE"), annotation(2, team="nobody")])
    err = _refused(populated, workspace, src, "2 problems", "unknown label 'NOPE'", "unknown team 'nobody'")
    assert {p.entry.split(" ")[0] for p in err.problems} == {"annotations[0]", "annotations[1]"}
    assert [g["url_local"] for g in populated.games()] == [GOOD]


def _zip(path: Path, entries: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    return path


@pytest.mark.parametrize("entry", ["../escape/Labels-ball.json", "a/../../escape/Labels-ball.json",
                                   "/abs/escape/Labels-ball.json"])
def test_zip_entry_escaping_its_folder(populated, workspace, tmp_path, entry):
    good = json.dumps({"UrlLocal": BAD, "annotations": [annotation(3)]})
    zpath = _zip(tmp_path / "evil.zip", {f"{BAD}/{LABEL_FILE}": good, entry: good})
    _refused(populated, workspace, zpath, str(zpath), entry, "escapes the zip's folder")
    assert not (workspace.root / "escape").exists() and not (workspace.sources_dir / "escape").exists()
    assert not any(workspace.sources_dir.iterdir()), "nothing of a refused zip is unpacked"


def test_zip_symlink_entry(populated, workspace, tmp_path):
    zpath = tmp_path / "link.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo(f"{BAD}/720p.mp4")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    _refused(populated, workspace, zpath, str(zpath), f"{BAD}/720p.mp4", "symbolic link")


def test_not_a_zip(populated, workspace, tmp_path):
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip")
    _refused(populated, workspace, path, str(path), "not a readable zip")


def test_non_video_file(populated, workspace, tmp_path):
    folder = make_game(tmp_path / "src", BAD, [annotation(3)])
    (folder / "720p.mp4").write_text("this is a text file, not a video")
    _refused(populated, workspace, tmp_path / "src", str(folder / "720p.mp4"), "not a readable video")


def test_truncated_video(populated, workspace, tmp_path):
    folder = make_game(tmp_path / "src", BAD, [annotation(3)])
    full = make_video(tmp_path / "full.mp4", frames=50).read_bytes()
    (folder / "224p.mp4").write_bytes(full[: len(full) // 3])
    _refused(populated, workspace, tmp_path / "src", str(folder / "224p.mp4"))


def test_missing_source(populated, workspace, tmp_path):
    _refused(populated, workspace, tmp_path / "nowhere", str(tmp_path / "nowhere"), "no such file or folder")


def test_folder_without_games(populated, workspace, tmp_path):
    (tmp_path / "empty" / "x").mkdir(parents=True)
    _refused(populated, workspace, tmp_path / "empty", "no game found")


@pytest.mark.parametrize("doc, where, why", [
    ({"UrlLocal": "../../escaped", "annotations": []}, "UrlLocal", "is not a league/season/game path"),
    ({"UrlLocal": "a/\ud800/b", "annotations": []}, "UrlLocal", "not valid Unicode"),
    ({"UrlLocal": BAD, "UrlYoutube": {"a": 1}, "annotations": []}, "UrlYoutube", "expected a string"),
    ({"UrlLocal": BAD, "annotations": [annotation(3) | {"position": "9" * 30}]}, "annotations[0]",
     "more than 24 hours"),
    ({"UrlLocal": BAD, "annotations": [annotation(3) | {"position": 1e300}]}, "annotations[0]", "not a whole number"),
    ({"UrlLocal": BAD, "annotations": [annotation(3) | {"note": "\udc00"}]}, "annotations[0]", "not valid Unicode"),
])
def test_hostile_values(populated, workspace, tmp_path, doc, where, why):
    folder = tmp_path / "src" / BAD
    folder.mkdir(parents=True)
    (folder / LABEL_FILE).write_text(json.dumps(doc))
    _refused(populated, workspace, tmp_path / "src", str(folder / LABEL_FILE), where, why)


@pytest.mark.parametrize("raw, why", [("[" * 100_000 + "]" * 100_000, "malformed JSON"),
                                      ('{"annotations": [], "x": NaN}', "NaN is not valid JSON")])
def test_hostile_json(populated, workspace, tmp_path, raw, why):
    make_game(tmp_path / "src", BAD, None, raw=raw)
    _refused(populated, workspace, tmp_path / "src", _label_file(tmp_path / "src"), why)


def test_zip_with_a_corrupt_entry(populated, workspace, tmp_path):
    zpath = _zip(tmp_path / "crc.zip", {f"{BAD}/{LABEL_FILE}": json.dumps({"annotations": [annotation(3)]})})
    data = bytearray(zpath.read_bytes())
    at = data.index(b'"annotations"')
    data[at + 1] ^= 0x20  # flip a byte of the stored entry: its CRC no longer matches
    zpath.write_bytes(bytes(data))
    _refused(populated, workspace, zpath, str(zpath), f"{BAD}/{LABEL_FILE}", "cannot unpack")


def test_zip_from_macos_ignores_resource_forks(store, workspace, tmp_path):
    good = json.dumps({"UrlLocal": BAD, "annotations": [annotation(3)]})
    zpath = _zip(tmp_path / "mac.zip", {f"{BAD}/{LABEL_FILE}": good, f"__MACOSX/{BAD}/._224p.mp4": "fork",
                                        f"{BAD}/._224p.mp4": "fork"})
    import_source(store, zpath, workspace=workspace)
    assert [g["url_local"] for g in store.games()] == [BAD]
