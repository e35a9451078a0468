"""Freed heap memory given back to the operating system.

glibc's malloc keeps memory a program freed for reuse; after onnxruntime optimises a model's graph or runs a
batch of activations, tens of MB can sit freed but held, and every later peak of the process carries them.
"""

from __future__ import annotations

import ctypes


def give_back_memory() -> bool:
    """Return freed heap memory to the OS (`malloc_trim(0)`, a few ms); False where there is no glibc."""
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
