"""Trust (issue 14): nothing a user gives is opened if it is the workspace's database; a game's
video is read only if it is still the imported file; truncated videos, zip bombs, huge label
files, hostile names and out-of-range frames are refused or handled with a clear message."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import av
import pytest

import core.errors as errors
import core.formats as formats
import core.ingest as ingest
import core.video as video
from conftest import annotation, make_game, make_video
from core.errors import BallspotError, InputError
from core.export import export
from core.ingest import import_source
from core.labels import LABEL_FILE
from core.store import MIGRATIONS, SCHEMA_VERSION, GameImport, Store

GAME = "league_x/2024-2025/2024-08-01 - Alpha - Beta"
OTHER = "league_x/2024-2025/2024-08-02 - Gamma - Delta"

# ----------------------------------------------------------------------------- helpers

# SQLite's unix VFS takes a read lock on bytes SHARED_FIRST .. +SHARED_SIZE of the database
# file for every connection, for as long as it is open in WAL mode. Another process can only
# take a write lock there if this process's lock is gone: closing *any* descriptor of the
# file in this process drops it (POSIX locks are per process), which is the data-loss bug.
_LOCK_PROBE = r"""
import fcntl, sys
with open(sys.argv[1], "rb+") as f:
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 0x40000002)
    except OSError:
        print("held")
    else:
        print("free")
