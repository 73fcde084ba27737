"""SoccerNet's JSON formats: ``Labels-ball.json`` in, ``Labels-ball.json`` and
``results_spotting.json`` out.

Parsing validates every entry and collects every problem (file + entry + what) before
anything is stored, so one bad line never leaves a half-imported game behind.
"""
from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable

from core.errors import BallspotError, InputError, Problem
from core.labels import (
    CLASSES,
    DEFAULT_VISIBILITY,
    MS_PER_FRAME,
    TEAM_MODES,
    TEAMS,
    VISIBILITIES,
    frame_to_ms,
    game_time,
    ms_to_frame,
    parse_game_time,
    team_vocabulary,
)

#: Keys of an annotation that the store models as columns; any others are kept verbatim.
_KNOWN_KEYS = {"gameTime", "label", "position", "team", "visibility"}
_REQUIRED_KEYS = ("position", "label", "team")
#: Keys of a label file that the store models as columns (the game's id and link, its
#: annotations); any others (the 2025 release's ``halftime``) are kept verbatim for export.
_FILE_KEYS = ("UrlLocal", "UrlYoutube", "annotations")


@dataclass(frozen=True)
class Annotation:
    """One labelled event of a file, already validated."""

    frame: int
    label: str
    team: str
    visibility: str = DEFAULT_VISIBILITY
    #: Keys SoccerNet may add that we do not model (e.g. the 2025 ``halftime``), kept for export.
    extra: dict = field(default_factory=dict)


@dataclass
class LabelFile:
    """A parsed ``Labels-ball.json``."""

    path: str
    url_local: str | None
    url_youtube: str
    annotations: list[Annotation]
    #: Non-fatal notes (a position snapped to the 40 ms grid), each naming its entry.
    warnings: list[Problem] = field(default_factory=list)
    #: The file's top-level keys beyond UrlLocal, UrlYoutube and annotations, in its order
    #: (the 2025 release's ``halftime``, the end of the first half as a gameTime: "1 - 46:04").
    extra: dict = field(default_factory=dict)


def _entry_name(index: int, item: Any) -> str:
    if isinstance(item, dict):
        bits = [f"{k} {item[k]!r}" for k in ("position", "label") if k in item]
        return f"annotations[{index}]" + (f" ({', '.join(bits)})" if bits else "")
    return f"annotations[{index}]"


#: No match video is this long; larger positions are typos (and would overflow SQLite's integers).
MAX_POSITION_MS = 24 * 3600 * 1000
#: Most annotations one label file may hold (a real game has about 2,000): more is not a game.
MAX_ANNOTATIONS = 20_000
#: Longest UrlLocal (characters) and longest name of one of its folders (UTF-8 bytes, the
#: file systems' limit): it becomes export folders.
MAX_URL_LOCAL_CHARS = 1024
MAX_NAME_BYTES = 255
#: Unicode categories a UrlLocal may not contain: control characters (NUL, newline, tab),
#: format characters (bidi overrides and isolates U+202A..U+202E, U+2066..U+2069, the marks
#: U+200E/U+200F: they make a name display as another), line and paragraph separators.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}
_DRIVE = re.compile(r"[A-Za-z]:(/|$)")  # C:/..., a Windows absolute path


