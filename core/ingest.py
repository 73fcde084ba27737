"""Import SoccerNet games into a workspace: a tree, one game folder, or a ``.zip`` of a tree.

Everything is read and checked first (label files parsed, videos probed, zip entries
vetted); only then is the import written, one transaction per game. Any problem anywhere
means nothing is stored, and the error lists every problem with its file and entry.

Every path a user gives, and every file found under it, passes ``Workspace.guard`` before it
is opened: opening (and closing) the workspace's own database would drop this process's
SQLite locks on it, and lose edits (see ``Workspace.guard``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.errors import BallspotError, InputError, Problem
from core.formats import MAX_NAME_BYTES, check_url_local, parse_labels
from core.labels import LABEL_FILE, frame_to_ms
from core.progress import Progress, Step, quiet
from core.splits import split_of
from core.store import GameImport, ImportResult, Store
from core.video import VideoInfo, find_videos, probe
from core.workspace import Workspace



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
    if declared:
        return declared
    names = folder.resolve().parts[1:]  # never the root "/" of a shallow folder: an id is relative
    return check_url_local("/".join(names[-3:]))


def _upload_folder(folder: Path) -> bool:
    """Whether ``folder`` holds uploads rather than a game: gradio's upload folder
    (``GRADIO_TEMP_DIR``, else ``<temp>/gradio``, as gradio itself decides) or the system temp
    folder itself. A label file there names no game by where it lies."""
    real = Path(os.path.realpath(folder))
    temp = Path(os.path.realpath(tempfile.gettempdir()))
    uploads = Path(os.path.realpath(os.environ.get("GRADIO_TEMP_DIR") or temp / "gradio"))
    return real == temp or real == uploads or uploads in real.parents


def read_game(folder: Path, *, workspace: Workspace, split: str | None = None,
              label_path: Path | None = None) -> tuple[GameImport, list[Problem]]:
    """Parse and probe one game folder; raise :class:`InputError` with every problem found.

    ``label_path`` names a label file outside its game folder (an upload): it must then say
    its ``UrlLocal``, and no video is looked for. Every file passes ``workspace.guard``
    before it is opened. A video cut short of its declared length is used for what decodes,
    with a warning.
    """
    problems: list[Problem] = []
    video: VideoInfo | None = None
    loose = label_path is not None
    for path in [] if loose else find_videos(folder):
        try:
            info = probe(workspace.guard(path))
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if video is None or info.height > video.height:
            video = info
    truncated = [] if video is None or video.declared_s is None else [Problem(
        video.path, "", f"truncated: its header declares {video.declared_s:.2f} s but frames decode only to "
        f"{video.duration_s:.2f} s; the game is that long (copy the whole file and re-import to get the rest)")]
    label_path = label_path or folder / LABEL_FILE
    parsed = None
    if label_path.is_file():
        try:
            text = workspace.guard(label_path).read_bytes()
            parsed = parse_labels(text, str(label_path), duration_ms=video.duration_s * 1000 if video else None)
        except OSError as exc:
            problems.append(Problem(str(label_path), "", f"cannot read: {exc.strerror}"))
        except InputError as exc:
            problems.extend(exc.problems + truncated)  # labels past a truncated video's end: say why
    if parsed is not None and loose and not parsed.url_local:
        problems.append(Problem(str(label_path), "UrlLocal",
                                "missing: a label file outside its league/season/game folder (an upload) "
                                "must name its game"))
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
        extra=parsed.extra if parsed else {},
    )
    return game, truncated + (parsed.warnings if parsed else [])


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

# Caps on what one zip may unpack to. Module attributes, so a test can lower them. A zip may
# hold a season's videos (a 720p match is about 1.5 GB), hence the generous total; a label
# file or a video compresses by a few times at most, so a far higher ratio is a zip bomb.

#: Total bytes one zip may unpack to.
MAX_UNPACKED_BYTES = 4 << 30
#: Largest compression ratio (unpacked / packed) of an entry larger than MAX_RATIO_FROM_BYTES.
MAX_RATIO = 200
#: Entries up to this size may have any ratio (a small file of zeros is no threat).
MAX_RATIO_FROM_BYTES = 1 << 20
#: Most entries in one zip (a season is a few hundred games of a few files each).
MAX_ENTRIES = 20_000

#: A zip's local file header: signature, versions, flags, method, time, date, CRC, sizes,
#: name length, extra length (APPNOTE 4.3.7); the name and extra field follow it.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


def _entry_problems(path: Path, zf: zipfile.ZipFile) -> list[Problem]:
    """What is wrong with a zip's entries, checked from its directory before anything is
    unpacked: names that escape or are too long or twice there, links, a bomb's sizes."""
    where = str(path)
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        return [Problem(where, "", f"{len(infos)} entries, more than the {MAX_ENTRIES} a zip may have")]
    problems: list[Problem] = []
    names: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
            problems.append(Problem(where, name, "entry escapes the zip's folder; refusing the whole zip"))
        elif stat.S_ISLNK(info.external_attr >> 16):
            problems.append(Problem(where, name, "entry is a symbolic link; refusing the whole zip"))
        elif any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in pure.parts):
            problems.append(Problem(where, name, f"a name in the entry's path is longer than {MAX_NAME_BYTES} bytes"))
        elif pure.as_posix() in names:
            problems.append(Problem(where, name, "the zip has two entries of this name; refusing the whole zip"))
        elif info.file_size > MAX_RATIO_FROM_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            problems.append(Problem(where, name, f"unpacks {info.file_size} bytes from {info.compress_size} "
                                    f"(more than {MAX_RATIO} times): a zip bomb? refusing the whole zip"))
        names.add(pure.as_posix())
        total += info.file_size
    if total > MAX_UNPACKED_BYTES:
        problems.append(Problem(where, "", f"unpacks to {total} bytes, more than the {MAX_UNPACKED_BYTES} "
                                "a zip may (split it, or import the folder)"))
    return problems + _overlaps(path, zf)


