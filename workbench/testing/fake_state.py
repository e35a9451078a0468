"""The fake endpoint's state: its configuration, counters and seeded fault plan (see `fake_server`)."""

from __future__ import annotations

import random

from workbench.testing.fake_hostile import HOSTILE_KINDS
from workbench.testing.fake_timeline import Timeline

FAULT_KINDS = ("429", "500", "timeout", "malformed", "empty")  # the default cycle
ALL_FAULT_KINDS = FAULT_KINDS + HOSTILE_KINDS


# ---------------------------------------------------------------- server state


class Config:
    FIELDS = ("latency", "embed_latency", "fail_rate", "faults", "timeout_sleep", "retry_after", "seed", "dim",
              "trickle_interval", "huge_chars", "require_key")

    def __init__(self, latency=0.2, embed_latency=0.0, fail_rate=0.0, faults=FAULT_KINDS,
                 timeout_sleep=30.0, retry_after=1.0, seed=0, dim=384, trickle_interval=0.5,
                 huge_chars=20_000_000, require_key=None):
        self.latency = float(latency)
        self.embed_latency = float(embed_latency)
        self.fail_rate = float(fail_rate)
        self.faults = _parse_faults(faults)
        self.timeout_sleep = float(timeout_sleep)
        self.retry_after = float(retry_after)
        self.seed = int(seed)
        self.dim = int(dim)
        self.trickle_interval = float(trickle_interval)
        self.huge_chars = int(huge_chars)
        self.require_key = str(require_key) if require_key else None

    def update(self, values: dict) -> None:
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}; known: {list(self.FIELDS)}")
        merged = {**self.as_dict(), **values}
        self.__init__(**merged)

    def as_dict(self) -> dict:
        return {name: (list(v) if isinstance(v := getattr(self, name), tuple) else v) for name in self.FIELDS}


def _parse_faults(faults) -> tuple[str, ...]:
    if isinstance(faults, str):
        faults = [f for f in faults.split(",")]
    kinds = tuple(str(f).strip().lower() for f in faults if str(f).strip())
    bad = [k for k in kinds if k not in ALL_FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; choose among {','.join(ALL_FAULT_KINDS)}")
    return kinds


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.chat_calls = 0
        self.embedding_calls = 0
        self.embedding_inputs = 0
        self.faults_injected = {kind: 0 for kind in ALL_FAULT_KINDS}
        self.in_flight = 0
        self.max_in_flight = 0
        self.tokens_prompt = 0
        self.tokens_completion = 0
        self.tokens_embedding = 0
        self.timeline = Timeline()  # when the chat calls happened, distinct messages (fake_timeline.py)

    def snapshot(self) -> dict:
        return {
            "chat_calls": self.chat_calls,                  # every chat request, faulted or not
            "embedding_calls": self.embedding_calls,        # every embeddings request, faulted or not
            "embedding_inputs": self.embedding_inputs,      # texts embedded (non-faulted requests)
            "faults_injected": dict(self.faults_injected),  # by kind
            "faults_total": sum(self.faults_injected.values()),
            "in_flight": self.in_flight,                    # chat/embeddings requests in progress now
            "max_in_flight": self.max_in_flight,            # peak of in_flight since the last reset
            "tokens_prompt": self.tokens_prompt,            # chat prompt tokens (non-faulted requests)
            "tokens_completion": self.tokens_completion,    # chat completion tokens (non-faulted requests)
            "tokens_embedding": self.tokens_embedding,      # embeddings input tokens (non-faulted)
            **self.timeline.snapshot(),
        }


class FaultPlan:
    """Seeded, arrival-ordered decisions: fail with probability fail_rate, kinds round-robin."""

    def __init__(self, seed: int) -> None:
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.index = 0

    def draw(self, cfg: Config) -> str | None:
        if not cfg.faults or cfg.fail_rate <= 0:
            return None
        if self.rng.random() >= cfg.fail_rate:
            return None
        kind = cfg.faults[self.index % len(cfg.faults)]
        self.index += 1
        return kind
