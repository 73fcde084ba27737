"""Synthetic soccer matches with exact ground truth: the offline demo, tests and benchmarks.

One game = an event script drawn from the statistics of real labels (``events``, with the
table that ``stats`` writes to ``match_stats.json``), a world that acts it out (``world``),
and a broadcast-like rendering (``render``), written by ``game`` in SoccerNet's layout:

    OUT/synthetic/seed-<S>/<NN> - Reds - Blues/<H>p.mp4          H.264, 25 fps, short GOP, faststart
    OUT/synthetic/seed-<S>/<NN> - Reds - Blues/Labels-ball.json  SoccerNet format
    OUT/synthetic/seed-<S>/<NN> - Reds - Blues/positions.npz     ball, people, camera, per frame (``sidecar``)

The same seed and options give the same labels and the same frames.

The public names below are imported from their modules on first use (PEP 562): pretraining
reads sidecars through ``core.synth.sidecar``, which runs this file first, and that must not
load the world simulation and the OpenCV drawing code that only rendering needs.
"""
import importlib

#: Public name -> the module of this package that defines it.
_HOMES = {
    "SynthConfig": "game", "plan": "game", "generate_game": "game", "generate": "game",
    "game_name": "game", "labels_document": "game", "write_video": "game", "LEAGUE": "game",
    "RenderOptions": "render",
    "SIDECAR": "sidecar", "Sidecar": "sidecar", "load_sidecar": "sidecar",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # later look-ups find it without calling this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
