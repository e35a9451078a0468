"""What a sweep runs against: the local model (started, and revived once if it dies) and endpoint checks.

Every check here runs before anything is written, so a missing key, an unreachable base_url or an
unknown model name fails in seconds with a message that says what to fix.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import ModelError
from workbench.rag.chat import ChatModel
from workbench.rag.embeddings import make_embedder
from workbench.rag.retrieval import needs_vectors
from workbench.scoring import catalogue
from workbench.spec import JudgeConfig, SweepSpec, VariantConfig, content_hash
from workbench.spec_routing import chat_configs


@dataclass
class Environment:
    """The endpoints of one sweep: base URLs by provider and the local model server, if one was started."""

    base_urls: dict[str, str | None] = field(default_factory=dict)
    server: Any = None  # a LocalModelServer, if this sweep started one
    restarts: int = 0
    _restart_lock: asyncio.Lock | None = field(default=None, repr=False)

    @classmethod
    def open(cls, spec: SweepSpec, variants: list[VariantConfig], stack: ExitStack) -> Environment:
        """Start the local model if a variant or the judge needs it (stopped when `stack` closes)."""
        env = cls()
        needs_local = any(m.provider == "local" for v in variants for m in chat_configs(v.model))
        if needs_local or (spec.judge is not None and spec.judge.provider == "local"):
            from workbench.rag.local_model import LocalModelServer

            env.server = stack.enter_context(LocalModelServer(log_dir=Path(spec.home) / "logs"))
            env.base_urls["local"] = env.server.base_url
        return env

    def check_endpoints(self, variants: list[VariantConfig], judge: JudgeConfig | None = None) -> None:
        """One tiny call per distinct model and embedding endpoint, before any work: a bad key or URL
        fails here with one error naming the endpoint and the environment variable.

        Embedding endpoints are checked for the variants that embed (dense or hybrid retrieval) and for
        the judge's embedder (when one of its metrics embeds).
        """
        seen: set[str] = set()
        for m in (m for v in variants for m in chat_configs(v.model)):  # a routed variant: each of its models
            key = content_hash([m.provider, m.base_url, m.model, m.api_key_env])
            if key in seen:
                continue
            seen.add(key)
            ChatModel(m, base_url=self.base_urls.get(m.provider), max_retries=1).check()
        embeddings = [v.embedding for v in variants if needs_vectors(v.retrieval)]
        if judge is not None and any(catalogue.get(m).judge.embeddings for m in judge.metrics):
            embeddings.append(judge.embedding)
        for cfg in embeddings:
            if cfg is None or cfg.provider == "local" or cfg.vector_key in seen:
                continue  # the local MiniLM is verified when it loads
            seen.add(cfg.vector_key)
            check = getattr(make_embedder(cfg), "check", None)  # a registered provider may have none
            if check is not None:
                check()

    async def revive_local(self, variant: VariantConfig, notes: list[str]) -> bool:
        """The local server died mid-sweep: restart it once (same port); if it dies again, report it.

        True when the caller should try its call again; the restart is noted in `notes`.
        """
        if self.server is None or not any(m.provider == "local" for m in chat_configs(variant.model)):
            return False
        self._restart_lock = self._restart_lock or asyncio.Lock()
        seen = self.restarts
        async with self._restart_lock:
            if self.restarts > seen and self.server.alive():
                return True  # restarted while this call waited for the lock: try again at once
            for _ in range(20):  # a killed process can look alive for a moment before it is reaped
                if not self.server.alive():
                    break
                await asyncio.sleep(0.1)
            else:
                return True  # alive and well: another cell already restarted it
            if self.restarts >= 1:
                try:
                    self.server.check()
                except ModelError as exc:
                    raise ModelError(f"the local model server died again after a restart: {exc}") from None
                return False
            died = f"the local model server died mid-sweep (log {self.server.log_path}); restarted it once"
            await asyncio.to_thread(self.server.restart)
            self.restarts += 1
            notes.append(died)
            if self.server.base_url != self.base_urls.get("local"):
                raise ModelError(f"{died}, but it came back at {self.server.base_url} instead of {self.base_urls.get('local')}")
            return True
