"""SoccerNet's own split lists for Ball Action Spotting, read from the installed package."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

SPLITS: tuple[str, ...] = ("train", "valid", "test", "challenge")


@lru_cache(maxsize=1)
def _split_table() -> dict[str, str]:
    """UrlLocal -> split, from ``SoccerNet/data/Ball{Train,Valid,Test,Challenge}.json``."""
    table: dict[str, str] = {}
    data = resources.files("SoccerNet") / "data"
    for split in SPLITS:
        listing = json.loads((data / f"Ball{split.capitalize()}.json").read_text())
        for league, seasons in listing.items():
            for season, games in seasons.items():
                for game in games:
                    table[f"{league}/{season}/{game}"] = split
    return table


def split_of(url_local: str) -> str | None:
    """The SoccerNet split a known game belongs to, else None."""
    return _split_table().get(url_local.strip("/"))
