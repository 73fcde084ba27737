"""Who may reach the app: the rules for ``--host`` and ``--auth``, in one place.

``launch.py`` checks them before it loads anything heavy (a weak password is refused at once,
not after the UI's libraries have loaded), and ``app.main`` applies the same rules when it serves.
"""
from __future__ import annotations

from core.errors import BallspotError

#: Names every local app answers to.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The shortest password ``--auth`` accepts.
MIN_PASSWORD = 8


def check_host(host: str, auth: list[str] | str | None) -> None:
    """Anyone who reaches the app can read the served videos and edit labels: listening beyond
    this machine needs a login."""
    if host not in LOCAL_HOSTS and not auth:
        raise BallspotError(f"--host {host} makes the app reachable from other machines; give --auth USER:PASS too")


def parse_auth(auth: str) -> tuple[str, str]:
    """``USER:PASS`` as (user, password); a missing user or a short password is refused."""
    user, sep, password = auth.partition(":")
    if not sep or not user.strip():
        raise BallspotError("--auth takes USER:PASS")
    if len(password) < MIN_PASSWORD:
        raise BallspotError(f"--auth: the password must have at least {MIN_PASSWORD} characters")
    return user.strip(), password
