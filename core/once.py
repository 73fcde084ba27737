"""At most once: a request sent again under the same token gets the first answer, not a second run.

The review screen names each edit with a token. When an edit's reply is lost (the connection
drops after the server committed), the page sends the same edit again with the same token;
here the second request waits for, or reads, the first one's answer instead of applying the
edit twice (a second label added, an undo undone twice). Answers are kept in memory, the most
recent :data:`KEEP`: a retry comes within seconds, and a server that restarted meanwhile has
none to give (the edit then runs again, and an edit naming a revision is refused as stale).
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

from core.errors import BallspotError

T = TypeVar("T")

#: Answers kept: far more than the edits a page can retry at once.
KEEP = 2048
#: A token as the page makes it: letters, digits, '-' and '_', at most 64 of them.
TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")


def token_of(value: object) -> str | None:
    """A request's token, checked: None when it has none; an invalid one is an error, not ignored
    (ignoring it would run a retried edit twice)."""
    if value is None:
        return None
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        raise BallspotError("'token' must be 8 to 64 letters, digits, '-' or '_'")
    return value


class Once:
    """Runs each keyed call once; a call with a key already run (or running) gets its answer."""

    def __init__(self, keep: int = KEEP, wait_s: float = 120.0):
        self._keep, self._wait_s = keep, wait_s
        self._lock = threading.Lock()
        self._answers: OrderedDict[Hashable, object] = OrderedDict()
        self._running: dict[Hashable, threading.Event] = {}

    def run(self, key: Hashable | None, fn: Callable[[], T]) -> T:
        """``fn()``'s answer; with a ``key`` seen before, the answer it gave then (waiting for it
        if that call is still running). A call that raised keeps no answer: a retry runs it."""
        if key is None:
            return fn()
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
            running = self._running.get(key)
            if running is None:
                self._running[key] = threading.Event()
        if running is not None:
            running.wait(self._wait_s)
            with self._lock:
                if key in self._answers:
                    return self._answers[key]
            raise BallspotError("the same edit is still being saved: look again in a moment")
        try:
            answer = fn()
            with self._lock:
                self._answers[key] = answer
                while len(self._answers) > self._keep:
                    self._answers.popitem(last=False)
            return answer
        finally:
            with self._lock:
                self._running.pop(key).set()
