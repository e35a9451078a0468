"""The on-disk record of a sweep: its spec, every finished cell, its status — what makes resume work.

`<home>/sweeps/<sweep id>/` holds `spec.json`, `cells.jsonl` (one line per finished cell, appended
and flushed the moment it finishes) and `status.json`. A sweep killed with `kill -9` leaves status
RUNNING with a dead pid; running the same spec again resumes it: finished cells are loaded, only
the missing ones run, and the same MLflow parent run is reused.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.files import storage_error, write_atomically
from workbench.spec import SweepSpec, content_hash

log = logging.getLogger(__name__)


def resume_key(spec: SweepSpec) -> str:
    """What must match to resume: everything but how and where it runs (execution settings, vector store)
    and how far (budget)."""
    return content_hash(spec.stable_dump(exclude={"execution", "vector_store", "budget"}))


def repeat_of(row: dict[str, Any]) -> int:
    """A row's repeat index: 0 when it has none (a sweep without repeats) or it is not a whole number."""
    value = row.get("repeat")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class SweepRecord:
    directory: Path

    @property
    def sweep_id(self) -> str:
        return self.directory.name

    @property
    def cells_path(self) -> Path:
        return self.directory / "cells.jsonl"

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.directory / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_status(self, **fields: Any) -> None:
        data = self.status() | fields
        write_atomically(self.directory / "status.json", json.dumps(data, indent=2))  # never a half-written status

    def cells(self) -> list[dict[str, Any]]:
        """Finished cells, last write wins per (variant, question, repeat); a torn last line (kill -9) is ignored.

        Any other line that is not a cell (damaged, edited by hand) is skipped with one warning naming the
        file and its lines: that cell is simply not finished, so it runs again."""
        if not self.cells_path.exists():
            return []
        out: dict[tuple[str, str, int], dict[str, Any]] = {}
        bad: list[int] = []
        with self.cells_path.open(encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                if lineno < len(lines) or line.endswith("\n"):  # not the torn tail of a killed write
                    bad.append(lineno)
                continue
            if not (isinstance(row, dict) and isinstance(row.get("variant_hash"), str)
                    and isinstance(row.get("question_id"), str)):
                bad.append(lineno)
                continue
            out[(row["variant_hash"], row["question_id"], repeat_of(row))] = row
        if bad:
            log.warning("%s: skipped %d line(s) that are not finished cells (line %s); those cells run again",
                        self.cells_path, len(bad), ", ".join(map(str, bad[:10])) + (" …" if len(bad) > 10 else ""))
        return list(out.values())

    def repair(self) -> None:
        """Cut a torn last line (a kill during a write) so appended cells start on a line of their own."""
        if not self.cells_path.exists():
            return
        data = self.cells_path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.cells_path.open("r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def resumable(self) -> bool:
        st = self.status()
        if st.get("status") == "FINISHED":
            return False
        return st.get("status") in ("KILLED", "FAILED") or not _pid_alive(st.get("pid"))


def create_record(home: Path, sweep_id: str, spec: SweepSpec, data_info: dict[str, Any] | None = None) -> SweepRecord:
    record = SweepRecord(home / "sweeps" / sweep_id)
    try:
        record.directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(record.directory, exc) from None
    write_atomically(record.directory / "spec.json", spec.model_dump_json(indent=2))
    record.write_status(status="RUNNING", pid=os.getpid(), resume_key=resume_key(spec), data=data_info or {})
    return record


def _records_of(home: Path, spec: SweepSpec):
    """(record, status) of every sweep of this same spec under `home`, newest first."""
    root = home / "sweeps"
    if not root.is_dir():
        return
    key = resume_key(spec)
    for directory in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
        record = SweepRecord(directory)
        st = record.status()
        if st.get("resume_key") == key:
            yield record, st


def find_finished(home: Path, spec: SweepSpec, data_info: dict[str, Any]) -> SweepRecord | None:
    """The newest FINISHED sweep of this same spec over the same data (corpus and eval digests), if any."""
    return next((r for r, st in _records_of(home, spec) if st.get("status") == "FINISHED" and st.get("data") == data_info), None)


def find_resumable(home: Path, spec: SweepSpec, data_info: dict[str, Any] | None = None) -> SweepRecord | None:
    """The newest unfinished sweep of this same spec whose process is gone, if any. With `data_info`,
    a record made over other data (the corpus or eval file changed since) is not resumed."""
    for record, st in _records_of(home, spec):
        if not record.resumable():
            continue
        if data_info is not None and st.get("data") and st["data"] != data_info:
            continue
        return record
    return None
