"""When the latency endpoint's chat calls happened and how many distinct message lists it was sent: what a
benchmark of a whole command needs from the endpoint (start to first call, last call to exit, calls versus
unique messages). Times are epoch seconds (`time.time()`), comparable across processes on one machine."""

from __future__ import annotations

import hashlib
import json
import time


class Timeline:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.first_call_at: float | None = None
        self.last_call_end_at: float | None = None
        self._unique: set[str] = set()

    def started(self) -> None:
        if self.first_call_at is None:
            self.first_call_at = time.time()

    def ended(self) -> None:
        self.last_call_end_at = time.time()

    def saw(self, body: dict) -> None:
        """A request's model and messages, as one digest (what a cache would key on)."""
        text = json.dumps([body.get("model"), body.get("messages")], sort_keys=True, default=str)
        self._unique.add(hashlib.sha256(text.encode("utf-8")).hexdigest())

    def snapshot(self) -> dict:
        return {"first_call_at": self.first_call_at,        # epoch s: the first chat request arrived
                "last_call_end_at": self.last_call_end_at,  # epoch s: the last chat request was answered
                "unique_messages": len(self._unique)}       # distinct (model, messages) among chat requests
