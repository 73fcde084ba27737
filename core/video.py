"""Video files: finding a game's video, probing it, and reading its frames.

A probe reads the container header, decodes the first frame and a frame near the declared
end, so a file that only looks like a video (wrong content, truncated header) is refused at
import rather than at review, and a file cut short (an interrupted copy) gets the length it
really has. ``FrameReader`` streams every frame for inference; ``read_frames`` fetches exact
frames by index for training clips and the filmstrip; ``open_game_video`` opens a game's
video only if it is still the file that was imported.
"""
from __future__ import annotations

import io
import itertools
import os
import queue
import re
import stat as stat_module
import threading
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import cv2
import numpy as np

from core.errors import BallspotError, InputError, Problem, VideoChangedError

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
    #: The file's inode: with size and mtime, what ``open_game_video`` checks before reading.
    inode: int | None = None
    #: The length (seconds) the header declares when the file is cut short of it; the
    #: length above is then what really decodes. None for a whole file.
    declared_s: float | None = None

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


#: How far before the declared end (seconds) the probe decodes a frame to prove the file
#: is whole (at least two frames before it, for very low frame rates).
END_CHECK_S = 1.0


def _decodes_from(container, stream, time_base: Fraction, t: float) -> bool:
    """Whether a frame at or after time ``t`` (seconds, the stream's clock) decodes."""
    try:
        container.seek(int(t / time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is not None and float(frame.pts * time_base) >= t - 1e-6:
                return True
    except (av.FFmpegError, ValueError):
        pass
    return False


def _cut_by_eof(packet, size: int) -> bool:
    """A packet reaching the end of a file known to be cut short: the demuxer hands over what
    is there, so it is probably partial (losing a whole one at worst costs one frame)."""
    return packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size >= size


def _decodable_end(container, stream, time_base: Fraction, fps: float, size: int) -> float | None:
    """In a file cut short, the time just after the last frame of the unbroken run that
    decodes; None if nothing does.

    One pass demuxes (reads packets, decodes nothing) to find the last whole packet; a second
    decodes from the keyframe before it, stopping at the partial one. Frames come out in
    display order; with B-frames a missing packet can leave a gap, so the run ends there.
    """
    container.seek(0, stream=stream, backward=True)
    last = None
    for packet in container.demux(stream):
        if not packet.size:
            continue
        if _cut_by_eof(packet, size):
            break
        if packet.dts is not None:
            last = packet.dts
    if last is None:
        return None
    container.seek(int(max(0.0, float(last * time_base) - 3.0) / time_base), stream=stream, backward=True)
    times: list[float] = []
    try:
        for packet in container.demux(stream):
            cut = bool(packet.size) and _cut_by_eof(packet, size)
            for frame in stream.decode(None if cut else packet):  # None flushes the decoder
                if frame.pts is not None:
                    times.append(float(frame.pts * time_base))
            if cut:
                break
    except (av.FFmpegError, ValueError):
        pass  # a damaged packet: what decoded before it stands
    if not times:
        return None
    times.sort()
    end = times[0]
    for t in times[1:]:
        if t - end > 1.5 / fps:
            break
        end = t
    return end + 1 / fps


def probe(path: str | Path) -> VideoInfo:
    """Probe a video with PyAV; raise :class:`InputError` naming the file if it is not one.

    A file whose frames stop short of the length its header declares (an interrupted copy
    of a file with its index at the front) keeps what does decode: its length is then taken
    from the last frame that decodes, and ``declared_s`` says what the header claimed, for
    the import to warn about.
    """
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
            declared = None
            if not _decodes_from(container, stream, time_base, start + max(0.0, duration - max(END_CHECK_S, 2 / fps))):
                end = _decodable_end(container, stream, time_base, fps, stat.st_size)
                if end is None or end <= start:
                    raise InputError(Problem(str(path), "", "no frame near its start decodes again (a damaged file)"))
                declared, duration = duration, end - start
                frames = max(1, int(round(duration * fps)))
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
                inode=stat.st_ino,
                declared_s=declared,
            )
    except InputError:
        raise
    except (av.FFmpegError, OSError, StopIteration, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(Problem(str(path), "", f"not a readable video ({reason})")) from None


# --------------------------------------------------------------------------- reading frames


def fit_geometry(src: tuple[int, int], size: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """How ``fit`` maps a (height, width) frame into ``size``: scale, resized height and width,
    top and left padding (``fit_points`` maps pixel positions)."""
    h, w = src
    th, tw = size
    scale = min(th / h, tw / w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    return scale, nh, nw, (th - nh) // 2, (tw - nw) // 2


def fit_points(points: np.ndarray, src: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Where positions (..., 2) u, v in a (height, width) source frame land in ``fit``'s output.
    Both in pixel-index coordinates (pixel i's centre at i, as cv2 draws): the resize scales
    continuous coordinates (index + 0.5), each axis by its own resized/original ratio."""
    _, nh, nw, top, left = fit_geometry(src, size)
    h, w = src
    return (np.asarray(points, np.float64) + 0.5) * (nw / w, nh / h) - 0.5 + (left, top)


def fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a grey frame to fit (height, width) keeping its aspect, padded evenly with black.

    Even padding keeps a horizontally flipped frame aligned with the unflipped one.
    """
    h, w = frame.shape[:2]
    th, tw = size
    if (h, w) == (th, tw):
        return np.ascontiguousarray(frame)
    scale, nh, nw, top, left = fit_geometry((h, w), size)
    resized = frame if (nh, nw) == (h, w) else \
        cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if (nh, nw) == (th, tw):
        return resized
    out = np.empty((th, tw), frame.dtype)
    out[:top], out[top + nh:], out[:, :left], out[:, left + nw:] = 0, 0, 0, 0
    out[top:top + nh, left:left + nw] = resized
    return out


_Y_PLANE_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"}


def grey(frame: av.VideoFrame, copy: bool = True) -> np.ndarray:
    """A decoded frame's grey levels: its luma plane as it is (no colour conversion at all),
    or a conversion for formats without an 8-bit luma plane. ``copy=False`` returns a view
    of the decoder's buffer, valid only until the next frame is decoded."""
    if frame.format.name in _Y_PLANE_FORMATS:
        plane = frame.planes[0]
        view = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : frame.width]
        return view.copy() if copy else view
    return frame.to_ndarray(format="gray")


def _source(video: str | Path | BinaryIO) -> tuple[str, str | BinaryIO]:
    """(name for messages, what ``av.open`` reads) of a path or an open file (read from its start)."""
    if isinstance(video, (str, Path)):
        return str(video), str(video)
    video.seek(0)
    return str(getattr(video, "name", "video")), video


class FrameReader:
    """Every frame of a video in order, grey and fitted to ``size``, decoded ahead in a thread.

    PyAV with FFmpeg's own decoding threads, taking the luma plane as the grey image, is the
    fastest path here (about 1,000 frames/s of 720p H.264 on 2 cores, against about 720 for
    OpenCV's decode to BGR alone). The thread lets decoding overlap the model's compute.
    """

    def __init__(self, path: str | Path | BinaryIO, size: tuple[int, int] | None = None, prefetch: int = 64,
                 rate: float | None = None):
        """``path``: a video file, or one already open (``open_game_video``'s: a process that
        holds the store never opens a game's video by a path a link could redirect).
        ``rate``: yield frames at this rate (the label rate, 25) whatever the video's, each
        output frame j being the video frame nearest to time j / rate."""
        self.path, source = _source(path)
        self.size = size
        try:
            self._container = av.open(source)
            stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError) as exc:
            raise InputError(Problem(self.path, "", f"cannot open the video ({exc})")) from None
        stream.thread_type = "AUTO"
        self._stream = stream
        self.fps = float(stream.average_rate or stream.guessed_rate or 0)
        self.rate = rate if rate and self.fps and abs(rate - self.fps) > 1e-3 else None
        self.frame_count = int(stream.frames)
        if self.rate:
            self.frame_count = int(round(self.frame_count * self.rate / self.fps))
        #: Seconds the reader's thread spent decoding, and turning frames grey and fitting them
        #: (for ``core.infer.InferStats``: which stage bounds inference).
        self.decode_s = 0.0
        self.resize_s = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="frame-reader")
        self._thread.start()

    def _run(self) -> None:
        try:
            out = 0  # next output frame (resampling only)
            frames = self._container.decode(self._stream)
            clock = time.perf_counter
            for i in itertools.count():
                t = clock()
                frame = next(frames, None)
                self.decode_s += clock() - t
                if frame is None or self._stop.is_set():
                    break
                repeat = 1
                if self.rate:  # how many output frames have this video frame as their nearest
                    repeat = 0
                    while round(out * self.fps / self.rate) <= i:
                        repeat += 1
                        out += 1
                    if not repeat:
                        continue
                # fit() copies out of the decoder's buffer: one copy per frame, not two.
                t = clock()
                item = fit(grey(frame, copy=False), self.size) if self.size else grey(frame)
                self.resize_s += clock() - t
                for _ in range(repeat):
                    while not self._stop.is_set():
                        try:
                            self._queue.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
        except Exception as exc:  # handed to the consumer, not lost in the thread
            self._queue.put(InputError(Problem(self.path, "", f"decoding failed ({exc})")))
        finally:
            self._queue.put(None)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._container.close()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _frames(container, stream):
    """``container.decode(stream)`` that ends quietly at a packet that does not decode (the
    cut end of a truncated file, a damaged packet): the decoder is flushed so that the frames
    it holds back (B-frames) come out, the frames before it stand, and a frame asked for
    after it is reported missing by name instead of as a decoder error."""
    for packet in container.demux(stream):
        try:
            frames = stream.decode(packet)  # the empty packet at the end flushes the decoder
        except (av.InvalidDataError, av.EOFError):
            try:
                yield from stream.decode(None)
            except av.FFmpegError:
                pass
            return
        yield from frames


def read_frames(source: str | Path | BinaryIO, frames: list[int], size: tuple[int, int] | None = None,
                as_grey: bool = True, rate: float | None = None) -> dict[int, np.ndarray]:
    """Exact frames by index (random access): seek to the keyframe before the first, decode on.

    ``source`` is a path, or a binary file already open (``open_game_video``'s, checked to be
    the imported video): it is read from its start and left open for its owner to close.
    Frame numbers come from timestamps counted from the stream's first frame, not from
    counting after a seek, so they are exact whatever the keyframe interval; if a seek lands
    past the first wanted frame (some files' keyframe index), it backs off and seeks again.
    ``rate``: indices are at this rate (the label rate) and map to the nearest video frame.
    For training clips and the review filmstrip.
    """
    out: dict[int, np.ndarray] = {}
    if not frames:
        return out
    name, opened = _source(source)
    with av.open(opened) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate)
        tb = stream.time_base
        # label frame -> video frame
        wanted_of = {int(f): (int(round(int(f) * fps / rate)) if rate else int(f)) for f in frames}
        wanted = sorted(set(wanted_of.values()))
        first = next(_frames(container, stream), None)  # the stream's own frame 0
        if first is None or first.pts is None:
            raise InputError(Problem(name, "frame 0", "no decodable frame"))
        origin = first.pts
        decoded: dict[int, np.ndarray] = {}
        back = 1.0
        for _attempt in range(6):
            target = origin + int(max(0.0, wanted[0] / fps - back) / tb)
            container.seek(target, stream=stream, backward=True)
            start_index = None
            for frame in _frames(container, stream):
                if frame.pts is None:
                    continue
                index = int(round(float((frame.pts - origin) * tb) * fps))
                if start_index is None:
                    start_index = index
                    if index > wanted[0]:
                        break  # landed after the first wanted frame: seek further back
                if index > wanted[-1]:
                    break
                if index in wanted_of.values() and index not in decoded:
                    # The same grey as FrameReader's, so training sees inference's pixels.
                    img = grey(frame) if as_grey else frame.to_ndarray(format="bgr24")
                    decoded[index] = fit(img, size) if size else img
            if start_index is not None and start_index <= wanted[0]:
                break
            back *= 4
    for f, v in wanted_of.items():
        if v not in decoded:
            raise InputError(Problem(name, f"frame {f}", "past the end of the video or unreadable"))
        out[f] = decoded[v]
    return out


# --------------------------------------------------------------------------- a game's video


def _changed(st: os.stat_result, game: dict) -> str | None:
    """How a file differs from the video imported for ``game``; None if it does not."""
    if not stat_module.S_ISREG(st.st_mode):
        kind = ("a symbolic link" if stat_module.S_ISLNK(st.st_mode)
                else "a folder" if stat_module.S_ISDIR(st.st_mode) else "not a regular file")
        return f"it is now {kind}"
    if game.get("size_bytes") is not None and st.st_size != game["size_bytes"]:
        return f"its size is {st.st_size} bytes, not the {game['size_bytes']} imported"
    if game.get("video_mtime") is not None and abs(st.st_mtime - game["video_mtime"]) > 1e-6:
        return "it was modified after the import"
    # Databases from before schema 2 have no inode: size and time still tell a changed file.
    if game.get("video_inode") is not None and st.st_ino != game["video_inode"]:
        return "it is another file under the same name"
    return None


def open_game_video(game: dict) -> io.BufferedReader:
    """A game's video, opened for reading only if it is still the file that was imported.

    ``game`` is the store's row (``video_path``, ``size_bytes``, ``video_mtime``,
    ``video_inode``). Why: the path is reused long after the import, and whatever is at it
    then is read by the server. The path is checked with ``lstat`` *before* it is opened, so a
    link, a folder, a FIFO or another file (say a hard link to the workspace's database,
    whose opening and closing would drop the process's SQLite locks) is never opened; then it
    is opened without following links (``O_NOFOLLOW``; ``O_NONBLOCK`` so a FIFO swapped in
    meanwhile cannot hang the server) and the open file is checked again (``fstat``), so a
    swap between the two is caught too. Raises :class:`VideoChangedError` naming the game.
    The caller closes the file.
    """
    path = game.get("video_path")
    who = game.get("url_local") or f"game {game.get('id')}"
    if not path:
        raise BallspotError(f"{who}: this game has no video")

    def refuse(why: str) -> VideoChangedError:
        return VideoChangedError(
            f"{who}: its video {path} is not the file that was imported ({why}): it changed since, "
            "or was replaced by a link or a folder; re-import the game to use it"
        )

    try:
        before = os.lstat(path)
    except OSError as exc:
        raise refuse(f"cannot read it: {exc.strerror}") from None
    why = _changed(before, game)
    if why:
        raise refuse(why)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise refuse(f"cannot open it: {exc.strerror}") from None
    try:
        now = os.fstat(fd)
        why = _changed(now, game) or (
            "it was replaced while being opened"
            if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino) else None)
        if why:
            raise refuse(why)
        raw = io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    raw.name = path  # error messages name the file, not the descriptor
    return io.BufferedReader(raw)
