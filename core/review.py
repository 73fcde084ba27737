"""The review screen's logic, without any UI: what a client is sent for a game, every edit it
can make, and the exact frames around an event.

Why a module of its own: the browser app, the tests and the benchmarks call the same
functions, so an edit made by a key press is the very store operation a test checks. Events
cross the wire as small dicts; after an edit only the rows it changed go back (a delta from
the store's change log), never the whole game, so an edit costs the same with 4,000 events
as with 4.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from core.errors import BallspotError, ConflictError
from core.infer import load_curves
from core.labels import CLASS_INDEX, CLASSES, DEFAULT_VISIBILITY, FPS, TEAMS_ROLE, TEAMS_SIDE, VISIBILITIES, clock
from core.labels import team_vocabulary as labels_team_vocabulary
from core.store import Store
from core.versions import active_version, review_cut, review_progress
from core.video import read_frames
from core.workspace import Workspace

#: One hue per class, used by every view (timeline lane, marker, table, plots).
CLASS_COLOURS = ["#4e79a7", "#59a14f", "#edc948", "#f28e2b", "#bab0ac", "#b07aa1",
                 "#76b7b2", "#e15759", "#9c755f", "#ff9da7", "#8cd17d", "#d4a6c8"]
#: Filmstrip: frames either side of the selected one, decoded on the server.
FILMSTRIP_RADIUS = 4


def label_event(row: dict, made_from: dict | None = None) -> dict:
    """A label as the screen shows it. A label an accept made (``made_from``: its prediction)
    is the one row and marker of that event: its current class and team, and that the model
    proposed it (version, confidence, accepted), so the prediction itself is not listed again."""
    event = {"id": f"l{row['id']}", "kind": "label", "frame": row["frame"], "label": row["label"],
             "team": row["team"], "source": row["source"], "status": "labelled", "confidence": None,
             "revision": row["revision"], "author": row["author"], "prediction": row["prediction_id"],
             "visibility": row["visibility"]}
    if made_from is not None:
        event.update(status="accepted", model=made_from["model_version"],
                     confidence=round(float(made_from["confidence"]), 4),
                     prediction_revision=made_from["revision"])
    return event


def _made_from(store: Store, label: dict) -> dict | None:
    """The prediction whose accept made this label, if it is still accepted."""
    if label["prediction_id"] is None:
        return None
    try:
        p = store.prediction(label["prediction_id"])
    except BallspotError:
        return None
    return p if p["status"] == "accepted" else None


def prediction_event(row: dict) -> dict:
    return {"id": f"p{row['id']}", "kind": "prediction", "frame": row["frame"], "label": row["label"],
            "team": row["team"], "source": "model", "status": row["status"],
            "confidence": round(float(row["confidence"]), 4), "revision": row["revision"],
            "author": row["reviewer"], "model": row["model_version"]}


def team_vocabulary(store: Store, game: int | str, *, strict: bool = False) -> tuple[str, str]:
    """The two team names a game's review uses: the vocabulary of its labels and predictions
    (:func:`core.labels.team_vocabulary`: left/right in the 2025 team task, home/away in
    BAS-2024), home/away when it has none. New labels get it; its first name is the default
    team. A game that mixes both is shown as home/away (so it can be put right), and with
    ``strict`` refused (:class:`BallspotError` naming its teams)."""
    g = store.game(game)
    try:
        return labels_team_vocabulary(store.team_names(g["id"]), where=g["url_local"]) or TEAMS_ROLE
    except BallspotError:
        if strict:
            raise
        return TEAMS_ROLE


def start_game(store: Store, version: str | None) -> int | None:
    """The game the review screen opens on: the one with the most pending predictions of the
    active version (None when nothing is pending; the screen then reopens the last game)."""
    if not version:
        return None
    pending = [(r["n"], r["game_id"]) for r in store.prediction_counts(version) if r["status"] == "pending"]
    return max(pending, key=lambda p: (p[0], -p[1]))[1] if pending else None


def first_game(store: Store, version: str | None, last: int | None = None) -> int | None:
    """The game the review screen opens on: :func:`start_game`'s, else ``last`` (the one this
    browser had open) while it exists, else the first game; None when there are no games."""
    start = start_game(store, version)
    if start is not None:
        return start
    ids = [g["id"] for g in store.games()]
    return last if last in ids else (ids[0] if ids else None)


def game_choices(store: Store) -> list[tuple[str, int]]:
    """Picker entries: name, split, labels and review progress of each game."""
    progress = review_progress(store)
    counts: dict[int, int] = {}
    for r in store.label_counts():
        counts[r["game_id"]] = counts.get(r["game_id"], 0) + r["n"]
    out = []
    for g in store.games():
        done, total = progress.get(g["id"], (0, 0))
        review = f", {done}/{total} reviewed" if total else ""
        video = "" if g["video_path"] else ", no video"
        marked = ", ✓ fully reviewed" if g["fully_reviewed"] else ""
        out.append((f"{g['url_local']} ({g['split'] or 'no split'}, {counts.get(g['id'], 0)} labels{review}{video}"
                    f"{marked})", g["id"]))
    return out


def open_game(store: Store, game: int | str, version: str | None = None) -> dict[str, Any]:
    """Everything the review screen draws for a game, sent once when it is opened."""
    cursor = store.change_cursor()  # first: an edit committed while reading comes as a delta
    g = store.game(game)
    version = version or active_version(store)
    predictions = store.predictions(g["id"], version) if version else []
    by_id = {p["id"]: p for p in predictions}
    labels = store.labels(g["id"])
    made = {lab["prediction_id"] for lab in labels if lab["prediction_id"] is not None}

    def accepted(label: dict) -> dict | None:
        p = by_id.get(label["prediction_id"])
        if p is None:
            return _made_from(store, label)  # no prediction, or another version's
        return p if p["status"] == "accepted" else None
    events = [label_event(r, accepted(r)) for r in labels]
    # An accepted prediction is shown as the label it made (one row, one marker per event).
    events += [prediction_event(p) for p in predictions if not (p["status"] == "accepted" and p["id"] in made)]
    events.sort(key=lambda e: (e["frame"], e["id"]))
    frames = int(g["frame_count"] or 0) or (max((e["frame"] for e in events), default=0) + FPS)
    return {
        "game": {"id": g["id"], "name": g["url_local"], "split": g["split"], "frames": frames,
                 # The file's name only: where it lies on the server is not the browser's business.
                 "fps": FPS, "video": Path(g["video_path"]).name if g["video_path"] else None,
                 "width": g["width"], "height": g["height"]},
        "version": version, "events": events, "classes": list(CLASSES), "colours": CLASS_COLOURS,
        "teams": list(team_vocabulary(store, g["id"])), "reviewed": g["fully_reviewed"], "cursor": cursor,
        "review_cut": review_cut(store, version),
    }


def delta(store: Store, game: int | str, cursor: int, version: str | None) -> dict[str, Any]:
    """Rows of a game changed since ``cursor`` (by anyone): events to upsert, ids removed, and
    the game's fully-reviewed mark (``reviewed``) when that changed."""
    gid = store.game(game)["id"]
    latest, new_cursor = store.changes_since(gid, cursor)
    upsert, removed = [], []
    out: dict[str, Any] = {}
    for (table, row_id), row in latest.items():
        key = ("l" if table == "labels" else "p") + str(row_id)
        if table == "games":
            out["reviewed"] = row["fully_reviewed"]
        elif row is None:
            removed.append(key)
        elif table == "labels":
            upsert.append(label_event(row, _made_from(store, row)))
        elif row["status"] == "accepted" and store.label_made_by(row_id) is not None:
            removed.append(key)  # shown as the label it made
        elif row["model_version"] == version:
            upsert.append(prediction_event(row))
    return {"upsert": upsert, "removed": removed, "cursor": new_cursor, **out}


