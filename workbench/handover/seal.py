"""An export's hashes: `seal` adds them when it is written, `verify` checks them when it is read.

v2 (this version): `export_hash` covers the whole document but itself, so an edited metric, sweep id or
example is refused like an edited config; `field_hashes` (one short hash per field, two levels deep) lets the
error name the field that changed. The hash is tamper-evidence, not a signature: it catches edits made by
mistake or in good faith, and anyone can recompute it. Trust exports like code.

v1 files (the previous version) still load: what production runs from them (the variant and its corpus) was
covered by their hash, so refusing them would break deployed pipelines for no gain; their provenance never was
covered, and a warning says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError
from workbench.spec import VariantConfig, content_hash

FORMAT = "workbench.export/v2"
FORMAT_V1 = "workbench.export/v1"
HASHES = ("export_hash", "field_hashes")


def _fields(doc: dict) -> dict[str, Any]:
    """The document's fields two levels deep (`provenance.metrics`, `data.corpus`, `examples`, …)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in HASHES:
            continue
        if isinstance(value, dict) and value:
            out.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            out[key] = value
    return out


def _field_hashes(doc: dict) -> dict[str, str]:
    return {name: content_hash(value)[:12] for name, value in _fields(doc).items()}


def seal(doc: dict) -> dict:
    """`doc` with its field hashes and, second, its export_hash over everything else."""
    body = {k: v for k, v in doc.items() if k not in HASHES}
    body["field_hashes"] = _field_hashes(body)
    return {"format": body["format"], "export_hash": content_hash(body), **body}


def export_hash_v1(variant: dict, corpus: dict, corpus_digest: str) -> str:
    """What a v1 export's hash covered: the variant, its corpus source and the corpus digest."""
    return content_hash({"variant": variant, "corpus": corpus, "corpus_digest": corpus_digest})


def modified_fields(doc: dict) -> list[str]:
    stored = doc.get("field_hashes") if isinstance(doc.get("field_hashes"), dict) else {}
    current = _field_hashes(doc)
    changed = sorted(n for n in current.keys() | stored.keys() if stored.get(n) != current.get(n))
    return changed or ["export_hash"]


def verify(doc: dict, path: str | Path, variant: VariantConfig) -> None:
    """Refuse a document changed after export; `variant` is its already validated config."""
    data = doc["data"]
    if variant.hash != doc["variant_hash"]:
        raise ConfigError(
            f"{path}: the variant config does not match its hash (expected {str(doc['variant_hash'])[:12]}, "
            f"got {variant.hash[:12]}): the file was changed after export. Re-export it, or make the change "
            "in a sweep and export the new winner."
        )
    if doc["format"] == FORMAT_V1:
        if export_hash_v1(doc["variant"], data["corpus"], data["corpus_digest"]) != doc["export_hash"]:
            raise ConfigError(
                f"{path}: export_hash does not match the file's variant and data sections: the file was changed "
                "after export. Re-export it with `workbench export`."
            )
        warnings.warn(f"{path}: a v1 export: its hash does not cover its provenance (metrics, sweep id, examples); "
                      "re-export it to cover them", UserWarning, stacklevel=3)
        return
    if content_hash({k: v for k, v in doc.items() if k != "export_hash"}) != doc["export_hash"]:
        raise ConfigError(
            f"export file {path} was modified after export: field {', '.join(modified_fields(doc))} (its "
            "export_hash does not match). Re-export it with `workbench export`; an edited export would claim "
            "metrics or provenance its sweep never measured."
        )