"""

# What ``launch.py games`` does from another process: open, read, close. When it believes it
# is the last connection, its close checkpoints the WAL and deletes -wal and -shm.
_READER = r"""
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
c.close()
"""


def _db_lock_held(db: Path) -> bool:
    """Whether this process still holds SQLite's shared lock on ``db`` (asked from another one)."""
    out = subprocess.run([sys.executable, "-c", _LOCK_PROBE, str(db)], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "held"


def _labels_seen_by_another_process(db: Path) -> int:
    out = subprocess.run([sys.executable, "-c", _READER, str(db)], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.fixture
def game(store, workspace, tmp_path):
    """A game with a 40-frame video, imported."""
    make_game(tmp_path / "src", GAME, [annotation(3)], video_frames=40)
    import_source(store, tmp_path / "src", workspace=workspace)
    return store.game(GAME)


# ----------------------------------------------------------------------------- 1. the database


def test_importing_the_database_is_refused_and_edits_stay_durable(store, workspace, game):
    """The repro: importing the workspace's own database opened it in the app's process, which
    dropped the app's locks; another process's reader then deleted the WAL on close, and
    every later edit went into an unlinked file."""
    assert _db_lock_held(workspace.db_path)
    with pytest.raises(InputError) as info:
        import_source(store, workspace.db_path, workspace=workspace)
    assert _labels_seen_by_another_process(workspace.db_path) == 1  # `launch.py games` meanwhile
    for frame in range(10, 20):
        store.add_label(GAME, frame, "PASS", "away")
    assert _labels_seen_by_another_process(workspace.db_path) == 11, "edits lost to a fresh reader"
    assert Path(f"{workspace.db_path}-wal").exists()
    assert _db_lock_held(workspace.db_path)
    assert f"{workspace.db_path}: is the workspace's database" in str(info.value)
    assert "import from elsewhere" in str(info.value)


@pytest.mark.parametrize("name", ["224p.mp4", LABEL_FILE, "games.zip"])
@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_links_to_the_database_are_refused_unopened(store, workspace, tmp_path, name, link):
    """Under any name, a link (symbolic or hard) to the database found in an import is refused
    before it is opened: the process keeps its SQLite locks."""
    folder = tmp_path / "src" / GAME
    folder.mkdir(parents=True)
    if name != LABEL_FILE:
        (folder / LABEL_FILE).write_text(json.dumps({"UrlLocal": GAME, "annotations": [annotation(3)]}))
    target = folder / name
    (os.symlink if link == "symlink" else os.link)(workspace.db_path, target)
    before = store.dump()
    with pytest.raises(InputError) as info:
        import_source(store, target if name.endswith(".zip") else tmp_path / "src", workspace=workspace)
    assert _db_lock_held(workspace.db_path), "the database was opened (and its locks dropped)"
    assert f"{target}: is the workspace's database" in str(info.value)
    assert store.dump() == before


def test_nothing_inside_the_workspace_is_imported_but_its_sources(store, workspace, tmp_path):
    inside = make_game(workspace.models_dir, GAME, [annotation(3)])
    for source in (workspace.root, workspace.models_dir, inside / LABEL_FILE):
        with pytest.raises(InputError, match="is inside the workspace .*; import from elsewhere"):
            import_source(store, source, workspace=workspace)
    assert store.games() == []
    make_game(workspace.sources_dir / "mine", GAME, [annotation(3)])  # where zips are unpacked: allowed
    import_source(store, workspace.sources_dir / "mine", workspace=workspace)
    assert [g["url_local"] for g in store.games()] == [GAME]


def test_export_never_writes_into_the_workspace_but_its_runs(store, workspace, game, tmp_path):
    (tmp_path / "out.zip").symlink_to(workspace.db_path)
    for out in (workspace.root / "labels", workspace.models_dir / "x.zip", workspace.db_path,
                tmp_path / "out.zip"):
        with pytest.raises(BallspotError, match="; export to elsewhere"):
            export(store, out)
    assert _db_lock_held(workspace.db_path) and store.integrity_check() == "ok"
    assert export(store, workspace.runs_dir / "labels") == [f"{GAME}/{LABEL_FILE}"]


# ----------------------------------------------------------------------------- 2. a game's video


def test_the_inode_is_stored_by_schema_2(game):
    assert game["video_inode"] == os.stat(game["video_path"]).st_ino


def test_an_untouched_video_opens_and_reads_as_the_file(game):
    path = Path(game["video_path"])
    with video.open_game_video(game) as f:
        assert f.read() == path.read_bytes()
        frames = video.read_frames(f, [0, 7, 39])  # read from an open file, from its start
        assert not f.closed, "read_frames closes only what it opened"
    by_path = video.read_frames(path, [0, 7, 39])
    assert all((frames[i] == by_path[i]).all() for i in (0, 7, 39))


def _swap_for_symlink_to_db(path: Path, workspace) -> None:
    path.unlink()
    path.symlink_to(workspace.db_path)


def _swap_for_hard_link_to_a_copy(path: Path, workspace) -> None:
    """Same bytes, same size, same time: only the inode tells it is another file."""
    st = path.stat()
    copy = path.with_name("copy.bin")
    copy.write_bytes(path.read_bytes())
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    path.unlink()
    os.link(copy, path)


def _swap_for_hard_link_to_db(path: Path, workspace) -> None:
    path.unlink()
    os.link(workspace.db_path, path)


def _swap_for_folder(path: Path, workspace) -> None:
    path.unlink()
    path.mkdir()


def _rewrite_same_size(path: Path, workspace) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    time.sleep(0.01)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("swap, why", [
    (_swap_for_symlink_to_db, "symbolic link"),
    (_swap_for_hard_link_to_a_copy, "another file"),
    (_swap_for_hard_link_to_db, "bytes, not the"),
    (_swap_for_folder, "folder"),
    (_rewrite_same_size, "modified"),
])
def test_a_changed_video_is_refused_unopened(workspace, game, swap, why):
    swap(Path(game["video_path"]), workspace)
    with pytest.raises(errors.VideoChangedError) as info:
        video.open_game_video(game)
    message = str(info.value)
    assert GAME in message and why in message and "re-import" in message
    assert _db_lock_held(workspace.db_path), "the database was opened (and its locks dropped)"


def test_a_database_from_before_schema_2_is_migrated_and_checked_without_inode(workspace, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=20)
    st = clip.stat()
    with sqlite3.connect(workspace.db_path) as conn:
        for sql in MIGRATIONS[0]:
            conn.execute(sql)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO games (url_local, video_path, size_bytes, video_mtime, created, updated) "
                     "VALUES (?, ?, ?, ?, 'then', 'then')", (GAME, str(clip), st.st_size, st.st_mtime))
    conn.close()
    with Store.open(workspace) as store:
        assert store.schema_version == SCHEMA_VERSION
        old = store.game(GAME)
        assert old["video_inode"] is None
        assert old["extra"] == {} and old["fully_reviewed"] is None  # schema 3 columns, empty
        # schema 4: an accept's label is found by its prediction through an index
        assert store.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'labels_prediction'"
                                  ).fetchone()
        with video.open_game_video(old) as f:
            assert f.read() == clip.read_bytes()
        clip.write_bytes(b"x")
        with pytest.raises(BallspotError, match=f"its size is 1 bytes, not the {st.st_size} imported"):
            video.open_game_video(old)