@dataclass
class EditResult:
    ok: bool
    message: str
    delta: dict
    #: The event to select after the edit (the new label, the moved event), if any.
    select: str | None = None
    #: The row's state in the store after a conflict, so the client can show and reload it.
    current: dict | None = None

    def as_dict(self) -> dict:
        return {"ok": self.ok, "message": self.message, "delta": self.delta, "select": self.select,
                "current": self.current}


def _parse_id(event_id: str) -> tuple[str, int]:
    if not (isinstance(event_id, str) and len(event_id) >= 2 and event_id[0] in "lp" and event_id[1:].isdigit()
            and event_id.isascii()):
        raise BallspotError(f"not an event id: {event_id!r}")
    return ("labels" if event_id[0] == "l" else "predictions"), int(event_id[1:])


def _whole(value: Any, what: str) -> int:
    """A whole number from a client (JSON gives ints, floats or strings; never a bool)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and value.isascii() and len(value) < 30:
        return int(value)
    raise BallspotError(f"{what} {str(value)[:40]!r} is not a whole number")


def _revision(action: dict, key: str) -> int:
    if key not in action or action[key] is None:
        raise BallspotError(f"an edit of event {action.get('id')} must name the {key} it was based on "
                            "(reload the game); nothing was changed")
    return _whole(action[key], key)


def _flip_team(team: str) -> str:
    """The other team of the pair ``team`` belongs to (an event keeps its game's vocabulary)."""
    for pair in (TEAMS_ROLE, TEAMS_SIDE):
        if team in pair:
            return pair[1 - pair.index(team)]
    return team


def _flip_visibility(visibility: str) -> str:
    """``visible`` <-> ``not shown`` (SoccerNet's two values: the action happened off camera)."""
    return VISIBILITIES[1 - VISIBILITIES.index(visibility)] if visibility in VISIBILITIES else DEFAULT_VISIBILITY


#: The most predictions one bulk action may name (a full match has about 2,000).
MAX_BULK = 20_000


def _bulk(store: Store, g: dict, action: dict, author: str | None, version: str | None) -> str:
    """Accept every listed pending prediction at or above ``threshold``, or reject every one at
    or below it, as ONE undo step: ``{"decision": "accept" | "reject", "threshold": t,
    "events": [{"id": "p12", "revision": 3}, ...]}``, the predictions the client's filters
    show. Or accept those shown in a stretch of frames the analyst watched through (Shift+A):
    ``{"decision": "accept", "span": [from, to], "events": [...]}``, each inside the span.
    Each names the revision the client saw: one changed since (or no longer pending, or on the
    wrong side of the threshold) is a conflict and nothing is written, as for one edit."""
    decision = action.get("decision")
    if decision not in ("accept", "reject"):
        raise BallspotError(f"a bulk decision is 'accept' or 'reject', not {decision!r}")
    span = _span(action.get("span"), g) if "span" in action else None
    if span is not None and decision != "accept":
        raise BallspotError("a watched stretch (span) is accepted, not rejected: reject what looks wrong one by one")
    threshold = action.get("threshold", 0.0 if span is not None else None)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise BallspotError(f"the confidence threshold must be a number from 0 to 1, not {threshold!r}")
    events = action.get("events")
    if not isinstance(events, list) or not events:
        raise BallspotError("a bulk action names the predictions it applies to (none were shown)")
    if len(events) > MAX_BULK:
        raise BallspotError(f"a bulk action applies to at most {MAX_BULK} predictions, not {len(events)}")
    items = []
    for e in events:
        if not isinstance(e, dict):
            raise BallspotError(f"not an event: {str(e)[:40]!r}")
        table, pid = _parse_id(e.get("id"))
        if table != "predictions":
            raise BallspotError(f"{e.get('id')} is a label; bulk actions accept or reject predictions")
        items.append((pid, _revision(e, "revision")))
    if len({pid for pid, _ in items}) != len(items):
        raise BallspotError("a prediction is named twice in the bulk action")
    for pid, revision in items:
        p = store.prediction(pid)
        if p["game_id"] != g["id"] or (version is not None and p["model_version"] != version):
            raise BallspotError(f"prediction {pid} is not one of this game's active predictions")
        if span is not None and not span[0] <= p["frame"] <= span[1]:
            raise BallspotError(f"prediction {pid} ({p['label']} at {clock(p['frame'])}) is outside the watched "
                                f"stretch {clock(span[0])}-{clock(span[1])}; nothing was changed")
        side = p["confidence"] >= threshold if decision == "accept" else p["confidence"] <= threshold
        if p["revision"] != revision or p["status"] != "pending" or not side:
            raise ConflictError(f"prediction {pid} ({p['label']} at {clock(p['frame'])}) was changed since you "
                                "loaded it; nothing was changed", current=p)
    status = "accepted" if decision == "accept" else "rejected"
    if span is not None:
        where = f"watched {clock(span[0])}-{clock(span[1])}"
    else:
        where = f"{'at or above' if decision == 'accept' else 'at or below'} {threshold:.2f}"
    store.review_many(status, items, reviewer=author, summary=f"{decision} {len(items)} pending predictions {where}")
    return f"{status} {len(items)} pending prediction(s) {where} (one undo step)"


def _span(value: Any, g: dict) -> tuple[int, int]:
    """A watched stretch ``[from, to]``: two frames of the game, in order."""
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(f, bool) or not isinstance(f, int) for f in value)):
        raise BallspotError(f"a watched stretch is [first frame, last frame], not {str(value)[:40]!r}")
    first, last = value
    frames = int(g["frame_count"] or 0)  # 0: a game imported without its video has no known end
    if not 0 <= first <= last or (frames and last >= frames):
        raise BallspotError(f"the watched stretch {first}-{last} is not within the game's frames"
                            + (f" 0-{frames - 1}" if frames else ""))
    return first, last


