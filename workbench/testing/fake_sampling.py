"""The fake endpoint samples like a real model: at temperature > 0 a request's `seed` changes the answer.

Answers are a hash of the messages (`fake_content.make_answer`); a sampled request adds its seed to what is
hashed, so the same seed gives the same answer (reproducible) and another seed most often another one —
what repeats (`spec_repeats`) rely on. Greedy requests (temperature 0, or no seed) are unchanged.
"""

from __future__ import annotations

from typing import Any


def sampled(messages: list, body: dict[str, Any]) -> list:
    """The messages an answer is drawn from: with the seed of a sampled request appended (not a user turn,
    so the answer's words still come from the last user message)."""
    temperature, seed = body.get("temperature"), body.get("seed")
    if isinstance(temperature, (int, float)) and temperature > 0 and isinstance(seed, int) and not isinstance(seed, bool):
        return [*messages, {"role": "sampling", "content": f"seed {seed}"}]
    return messages