# ----------------------------------------------------------------------------- 3. truncated videos


def _faststart(src: Path, dst: Path) -> Path:
    """``src`` remuxed with its index (moov) in front, as web videos are: cut short, it still
    opens and declares its whole length."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        for packet in inp.demux(s_in):
            if packet.dts is None:
                continue
            packet.stream = s_out
            out.mux(packet)
    return dst


def test_a_truncated_video_is_used_for_what_decodes_with_a_warning(store, workspace, tmp_path):
    whole = _faststart(make_video(tmp_path / "raw.mp4", frames=250), tmp_path / "whole.mp4")
    assert video.probe(whole).frame_count == 250
    folder = make_game(tmp_path / "src", GAME, [annotation(3)])
    data = whole.read_bytes()
    (folder / "224p.mp4").write_bytes(data[: len(data) * 3 // 10])
    report = import_source(store, tmp_path / "src", workspace=workspace)
    g = store.game(GAME)
    assert 10 < g["frame_count"] < 150, g["frame_count"]
    assert abs(g["duration_s"] - g["frame_count"] / 25) < 1e-6
    truncated = [w for w in report.warnings if "truncated" in w.message]
    assert len(truncated) == 1 and truncated[0].file == g["video_path"]
    assert "declares 10.00 s" in truncated[0].message
    # Every frame it claims decodes, up to the last.
    last = g["frame_count"] - 1
    assert set(video.read_frames(g["video_path"], [0, last - 1, last])) == {0, last - 1, last}
    # A label past what decodes is refused, and the error says why the video is short.
    folder2 = make_game(tmp_path / "v3", OTHER, [annotation(200)])
    (folder2 / "224p.mp4").write_bytes(data[: len(data) * 3 // 10])
    with pytest.raises(InputError, match=r"(?s)past the end of the video.*truncated: its header declares"):
        import_source(store, tmp_path / "v3", workspace=workspace)


# ----------------------------------------------------------------------------- 4. zips


def _zeros_bomb(path: Path, gib: int = 1) -> Path:
    """A real zip of one entry of ``gib`` GiB of zeros in about 1 MB, built in a blink: a
    deflate stream fully flushed after each MiB compresses every MiB to the same bytes."""
    mib = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    n = 1024 * gib
    data = block * n + c.flush()
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(mib, crc)
    name = f"{GAME}/224p.mp4".encode()
    size = n << 20
    local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0)
    central = struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 8, 0, 0x21, crc, len(data), size,
                          len(name), 0, 0, 0, 0, 0o100644 << 16, 0)
    cd_offset = len(local) + len(name) + len(data)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), cd_offset, 0)
    path.write_bytes(local + name + data + central + name + end)
    return path


def _zip(path: Path, entries: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _labels(url: str = GAME, n: int = 1) -> str:
    return json.dumps({"UrlLocal": url, "annotations": [annotation(i) for i in range(n)]})


def _refused_zip(store, workspace, zpath: Path, *fragments: str) -> InputError:
    before = store.dump()
    with pytest.raises(InputError) as info:
        import_source(store, zpath, workspace=workspace)
    for fragment in (str(zpath), *fragments):
        assert fragment in str(info.value), f"{fragment!r} not in {info.value}"
    assert store.dump() == before
    assert not any(workspace.sources_dir.iterdir()), "a refused zip left files in sources/"
    return info.value


def test_a_zip_bomb_is_refused_at_once(store, workspace, tmp_path):
    bomb = _zeros_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 1.2e6
    with zipfile.ZipFile(bomb) as zf:
        assert zf.infolist()[0].file_size == 1 << 30
        with zf.open(zf.infolist()[0]) as f:
            assert f.read(1 << 20) == bytes(1 << 20)  # a real one: it would unpack
    start = time.monotonic()
    _refused_zip(store, workspace, bomb, f"{GAME}/224p.mp4", "zip bomb")
    assert time.monotonic() - start < 5


def test_a_zip_over_the_total_size_is_refused(store, workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_UNPACKED_BYTES", 3000)
    zpath = _zip(tmp_path / "big.zip", {f"{GAME}/{LABEL_FILE}": _labels(), f"{GAME}/224p.mp4": os.urandom(4000)})
    _refused_zip(store, workspace, zpath, "more than the 3000")


def test_a_high_ratio_entry_is_refused(store, workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_RATIO_FROM_BYTES", 10_000)
    zpath = _zip(tmp_path / "ratio.zip", {f"{GAME}/{LABEL_FILE}": _labels(), f"{GAME}/224p.mp4": bytes(100_000)})
    _refused_zip(store, workspace, zpath, f"{GAME}/224p.mp4", "more than 200 times")


def test_too_many_entries_are_refused(store, workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_ENTRIES", 3)
    zpath = _zip(tmp_path / "many.zip", {f"{GAME}/{i}.txt": "x" for i in range(4)})
    _refused_zip(store, workspace, zpath, "4 entries, more than the 3")


def test_an_overlong_name_is_refused(store, workspace, tmp_path):
    long = "é" * 128  # 256 bytes in UTF-8
    zpath = _zip(tmp_path / "long.zip", {f"{GAME}/{LABEL_FILE}": _labels(), f"{GAME}/{long}.txt": "x"})
    _refused_zip(store, workspace, zpath, "longer than 255 bytes")


def test_duplicate_entries_are_refused(store, workspace, tmp_path):
    zpath = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(f"{GAME}/{LABEL_FILE}", _labels(n=1))
        zf.writestr(f"{GAME}/{LABEL_FILE}", _labels(n=2))
    _refused_zip(store, workspace, zpath, f"{GAME}/{LABEL_FILE}", "two entries of this name")


def test_overlapping_entries_are_refused(store, workspace, tmp_path):
    """The overlapping-files bomb: many directory entries pointing at one compressed block."""
    zpath = _zip(tmp_path / "overlap.zip", {f"{GAME}/{LABEL_FILE}": _labels(), f"{OTHER}/{LABEL_FILE}": _labels(OTHER)})
    data = bytearray(zpath.read_bytes())
    second = data.rindex(b"PK\x01\x02")
    data[second + 42: second + 46] = struct.pack("<L", 0)  # its local header offset: the first entry's
    zpath.write_bytes(bytes(data))
    _refused_zip(store, workspace, zpath, f"{GAME}/{LABEL_FILE}: its data overlaps entry '{OTHER}/{LABEL_FILE}'")


def test_unpacking_counts_real_bytes(tmp_path):
    """The sizes a zip declares are not trusted: the copy counts what comes out."""
    class Liar:
        def __init__(self):
            self.left = 3

        def read(self, n):
            self.left -= 1
            return b"x" * 100 if self.left >= 0 else b""

    info = zipfile.ZipInfo("a.bin")
    info.file_size = 150
    with open(tmp_path / "a.bin", "wb") as out, pytest.raises(InputError, match="more than the size it declares"):
        ingest._copy_counted(Liar(), out, tmp_path / "z.zip", info, 10_000)


def test_a_failed_import_removes_what_it_unpacked_but_not_an_earlier_one(store, workspace, tmp_path):
    bad = _zip(tmp_path / "bad.zip", {f"{GAME}/{LABEL_FILE}": json.dumps({"annotations": [annotation(3, "NOPE")]})})
    _refused_zip(store, workspace, bad, f"bad.zip: {GAME}/{LABEL_FILE}: annotations[0]", "unknown label 'NOPE'")
    empty = _zip(tmp_path / "empty.zip", {"readme.txt": "nothing here"})
    _refused_zip(store, workspace, empty, "no game found")
    good = _zip(tmp_path / "good.zip", {f"{GAME}/{LABEL_FILE}": _labels()})
    import_source(store, good, workspace=workspace)
    kept = list(workspace.sources_dir.iterdir())
    assert len(kept) == 1
    again = _zip(tmp_path / "again.zip", {f"{GAME}/{LABEL_FILE}": _labels()})
    from core.errors import ConflictError
    with pytest.raises(ConflictError):
        import_source(store, again, workspace=workspace)  # a conflict: its folder goes
    with pytest.raises(ConflictError):
        import_source(store, good, workspace=workspace)  # the earlier import's folder stays
    assert list(workspace.sources_dir.iterdir()) == kept


def test_a_label_file_with_too_many_annotations_is_refused(store, workspace, tmp_path):
    items = [annotation(i) for i in range(formats.MAX_ANNOTATIONS + 1)]
    folder = make_game(tmp_path / "src", GAME, items)
    with pytest.raises(InputError, match=r"annotations: 20001 entries, more than the 20000") as info:
        import_source(store, tmp_path / "src", workspace=workspace)
    assert str(folder / LABEL_FILE) in str(info.value)


# ----------------------------------------------------------------------------- 5. large imports


@pytest.mark.slow
def test_a_large_import_does_not_hold_up_an_edit(store, workspace, tmp_path):
    """20 games of 5,000 labels import while another thread edits: each edit waits for one
    game's write at most, never for the whole import (which used to be one transaction)."""
    for g in range(20):
        items = [annotation(i, "PASS" if i % 2 else "DRIVE", "home" if i % 3 else "away") for i in range(5000)]
        make_game(tmp_path / "src", f"league_y/2024-2025/game {g:02d}", items)
    make_game(tmp_path / "one", GAME, [annotation(1)])
    import_source(store, tmp_path / "one", workspace=workspace)
    waits: list[float] = []
    done = threading.Event()
    failed: list[BaseException] = []

    def run_import() -> None:
        try:
            import_source(store, tmp_path / "src", workspace=workspace)
        except BaseException as exc:  # handed to the test
            failed.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=run_import)
    worker.start()
    frame = 10
    while not done.is_set():
        start = time.perf_counter()
        store.add_label(GAME, frame, "SHOT", "away")
        waits.append(time.perf_counter() - start)
        frame += 1
        time.sleep(0.01)
    worker.join()
    assert not failed
    assert sum(len(store.labels(g["id"])) for g in store.games()) == 100_001 + len(waits)
    kinds = [kind for (kind,) in store.conn.execute("SELECT kind FROM actions ORDER BY id")][1:]
    imports = [i for i, k in enumerate(kinds) if k == "import"]
    assert len(imports) == 20, "one import action per game (undo's barrier)"
    edits_during = [i for i, k in enumerate(kinds) if k == "add" and imports[0] < i < imports[-1]]
    assert edits_during, "no edit got through while the import was writing"
    assert max(waits) < 1.0, f"an edit waited {max(waits):.2f} s"


