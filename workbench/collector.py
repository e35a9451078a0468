"""The cyclic garbage collector, paused while a program loads its libraries.

Imports build a heap that only grows (modules, classes, functions, none of it garbage), yet each few thousand
new objects start a collection, and the full ones walk the whole heap again: ~12% of a multi-second start-up.
A program (never a library caller: their collector is theirs) pauses it at its start; once it has loaded what
it needs, `loaded()` freezes what is there (never walked again) and lets collection resume.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Collect nothing until `loaded()`; only the program's own entry point calls this."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def loaded() -> None:
    """What is loaded by now lives on: freeze it, out of every later collection's walk, and resume collection
    if `pause()` stopped it (a collector its caller turned off stays off)."""
    global _paused
    gc.freeze()
    if _paused:
        gc.enable()
        _paused = False


def paused() -> bool:
    return _paused