def edit(store: Store, game: int | str, action: dict, *, author: str | None, cursor: int,
         version: str | None = None) -> EditResult:
    """Apply one edit from the review screen; the store commits before this returns.

    ``action`` is ``{"op": ..., ...}``: add (frame, label, team), move (id, frame or by),
    relabel (id, label), team (id), visibility (id; toggles visible / not shown), delete (id),
    accept (id), reject (id), bulk (see :func:`_bulk`), reviewed (marked, seen: the game's
    fully-reviewed mark), undo, redo. An edit names the event's ``revision`` it was based on: a
    stale one is refused (conflict). Editing a prediction's frame, class or team accepts it
    corrected.
    """
    g = store.game(game)
    op = action.get("op")
    select = None
    try:
        if op == "add":
            label = action.get("label")
            if label not in CLASS_INDEX:
                raise BallspotError(f"unknown class {label!r}")
            teams = team_vocabulary(store, g["id"], strict=True)
            team = action.get("team") or teams[0]
            if team not in teams:
                raise BallspotError(f"this game names its teams {' / '.join(teams)}, not {team!r}; nothing was added")
            row = store.add_label(g["id"], _whole(action["frame"], "frame"), label, team, author=author)
            select, message = f"l{row['id']}", f"added {label} {row['team']} at {clock(row['frame'])}"
        elif op in ("undo", "redo"):
            target = (store.undo if op == "undo" else store.redo)(g["id"], author=author)
            message = f"{op}: {target['summary']}" if target else f"nothing to {op}"
        elif op == "reviewed":
            marked = action.get("marked")
            if not isinstance(marked, bool):
                raise BallspotError("'marked' must be true or false")
            seen = action.get("seen")
            if seen is not None and not isinstance(seen, str):
                raise BallspotError("'seen' must be the mark as loaded, or null")
            before = g["fully_reviewed"]
            row = store.set_fully_reviewed(g["id"], marked, author=author, seen=seen)
            message = (f"{g['url_local']} is already {'marked' if marked else 'not marked'} fully reviewed"
                       if row["fully_reviewed"] == before else
                       f"marked {g['url_local']} fully reviewed" if marked else
                       f"{g['url_local']} is no longer marked fully reviewed")
        elif op == "bulk":
            message = _bulk(store, g, action, author, version)
        elif op in ("move", "relabel", "team", "visibility", "delete", "accept", "reject"):
            table, row_id = _parse_id(action.get("id"))
            # Every edit of an existing event names the revision it was based on: without it
            # a stale tab would overwrite what another one confirmed.
            revision = _revision(action, "revision")
            row = store.label(row_id) if table == "labels" else store.prediction(row_id)
            if row["game_id"] != g["id"]:
                raise BallspotError(f"event {action.get('id')} belongs to another game")
            if table == "predictions" and row["status"] == "accepted" and op in ("move", "relabel", "team",
                                                                                 "visibility"):
                made = store.label_made_by(row_id)
                if made:  # an accepted prediction is corrected through the label it made
                    if revision != row["revision"]:
                        raise ConflictError(f"prediction {row_id} was changed since you loaded it; nothing was "
                                            "overwritten", current=row)
                    if "made_revision" not in action:
                        raise ConflictError(f"prediction {row_id} was accepted as label {made['id']}: reload to "
                                            "correct that label; nothing was changed", current=made)
                    # The label's own revision, as the client saw it: a change made to it in
                    # another tab since is a conflict, not silently overwritten.
                    table, row_id, row, revision = "labels", made["id"], made, _revision(action, "made_revision")
            changes: dict[str, Any] = {}
            if op == "move":
                frame = _whole(action["frame"], "frame") if "frame" in action else \
                    row["frame"] + _whole(action.get("by", 0), "by")
                changes["frame"] = max(0, frame)
            elif op == "relabel":
                if action.get("label") not in CLASS_INDEX:
                    raise BallspotError(f"unknown class {action.get('label')!r}")
                changes["label"] = action["label"]
            elif op == "team":
                changes["team"] = action.get("team") or _flip_team(row["team"])
            elif op == "visibility" and table == "labels":
                changes["visibility"] = action.get("visibility") or _flip_visibility(row["visibility"])
            if table == "labels":
                if op in ("accept", "reject"):
                    raise BallspotError("accept and reject apply to predictions; this is a label")
                if op == "delete":
                    store.delete_label(row_id, revision, author=author)
                    message = f"deleted {row['label']} {row['team']} at {clock(row['frame'])}"
                else:
                    new = store.update_label(row_id, revision, author=author, **changes)
                    select = f"l{row_id}"
                    message = f"{row['label']} at {clock(row['frame'])}: " + \
                        ", ".join(f"{k} {new[k]}" for k in changes)
            else:
                if op == "reject":
                    store.reject(row_id, reviewer=author, base_revision=revision)
                    message = f"rejected {row['label']} {row['team']} at {clock(row['frame'])}"
                elif op == "delete":
                    raise BallspotError("a prediction cannot be deleted; reject it (r)")
                elif op == "visibility":
                    raise BallspotError("visibility is a label's: accept the prediction first (a), then press v")
                elif op == "accept" and row["status"] == "accepted" and store.label_made_by(row_id):
                    message = f"{row['label']} at {clock(row['frame'])} is already accepted"
                else:
                    store.accept(row_id, reviewer=author, base_revision=revision, **changes)
                    linked = store.label_made_by(row_id)  # the event is now that label
                    select = f"l{linked['id']}" if linked else f"p{row_id}"
                    what = ", ".join(f"{k} {v}" for k, v in changes.items())
                    message = f"accepted {row['label']} at {clock(row['frame'])}" + (f" as {what}" if what else "")
        else:
            raise BallspotError(f"unknown edit {op!r}")
    except ConflictError as exc:
        return EditResult(False, str(exc), delta(store, g["id"], cursor, version), current=exc.current)
    except (KeyError, ValueError, TypeError) as exc:
        return EditResult(False, f"malformed edit {action!r}: {exc}", delta(store, g["id"], cursor, version))
    except BallspotError as exc:
        return EditResult(False, str(exc), delta(store, g["id"], cursor, version))
    return EditResult(True, message, delta(store, g["id"], cursor, version), select)