def check_url_local(value: Any) -> str:
    """A game's SoccerNet id: a relative path of plain names (it becomes export folders).

    Surrounding spaces and a trailing ``/`` (as some SoccerNet files write it) are dropped;
    anything that is not a plain relative path of printable names is refused.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a string, found {value!r}")
    _check_text(value)
    if len(value) > MAX_URL_LOCAL_CHARS:
        raise ValueError(f"is {len(value)} characters long, more than {MAX_URL_LOCAL_CHARS}")
    bad = next((c for c in value if unicodedata.category(c) in _FORBIDDEN_CATEGORIES), None)
    if bad is not None:
        raise ValueError(f"{value!r} contains the control or format character U+{ord(bad):04X} "
                         f"({unicodedata.name(bad, 'unnamed')})")
    text = value.strip()
    if text.startswith("/") or _DRIVE.match(text):
        raise ValueError(f"{value!r} is an absolute path, not a league/season/game path")
    if "\\" in text:
        raise ValueError(f"{value!r} contains a backslash, not a league/season/game path")
    parts = text.rstrip("/").split("/")
    if not text or any(p.strip() in ("", ".", "..") for p in parts):
        raise ValueError(f"{value!r} is not a league/season/game path")
    long = next((p for p in parts if len(p.encode("utf-8")) > MAX_NAME_BYTES), None)
    if long is not None:
        raise ValueError(f"the name {long[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    return "/".join(parts)


def _check_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{value!r} is not valid Unicode text") from None
    return value


def _parse_position(value: Any) -> int:
    """Milliseconds as SoccerNet writes them: a string or number holding a whole number."""
    if isinstance(value, bool):
        raise ValueError(f"position {value!r} is not a number of milliseconds")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        ms = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and value.isascii():
        ms = int(value.strip())
    else:
        raise ValueError(f"position {value!r} is not a whole number of milliseconds")
    if ms < 0:
        raise ValueError(f"position {value!r} is negative")
    if ms > MAX_POSITION_MS:
        raise ValueError(f"position {value!r} is more than 24 hours")
    return ms


def _unknown(kind: str, value: Any, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(str(value).upper() if kind == "label" else str(value), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {value!r}{hint} (known: {', '.join(known)})"


def parse_labels(text: str | bytes, path: str, *, duration_ms: float | None = None) -> LabelFile:
    """Parse and validate a ``Labels-ball.json``; raise :class:`InputError` listing every problem.

    ``duration_ms``, when the game's video is known, rejects labels past the end of the video.
    """
    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        doc = json.loads(text, parse_constant=no_constants)
    except UnicodeDecodeError as exc:
        raise InputError(Problem(path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")) from None
    except json.JSONDecodeError as exc:
        raise InputError(Problem(path, f"line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}")) from None
    except (RecursionError, ValueError) as exc:  # absurd nesting, integers too long to parse
        raise InputError(Problem(path, "", f"malformed JSON: {str(exc)[:120]}")) from None
    if not isinstance(doc, dict):
        raise InputError(Problem(path, "", f"expected a JSON object, found {type(doc).__name__}"))
    if "annotations" not in doc:
        raise InputError(Problem(path, "", "missing key 'annotations'"))
    items = doc["annotations"]
    if not isinstance(items, list):
        raise InputError(Problem(path, "annotations", f"expected a list, found {type(items).__name__}"))
    if len(items) > MAX_ANNOTATIONS:
        raise InputError(Problem(path, "annotations", f"{len(items)} entries, more than the {MAX_ANNOTATIONS} "
                                 "a label file may hold (a game has about 2,000)"))
    url_local = doc.get("UrlLocal")
    if url_local is not None:
        try:
            url_local = check_url_local(url_local)
        except ValueError as exc:
            raise InputError(Problem(path, "UrlLocal", str(exc))) from None
    url_youtube = doc.get("UrlYoutube") or ""
    if not isinstance(url_youtube, str):
        raise InputError(Problem(path, "UrlYoutube", f"expected a string, found {url_youtube!r}"))
    try:
        _check_text(url_youtube)
    except ValueError as exc:
        raise InputError(Problem(path, "UrlYoutube", str(exc))) from None
    file_extra = {k: v for k, v in doc.items() if k not in _FILE_KEYS}
    try:
        _check_text(json.dumps(file_extra, ensure_ascii=False))
    except ValueError as exc:
        raise InputError(Problem(path, ", ".join(file_extra), f"top-level keys: {exc}")) from None

    problems: list[Problem] = []
    warnings: list[Problem] = []
    annotations: list[Annotation] = []
    entries: list[str] = []  # each annotation's entry name, for problems found across them
    seen: dict[tuple[int, str, str], str] = {}
    for index, item in enumerate(items):
        entry = _entry_name(index, item)
        if not isinstance(item, dict):
            problems.append(Problem(path, entry, f"expected an object, found {item!r}"))
            continue
        missing = [k for k in _REQUIRED_KEYS if k not in item]
        if missing:
            problems.append(Problem(path, entry, "missing key " + ", ".join(repr(k) for k in missing)))
            continue
        errors: list[str] = []
        try:
            ms = _parse_position(item["position"])
        except ValueError as exc:
            errors.append(str(exc))
            ms = None
        label, team = item["label"], item["team"]
        visibility = item.get("visibility", DEFAULT_VISIBILITY)
        if label not in CLASSES:
            errors.append(_unknown("label", label, CLASSES))
        if team not in TEAMS:
            errors.append(_unknown("team", team, TEAMS))
        if visibility not in VISIBILITIES:
            errors.append(_unknown("visibility", visibility, VISIBILITIES))
        if "gameTime" in item:
            try:
                half, _ = parse_game_time(item["gameTime"])
                if half != 1:
                    errors.append(
                        f"gameTime {item['gameTime']!r} is in half {half}; ball-action games are one "
                        "video with every event in half 1"
                    )
            except ValueError as exc:
                errors.append(str(exc))
        if ms is not None and duration_ms is not None and ms >= duration_ms:
            errors.append(f"position {ms} ms is past the end of the video ({duration_ms / 1000:.2f} s)")
        if errors:
            problems.extend(Problem(path, entry, e) for e in errors)
            continue
        frame = ms_to_frame(ms)
        if frame_to_ms(frame) != ms:
            warnings.append(
                Problem(path, entry, f"position {ms} ms is not on the {MS_PER_FRAME} ms frame grid; "
                        f"snapped to {frame_to_ms(frame)} ms")
            )
        key = (frame, label, team)
        if key in seen:
            problems.append(Problem(path, entry, f"duplicate of {seen[key]} (same frame, label and team)"))
            continue
        seen[key] = entry
        extra = {k: v for k, v in item.items() if k not in _KNOWN_KEYS}
        try:
            _check_text(json.dumps(extra, ensure_ascii=False))
        except ValueError as exc:
            problems.append(Problem(path, entry, f"extra keys: {exc}"))
            continue
        annotations.append(Annotation(frame, label, team, visibility, extra))
        entries.append(entry)
    problems.extend(_mixed_teams(path, annotations, entries))
    if problems:
        raise InputError(problems)
    return LabelFile(path, url_local or None, url_youtube, annotations, warnings, file_extra)


def _mixed_teams(path: str, annotations: list[Annotation], entries: list[str]) -> list[Problem]:
    """A file naming teams both by role and by side (``core.labels.team_vocabulary``) is
    refused: one problem, at the first annotation of the vocabulary the file uses less."""
    try:
        team_vocabulary((a.team for a in annotations), path)
        return []
    except BallspotError:
        pass
    uses = {pair: [i for i, a in enumerate(annotations) if a.team in pair] for pair in TEAM_MODES.values()}
    fewer, more = sorted(uses, key=lambda pair: len(uses[pair]))
    first = uses[fewer][0]
    return [Problem(path, entries[first], f"team {annotations[first].team!r}: {len(uses[more])} annotations of "
                    f"this file name teams {'/'.join(more)} and {len(uses[fewer])} {'/'.join(fewer)}; a game "
                    f"names them one way ({'/'.join(TEAM_MODES['role'])} in BAS-2024, "
                    f"{'/'.join(TEAM_MODES['side'])} in the 2025 team task)")]


def annotation_dict(frame: int, label: str, team: str, visibility: str, extra: dict | None = None) -> dict:
    """One annotation exactly as SoccerNet writes it (keys in SoccerNet's order)."""
    item = {
        "gameTime": game_time(frame),
        "label": label,
        "position": str(frame_to_ms(frame)),
        "team": team,
        "visibility": visibility,
    }
    item.update(extra or {})
    return item


def labels_document(url_local: str, url_youtube: str, rows: Iterable[dict], extra: dict | None = None) -> dict:
    """A ``Labels-ball.json`` document from store rows (sorted by frame, ties in creation order);
    ``extra``, the file's other top-level keys as imported (``halftime``), between UrlYoutube
    and the annotations, where the 2025 release writes them."""
    rows = sorted(rows, key=lambda r: (r["frame"], r["id"]))
    return {
        "UrlLocal": url_local,
        "UrlYoutube": url_youtube,
        **{k: v for k, v in (extra or {}).items() if k not in _FILE_KEYS},
        "annotations": [
            annotation_dict(r["frame"], r["label"], r["team"], r["visibility"], r["extra"])
            for r in rows
        ],
    }


def prediction_dict(frame: int, label: str, team: str, confidence: float) -> dict:
    """One prediction exactly as SoccerNet's ``results_spotting.json`` has it."""
    return {
        "gameTime": game_time(frame),
        "label": label,
        "position": str(frame_to_ms(frame)),
        "half": "1",
        "confidence": float(confidence),
        "team": team,
    }


def predictions_document(url_local: str, rows: Iterable[dict]) -> dict:
    """A ``results_spotting.json`` document from prediction rows, as SoccerNet's evaluation reads it."""
    rows = sorted(rows, key=lambda r: (r["frame"], r["id"]))
    return {
        "UrlLocal": url_local,
        "predictions": [prediction_dict(r["frame"], r["label"], r["team"], r["confidence"]) for r in rows],
    }


def dumps(doc: dict) -> str:
    """SoccerNet's own layout: two-space indentation, no trailing newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False)
