"""Video files: finding a game's video and probing it with PyAV.

A probe reads the container header and decodes the first frame, so a file that only looks
like a video (wrong content, truncated header) is refused at import rather than at review.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

from core.errors import InputError, Problem

#: Extensions a game's video may have (SoccerNet ships ``224p.mp4`` and ``720p.mp4``).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")


@dataclass(frozen=True)
class VideoInfo:
    """What the store keeps about a game's video."""

    path: str
    fps: float
    frame_count: int
    duration_s: float
    width: int
    height: int
    start_time_s: float
    size_bytes: int
    mtime: float
    codec: str
    #: True when the average and base frame rates disagree (a variable-frame-rate file,
    #: which browsers cannot step through frame by frame).
    variable_fps: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _resolution_hint(path: Path) -> int:
    match = re.match(r"^(\d+)p", path.stem)
    return int(match.group(1)) if match else 0


def find_videos(folder: Path) -> list[Path]:
    """Video files directly in a game folder, highest resolution first (by name, e.g. 720p)."""
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (-_resolution_hint(p), p.name))


def _length_from_packets(container, stream, time_base: Fraction, start: float) -> tuple[int, float]:
    container.seek(0, stream=stream)
    frames, end = 0, 0.0
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        frames += 1
        end = max(end, float((packet.pts + (packet.duration or 0)) * time_base))
    return frames, max(0.0, end - start)


def probe(path: str | Path) -> VideoInfo:
    """Probe a video with PyAV; raise :class:`InputError` naming the file if it is not one."""
    path = Path(path)
    try:
        stat = path.stat()
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.video:
                raise InputError(Problem(str(path), "", "no video stream in the file"))
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise InputError(Problem(str(path), "", "the video stream has no frame rate"))
            fps = float(rate)
            time_base = stream.time_base or Fraction(1, 1_000_000)
            if stream.duration:
                duration = float(stream.duration * time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            frames = int(stream.frames) or int(round(duration * fps))
            start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
            first = next(container.decode(stream), None)
            if first is None:
                raise InputError(Problem(str(path), "", "no frame could be decoded"))
            if duration <= 0 or frames <= 0:
                # No length in the header (a streamed MKV, say): read packet times, no decoding.
                frames, duration = _length_from_packets(container, stream, time_base, start)
                if frames <= 0:
                    raise InputError(Problem(str(path), "", "the video's length cannot be determined"))
            base = stream.base_rate
            variable = bool(base) and abs(float(base) - fps) > 1e-3
            return VideoInfo(
                path=str(path.resolve()),
                fps=fps,
                frame_count=frames,
                duration_s=duration or frames / fps,
                width=int(stream.codec_context.width or first.width),
                height=int(stream.codec_context.height or first.height),
                start_time_s=start,
                size_bytes=stat.st_size,
                mtime=stat.st_mtime,
                codec=stream.codec_context.name,
                variable_fps=variable,
            )
    except InputError:
        raise
    except (av.FFmpegError, OSError, StopIteration, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(Problem(str(path), "", f"not a readable video ({reason})")) from None