def score_curve(workspace: Workspace, version: str | None, game_id: int, label: str) -> str | None:
    """The model's per-frame confidence for one class as base64 bytes (0..255 per frame), or
    None when this version has not scored the game."""
    if not version or label not in CLASS_INDEX:
        return None
    path = workspace.scores_path(version, game_id)
    if not path.is_file():
        return None
    curve = load_curves(path).scores[:, CLASS_INDEX[label]]
    return base64.b64encode(np.round(curve * 255).astype(np.uint8).tobytes()).decode()


def filmstrip(video: BinaryIO, frame: int, frame_count: int, radius: int = FILMSTRIP_RADIUS,
              height: int = 144) -> list[dict]:
    """Frames ``frame - radius .. frame + radius`` decoded exactly on the server, as JPEG data
    URIs. ``video``: the game's video as opened by :func:`core.video.open_game_video` (checked
    to be the file imported, never a path a link could redirect)."""
    if not 0 <= frame < max(frame_count, 1):
        raise BallspotError(f"frame {frame} is not in the video (frames 0 to {max(frame_count, 1) - 1})")
    wanted = [f for f in range(frame - radius, frame + radius + 1) if 0 <= f < max(frame_count, 1)]
    decoded = read_frames(video, wanted, None, as_grey=False, rate=FPS)  # colour: shirts tell teams
    out = []
    for f in wanted:
        img = decoded.get(f)
        if img is None:
            continue
        scale = height / img.shape[0]
        small = cv2.resize(img, (max(1, int(img.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
        ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            out.append({"frame": f, "offset": f - frame, "clock": clock(f),
                        "src": "data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode()})
    return out