# ----------------------------------------------------------------------------- 6. bad values


@pytest.mark.parametrize("value, why", [
    ("league/season/game\x00x", "U+0000"),
    ("league/season/ga\nme", "U+000A"),
    ("league/season/ga\tme", "U+0009"),
    ("league/season/\u202egame", "U+202E"),
    ("league/season/\u2066game\u2069", "U+2066"),
    ("league/season/game\u200f", "U+200F"),
    ("league/season/" + "g" * 256, "longer than 255 bytes"),
    ("league/season/" + "é" * 128, "longer than 255 bytes"),
    ("/league/season/game", "absolute path"),
    ("C:/league/season/game", "absolute path"),
    ("league\\season\\game", "backslash"),
    ("/".join(["abcdefghij" * 10] * 11), "more than 1024"),
])
def test_hostile_url_local_is_refused(value, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        formats.check_url_local(value)


def test_a_hostile_url_local_in_a_label_file_is_refused(store, workspace, tmp_path):
    path = tmp_path / "up.json"
    path.write_text(json.dumps({"UrlLocal": "a/b/\u202egame", "annotations": [annotation(1)]}))
    with pytest.raises(InputError, match=r"up.json: UrlLocal: .*U\+202E"):
        import_source(store, path, workspace=workspace)
    # As some SoccerNet files write it (a trailing slash): kept, without the slash.
    path.write_text(json.dumps({"UrlLocal": f" {GAME}/ ", "annotations": [annotation(1)]}))
    import_source(store, path, workspace=workspace)
    assert [g["url_local"] for g in store.games()] == [GAME]


def test_export_refuses_a_stored_hostile_url_local(store, tmp_path):
    store.bulk_import([GameImport("a/b/ga\u202eme", None, annotations=[])])
    with pytest.raises(BallspotError, match="UrlLocal .*U\\+202E"):
        export(store, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_upload_must_name_its_game_and_gets_no_video(store, workspace, tmp_path):
    folder = make_game(tmp_path / "src", GAME, [annotation(3)], video_frames=40)
    nameless = json.loads((folder / LABEL_FILE).read_text())
    del nameless["UrlLocal"]
    up = tmp_path / "up" / GAME
    up.mkdir(parents=True)
    (up / LABEL_FILE).write_text(json.dumps(nameless))
    make_video(up / "224p.mp4", frames=40)
    with pytest.raises(InputError, match=r"Labels-ball.json: UrlLocal: missing"):
        import_source(store, up / LABEL_FILE, workspace=workspace, upload=True)
    assert store.games() == []
    import_source(store, folder / LABEL_FILE, workspace=workspace, upload=True)
    assert store.game(GAME)["video_path"] is None, "no video is looked for beside an upload"
    with pytest.raises(InputError, match="an upload must be a .zip or a .json"):
        import_source(store, folder / "224p.mp4", workspace=workspace, upload=True)


def test_a_label_file_in_gradios_upload_folder_is_an_upload(store, workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    up = tmp_path / "gradio" / ("ab12" * 16)
    up.mkdir(parents=True)
    (up / LABEL_FILE).write_text(json.dumps({"annotations": [annotation(3)]}))
    with pytest.raises(InputError, match=r"UrlLocal: missing"):
        import_source(store, up / LABEL_FILE, workspace=workspace)
    assert store.games() == []


@pytest.mark.parametrize("frame, why", [
    (2**63, "more than 24 hours"),
    (2**64 + 5, "more than 24 hours"),
    (24 * 3600 * 25 + 1, "more than 24 hours"),
])
def test_frames_out_of_range_are_refused_clearly(store, workspace, tmp_path, frame, why):
    make_game(tmp_path / "src", GAME, [annotation(3)])  # no video: only the 24-hour limit applies
    import_source(store, tmp_path / "src", workspace=workspace)
    before = store.dump()
    with pytest.raises(BallspotError, match=why):
        store.add_label(GAME, frame, "PASS")
    lab = store.labels(GAME)[0]
    with pytest.raises(BallspotError, match=why):
        store.update_label(lab["id"], lab["revision"], frame=frame)
    assert store.dump() == before
    assert store.add_label(GAME, 24 * 3600 * 25, "PASS")["frame"] == 24 * 3600 * 25  # 24 h exactly: kept
