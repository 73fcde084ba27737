"""Import SoccerNet games into a workspace: a tree, one game folder, or a ``.zip`` of a tree.

Everything is read and checked first (label files parsed, videos probed, zip entries
vetted); only then is the whole import written in one transaction. Any problem anywhere
means nothing is stored, and the error lists every problem with its file and entry.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from core.errors import BallspotError, InputError, Problem
from core.formats import check_url_local, parse_labels
from core.labels import LABEL_FILE, frame_to_ms
from core.splits import split_of
from core.store import GameImport, ImportResult, Store
from core.video import VideoInfo, find_videos, probe
from core.workspace import Workspace

#: ``progress(done, total, message)``: the CLI draws it with tqdm, the UI with its progress bar.
Progress = Callable[[int, int, str], None]


@dataclass
class ImportReport:
    """What an import did, for the CLI's summary and the UI's log."""

    source: str
    games: list[GameImport]
    result: ImportResult
    warnings: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        r = self.result
        lines = [
            f"Imported {len(self.games)} game(s) from {self.source}: {r.games_added} new, "
            f"{r.games_replaced} replaced; {r.labels} labels"
            + (f" ({r.labels_replaced} old labels replaced, kept in history)" if r.labels_replaced else "")
            + f"; {r.videos} video(s) referenced in place."
        ]
        for g in self.games:
            n = "no label file" if g.annotations is None else f"{len(g.annotations)} labels"
            video = f"{g.video.height}p {g.video.duration_s / 60:.1f} min" if g.video else "no video"
            lines.append(f"  {g.url_local} [{g.split or 'no split'}]: {n}, {video}")
        lines += [f"  warning: {w}" for w in self.warnings[:20]]
        if len(self.warnings) > 20:
            lines.append(f"  ... and {len(self.warnings) - 20} more warnings")
        return "\n".join(lines)


def _ignored(name: str) -> bool:
    """Hidden files and the resource forks macOS puts in zips (``__MACOSX/``, ``._720p.mp4``)."""
    return name.startswith(".") or name == "__MACOSX"


def _is_game_folder(folder: Path) -> bool:
    return (folder / LABEL_FILE).is_file() or bool(find_videos(folder))


def discover(root: Path) -> list[Path]:
    """Game folders under ``root`` (or ``root`` itself): folders with a label file or a video.

    Symbolic links to folders are followed (datasets are often linked in from a shared disk);
    a folder reached twice, e.g. through a link back up the tree, is visited once."""
    if not root.exists():
        raise InputError(Problem(str(root), "", "no such file or folder"))
    if not root.is_dir():
        raise InputError(Problem(str(root), "", "expected a folder or a .zip"))
    found = []
    visited: set[str] = set()
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        folder = Path(dirpath)
        if _is_game_folder(folder):
            found.append(folder)
    return found


def _url_local(folder: Path, declared: str | None) -> str:
    """The game's SoccerNet id: what its label file says, else ``league/season/game`` from its path."""
    return declared or check_url_local("/".join(folder.resolve().parts[-3:]))


def read_game(folder: Path, *, split: str | None = None,
              label_path: Path | None = None) -> tuple[GameImport, list[Problem]]:
    """Parse and probe one game folder; raise :class:`InputError` with every problem found.

    ``label_path`` names a label file outside its game folder (an upload): it must then say
    its ``UrlLocal``, and no video is looked for.
    """
    problems: list[Problem] = []
    video: VideoInfo | None = None
    loose = label_path is not None
    for path in [] if loose else find_videos(folder):
        try:
            info = probe(path)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if video is None or info.height > video.height:
            video = info
    label_path = label_path or folder / LABEL_FILE
    parsed = None
    if label_path.is_file():
        try:
            text = label_path.read_bytes()
            parsed = parse_labels(text, str(label_path), duration_ms=video.duration_s * 1000 if video else None)
        except OSError as exc:
            problems.append(Problem(str(label_path), "", f"cannot read: {exc.strerror}"))
        except InputError as exc:
            problems.extend(exc.problems)
    if parsed is not None and loose and not parsed.url_local:
        problems.append(Problem(str(label_path), "UrlLocal",
                                "missing: a label file outside its league/season/game folder must name its game"))
    if problems:
        raise InputError(problems)
    try:
        url_local = _url_local(folder, parsed.url_local if parsed else None)
    except ValueError as exc:
        raise InputError(Problem(str(folder), "folder name", str(exc))) from None
    game = GameImport(
        url_local=url_local,
        split=split_of(url_local) or split,
        url_youtube=parsed.url_youtube if parsed else "",
        label_path=str(label_path.resolve()) if parsed else None,
        annotations=parsed.annotations if parsed else None,
        video=video,
    )
    return game, (parsed.warnings if parsed else [])


