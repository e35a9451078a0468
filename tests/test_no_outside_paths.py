"""The code never points at files outside the repository: data it uses is shipped in experiments/data
with its attribution. Guards against a path to the machine's shared data coming back."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".yaml", ".yml", ".ipynb", ".md"}
# Split so this file does not match itself.
OUTSIDE = "/work/" + "shared"


def _allowed(path: Path, root: Path) -> bool:
    """Measured results (RESULTS_*.md) and the shipped data's READMEs/attributions may cite where
    figures or files came from; nothing else may name the path."""
    rel = path.relative_to(root)
    if path.name.startswith("RESULTS_"):
        return True
    return rel.parts[:2] == ("experiments", "data") and path.suffix == ".md"


def offenders(root: Path = ROOT) -> list[str]:
    found = []
    for top in ("tests", "workbench", "experiments"):
        for path in sorted((root / top).rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file() or _allowed(path, root):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            lines = [n for n, line in enumerate(text.splitlines(), 1) if OUTSIDE in line]
            if lines:
                found.append(f"{path.relative_to(root)}:{','.join(map(str, lines))}")
    return found


def test_no_code_points_at_the_shared_data_folder():
    found = offenders()
    assert not found, (
        f"these files name {OUTSIDE}; copy what they need into experiments/data/ (with a README.md: "
        f"origin, license) or take the path as an option: {found}"
    )


def test_the_guard_finds_a_planted_path(tmp_path):
    """The check can fail: a planted path in a spec is reported with its file and line, a RESULTS file is not."""
    for top in ("tests", "workbench", "experiments/benchmarks"):
        (tmp_path / top).mkdir(parents=True)
    (tmp_path / "experiments" / "x.yaml").write_text(f"a: 1\npath: {OUTSIDE}/data/x\n", encoding="utf-8")
    (tmp_path / "experiments" / "benchmarks" / "RESULTS_x.md").write_text(f"{OUTSIDE}/data\n", encoding="utf-8")
    (tmp_path / "experiments" / "data" / "d").mkdir(parents=True)
    (tmp_path / "experiments" / "data" / "d" / "README.md").write_text(f"from {OUTSIDE}\n", encoding="utf-8")
    (tmp_path / "tests" / "t.py").write_text(f"P = '{OUTSIDE}/x'\n", encoding="utf-8")
    assert offenders(tmp_path) == ["tests/t.py:1", "experiments/x.yaml:2"]