def _overlaps(path: Path, zf: zipfile.ZipFile) -> list[Problem]:
    """Entries whose data overlap (the 'overlapping files' zip bomb: many entries pointing at
    one compressed block; this Python's zipfile predates CPython's own check). Each entry's
    local header, name, extra field and data must end before the next entry's header and the
    zip's directory begin; the local header is read for its real name and extra lengths."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    problems = []
    for info, following in zip(infos, [*infos[1:], None]):
        bound = following.header_offset if following else zf.start_dir
        try:
            zf.fp.seek(info.header_offset)
            header = zf.fp.read(_LOCAL_HEADER.size)
        except OSError as exc:
            return [Problem(str(path), info.filename, f"cannot read: {exc.strerror}")]
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            problems.append(Problem(str(path), info.filename, "no local header where the directory says"))
            continue
        *_, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        end = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
        if end > bound:
            other = f"entry {following.filename!r}" if following else "the zip's directory"
            problems.append(Problem(str(path), info.filename, f"its data overlaps {other} "
                                    "(an overlapping-files zip bomb?); refusing the whole zip"))
    return problems


def _encrypted(path: Path, zf: zipfile.ZipFile) -> list[Problem]:
    """Encrypted entries, as one problem saying what to do: the split zips of SoccerNet's 2025
    release are locked with the password it sends once its NDA is signed (AES, as far as we
    know, which Python's zipfile cannot unpack), so the user unpacks them with that password."""
    locked = [info.filename for info in zf.infolist() if info.flag_bits & 0x1]
    if not locked:
        return []
    return [Problem(str(path), locked[0], f"{len(locked)} of its {len(zf.infolist())} entries are encrypted "
                    "(SoccerNet locks its zips with the password it sends once its NDA is signed): unpack it with "
                    f"that password, e.g. `7z x \"{path.name}\" -oFOLDER`, then import FOLDER")]


def _check_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip and refuse it if any entry would land outside its folder, is a link, or
    breaks a cap (see ``_entry_problems``)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(Problem(str(path), "", f"not a readable zip file ({exc})")) from None
    problems = _entry_problems(path, zf) + _encrypted(path, zf)
    if problems:
        zf.close()
        raise InputError(problems)
    return zf


def unpacked_folder(zip_path: Path, dest_root: Path) -> Path:
    """Where ``unpack`` puts a zip: its name depends on the zip's name, size and time, so
    importing the same zip again reuses it, and videos inside stay where the store points."""
    zip_path = zip_path.resolve()
    st = zip_path.stat()
    key = hashlib.sha1(f"{zip_path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return dest_root / f"{zip_path.stem}-{key}"


def _copy_counted(src, out, zip_path: Path, info: zipfile.ZipInfo, budget: int) -> int:
    """Copy one entry, counting the bytes that really come out (never trusting the sizes the
    zip declares): more than its declared size, or than what is left of the budget, stops it."""
    n = 0
    while chunk := src.read(1 << 20):
        n += len(chunk)
        if n > info.file_size:
            raise InputError(Problem(str(zip_path), info.filename, "unpacks to more than the size it declares"))
        if n > budget:
            raise InputError(Problem(str(zip_path), info.filename,
                                     f"the zip unpacks to more than {MAX_UNPACKED_BYTES} bytes"))
        out.write(chunk)
    return n


def unpack(zip_path: Path, dest_root: Path) -> Path:
    """Unpack a vetted zip once into ``unpacked_folder(zip_path, dest_root)`` and return it."""
    zip_path = zip_path.resolve()
    dest = unpacked_folder(zip_path, dest_root)
    done = dest / ".unpacked"
    if done.exists():
        return dest
    with _check_zip(zip_path) as zf:
        tmp = dest_root / f".{dest.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        budget = MAX_UNPACKED_BYTES
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
                    with zf.open(info) as src, open(target, "xb") as out:
                        budget -= _copy_counted(src, out, zip_path, info, budget)
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


def _as_zip_entry(problem: Problem, folder: Path, zip_path: Path) -> Problem:
    """A problem of a file unpacked from ``zip_path`` into ``folder``, named as the zip's entry."""
    try:
        rel = Path(problem.file).relative_to(folder)
    except ValueError:
        return problem
    return Problem(f"{zip_path}: {rel.as_posix()}", problem.entry, problem.message)


def _in_use(store: Store, folder: Path) -> bool:
    """Whether a game in the store reads its labels or video from inside ``folder``."""
    folder = folder.resolve()
    return any(folder in Path(p).parents for g in store.games()
               for p in (g["video_path"], g["label_path"]) if p)


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
    upload: bool = False,
) -> ImportReport:
    """Import a SoccerNet tree, one game folder, or a zip of either into ``store``.

    All games are read and validated first; then they are written, one transaction per game
    (see ``Store.bulk_import``). ``source`` and every file under it pass ``workspace.guard``
    before they are opened.

    ``upload``: ``source`` is a file a user uploaded (the app says so): a ``.zip``, or a label
    file of any name, which must then declare its ``UrlLocal``; no video is looked for beside
    it. A ``Labels-ball.json`` lying in an upload folder (gradio's, the temp folder) is taken
    as an upload even without the flag, so that it never becomes a game named after that
    folder (``tmp/gradio/<hash>``).

    A zip is unpacked under ``sources/``; if the import then fails at any stage, that folder
    is removed again, unless it was there before (an earlier import uses it).
    """
    src = Path(source).expanduser()
    workspace.guard(src)
    say = progress or quiet
    fresh: Path | None = None  # a folder this import unpacked: removed again if it fails
    if src.is_file() and zipfile.is_zipfile(src):
        say(Step(0, 1, f"unpacking {src.name}"))
        sources = workspace.ensure().sources_dir
        dest = unpacked_folder(src, sources)
        fresh = None if (dest / ".unpacked").exists() else dest
        root = unpack(src, sources)
    elif src.is_file() and src.suffix.lower() == ".zip":
        raise InputError(Problem(str(src), "", "not a readable zip file"))
    elif upload and not (src.is_file() and src.suffix.lower() == ".json"):
        raise InputError(Problem(str(src), "", "an upload must be a .zip or a .json label file"))
    else:
        root = src
    try:
        try:
            games, warnings = _read_games(store, src, root, workspace, split, upload, say)
        except InputError as exc:
            if fresh is None:
                raise
            # Named as the zip's entries: the unpacked copies are about to be removed.
            raise InputError([_as_zip_entry(p, root, src) for p in exc.problems]) from None
        say(Step(len(games), len(games), f"writing {len(games)} game(s) to {store.path.name}"))
        result = store.bulk_import(games, replace=replace, author=author)
    except BaseException:
        if fresh is not None and not _in_use(store, fresh):
            shutil.rmtree(fresh, ignore_errors=True)
        raise
    return ImportReport(str(src), games, result, warnings)


def _read_games(store: Store, src: Path, root: Path, workspace: Workspace, split: str | None,
                upload: bool, say: Progress) -> tuple[list[GameImport], list[Problem]]:
    """Read and check every game of an import; raise :class:`InputError` listing every problem."""
    if src.is_file() and src.suffix.lower() == ".json" and (
            upload or src.name != LABEL_FILE or _upload_folder(src.parent)):
        # A label file outside its game folder (an upload, any name): named by its UrlLocal.
        game, notes = read_game(src.parent, workspace=workspace, split=split, label_path=src)
        problems = _past_stored_video(store, game)
        if problems:
            raise InputError(problems)
        return [game], notes
    if src.is_file() and src.name == LABEL_FILE:
        root = src.parent  # a game folder named by its label file: its video is used too
    folders = discover(root)
    if not folders:
        raise InputError(Problem(str(src), "", f"no game found (no {LABEL_FILE} or video in any folder)"))
    games: list[GameImport] = []
    problems: list[Problem] = []
    warnings: list[Problem] = []
    seen: dict[str, Path] = {}
    for i, folder in enumerate(folders):
        say(Step(i, len(folders), f"reading {folder.name}"))
        try:
            game, notes = read_game(folder, workspace=workspace, split=split)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if game.url_local in seen:
            problems.append(Problem(str(folder), "UrlLocal",
                                    f"{game.url_local!r} also comes from {seen[game.url_local]}"))
            continue
        seen[game.url_local] = folder
        problems.extend(_past_stored_video(store, game))
        games.append(game)
        warnings.extend(notes)
    if problems:
        raise InputError(problems)
    return games, warnings