def _past_stored_video(store: Store, game: GameImport) -> list[Problem]:
    """A labels-only re-import is still checked against the video the store already has."""
    if game.video is not None or not game.annotations:
        return []
    try:
        duration = store.game(game.url_local)["duration_s"]
    except BallspotError:
        return []
    if not duration:
        return []
    return [
        Problem(game.label_path or game.url_local, f"label {a.label} at frame {a.frame}",
                f"position {frame_to_ms(a.frame)} ms is past the end of the video ({duration:.2f} s)")
        for a in game.annotations if frame_to_ms(a.frame) >= duration * 1000
    ]


# --------------------------------------------------------------------------- zips


def _check_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip and refuse any entry that would land outside its folder or is a link."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(Problem(str(path), "", f"not a readable zip file ({exc})")) from None
    problems = []
    for info in zf.infolist():
        name = info.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
            problems.append(Problem(str(path), name, "entry escapes the zip's folder; refusing the whole zip"))
        elif stat.S_ISLNK(info.external_attr >> 16):
            problems.append(Problem(str(path), name, "entry is a symbolic link; refusing the whole zip"))
    if problems:
        zf.close()
        raise InputError(problems)
    return zf


def unpack(zip_path: Path, dest_root: Path) -> Path:
    """Unpack a vetted zip once into ``dest_root/<name>-<id>/`` and return that folder.

    The folder's name depends on the zip's name, size and time, so importing the same zip
    again reuses it, and videos inside stay where the store points.
    """
    zip_path = zip_path.resolve()
    st = zip_path.stat()
    key = hashlib.sha1(f"{zip_path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:10]
    dest = dest_root / f"{zip_path.stem}-{key}"
    done = dest / ".unpacked"
    if done.exists():
        return dest
    with _check_zip(zip_path) as zf:
        tmp = dest_root / f".{dest.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for info in zf.infolist():
                target = (tmp / info.filename).resolve()
                if tmp.resolve() not in target.parents and target != tmp.resolve():
                    raise InputError(Problem(str(zip_path), info.filename, "entry escapes the zip's folder"))
                try:
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
                    # A corrupt or encrypted entry, a name the file system refuses, a file where a folder is.
                    reason = getattr(exc, "strerror", None) or str(exc)
                    raise InputError(Problem(str(zip_path), info.filename, f"cannot unpack: {reason}")) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    done.touch()
    return dest


# --------------------------------------------------------------------------- import


def import_source(
    store: Store,
    source: str | Path,
    *,
    workspace: Workspace,
    split: str | None = None,
    replace: bool = False,
    author: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a SoccerNet tree, one game folder, or a zip of either into ``store``.

    All games are read and validated first; then one transaction writes them all.
    """
    src = Path(source).expanduser()
    say = progress or (lambda _done, _total, _msg: None)
    if src.is_file() and zipfile.is_zipfile(src):
        say(0, 1, f"unpacking {src.name}")
        root = unpack(src, workspace.ensure().sources_dir)
    elif src.is_file() and src.suffix.lower() == ".zip":
        raise InputError(Problem(str(src), "", "not a readable zip file"))
    elif src.is_file() and src.name == LABEL_FILE:
        root = src.parent  # a game folder named by its label file: its video is used too
    elif src.is_file() and src.suffix.lower() == ".json":
        game, notes = read_game(src.parent, split=split, label_path=src)
        problems = _past_stored_video(store, game)
        if problems:
            raise InputError(problems)
        say(1, 1, f"writing 1 game to {store.path.name}")
        return ImportReport(str(src), [game], store.bulk_import([game], replace=replace, author=author), notes)
    else:
        root = src
    folders = discover(root)
    if not folders:
        raise InputError(Problem(str(src), "", f"no game found (no {LABEL_FILE} or video in any folder)"))
    games: list[GameImport] = []
    problems: list[Problem] = []
    warnings: list[Problem] = []
    seen: dict[str, Path] = {}
    for i, folder in enumerate(folders, 1):
        say(i - 1, len(folders), f"reading {folder.name}")
        try:
            game, notes = read_game(folder, split=split)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if game.url_local in seen:
            problems.append(Problem(str(folder), "UrlLocal", f"{game.url_local!r} also comes from {seen[game.url_local]}"))
            continue
        seen[game.url_local] = folder
        problems.extend(_past_stored_video(store, game))
        games.append(game)
        warnings.extend(notes)
    if problems:
        raise InputError(problems)
    say(len(folders), len(folders), f"writing {len(games)} game(s) to {store.path.name}")
    result = store.bulk_import(games, replace=replace, author=author)
    return ImportReport(str(src), games, result, warnings)
