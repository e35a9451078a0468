"""The workbench as a user runs it (`workbench run spec.yaml`, a fresh process, start to exit) beside the tools a
user would pick instead, on the same model calls (issue 20).

    python experiments/benchmarks/peers.py            # 8 variants x 100 SQuAD questions, L = 0.2 s, 3 rounds
    python experiments/benchmarks/peers.py --quick    # CI: 2 variants x 6 questions, invariants only

Workload: the speed benchmark's spec (run.py) against the latency endpoint, 16 calls in flight; ideal =
ceil(unique messages / 16) * L. A preparatory run of the CLI (not measured) gives the retrieved prompts,
which every peer replays: a hand-written asyncio loop (the floor), ragas 0.4's @experiment, MLflow's
genai.evaluate and promptfoo (npm, installed into a temporary folder; skipped with a line if npm is
absent). Each run is a fresh process; tools take turns in every round; medians and ranges are printed
with the load. Peak RSS: psutil, sampled every 50 ms, of the process and of its whole tree.
The CLI runs cold (fresh home and store) and warm (indexes built, --no-cache, fresh store).

Prints `name: value` lines (context after two spaces), `#` lines for context. Exits 1 when an invariant
breaks: a run failed, the CLI made more calls than there are unique messages (cold), or its reported
wall ends before its last variant's table was logged.
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from peer_scripts import PROGRAMS, promptfoo_config  # noqa: E402
from run import CONCURRENCY, FULL, make_spec, out, note  # noqa: E402

QUICK = dict(FULL, questions=6, latency=0.05, prompts=2)
PROMPTFOO = "promptfoo@0.121"


def measure(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None, store: Path | None = None) -> dict:
    """Run `cmd` as a fresh process: wall, exit code, peak RSS (process, tree), when `store` first holds a
    trace or a logged metric (epoch s), its output."""
    import psutil

    started = time.time()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    ps, peak, peak_tree, visible = psutil.Process(proc.pid), 0, 0, None
    while proc.poll() is None:
        try:
            own = ps.memory_info().rss
            tree = own + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak, peak_tree = max(peak, own), max(peak_tree, tree)
        except psutil.Error:
            pass
        if store is not None and visible is None and _answer_stored(store):
            visible = time.time()
        time.sleep(0.05)
    ended = time.time()
    log.seek(0)
    return {"wall": ended - started, "started": started, "ended": ended, "rc": proc.returncode,
            "rss_mb": peak / 2**20, "rss_tree_mb": peak_tree / 2**20, "visible": visible,
            "output": log.read().decode("utf-8", "replace")}


def _answer_stored(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as con:
            return bool(con.execute("SELECT (SELECT count(*) FROM trace_info) + (SELECT count(*) FROM metrics)").fetchone()[0])
    except sqlite3.Error:
        return False  # not created yet, or mid-migration


def logged_before_wall(folder: Path) -> tuple[bool, float]:
    """Does the parent run's end (its start + the reported wall_s) come after every variant's table was written?
    Answers (ok, seconds the last table came after the wall's end; <= 0 is good)."""
    with sqlite3.connect(folder / "mlruns" / "mlflow.db") as con:
        (end_ms,) = con.execute("SELECT r.end_time FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                                "WHERE t.key = 'workbench.kind' AND t.value = 'sweep'").fetchone()
    tables = list((folder / "mlruns" / "artifacts").rglob("eval_results.json"))
    late = max(p.stat().st_mtime for p in tables) - end_ms / 1000 if tables else math.inf
    return late <= 0.05, late  # the file's clock and the run's are the same machine's


def cli_run(tmp: Path, name: str, spec: dict, endpoint, *, no_cache: bool = False, home: Path | None = None) -> dict:
    folder = tmp / name
    folder.mkdir(parents=True)
    spec = dict(spec, tracking={**spec["tracking"], "tracking_uri": f"sqlite:///{folder}/mlruns/mlflow.db",
                                "artifact_location": str(folder / "mlruns" / "artifacts")},
                home=str(home or folder / "home"))
    (folder / "spec.yaml").write_text(json.dumps(spec), encoding="utf-8")  # JSON is YAML
    cmd = [sys.executable, "-m", "workbench.cli", "run", str(folder / "spec.yaml"), "--no-progress"]
    endpoint.reset_stats()
    run = measure(cmd + (["--no-cache"] if no_cache else []), cwd=folder, store=folder / "mlruns" / "mlflow.db")
    run.update(endpoint.stats(), folder=folder)
    if run["rc"] == 0:
        run["logged_ok"], run["late_s"] = logged_before_wall(folder)
    return run


def peer_run(tmp: Path, name: str, work_file: Path, endpoint) -> dict:
    folder = tmp / name
    folder.mkdir(parents=True)
    script = folder / "peer.py"
    script.write_text(PROGRAMS[name.split("-")[0]], encoding="utf-8")
    endpoint.reset_stats()
    env = dict(os.environ, PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
    run = measure([sys.executable, str(script), str(work_file), str(folder)], env=env, cwd=folder)
    return {**run, **endpoint.stats()}


def promptfoo_run(tmp: Path, name: str, bin_path: Path, work: dict, endpoint, no_cache: bool) -> dict:
    folder = tmp / name
    folder.mkdir(parents=True)
    config = promptfoo_config(work, folder)
    env = dict(os.environ, PROMPTFOO_CACHE_PATH=str(folder / "cache"), PROMPTFOO_CONFIG_DIR=str(folder / "pf"),
               PROMPTFOO_DISABLE_TELEMETRY="1", PROMPTFOO_DISABLE_UPDATE="1", OPENAI_API_KEY="none")
    cmd = [str(bin_path), "eval", "-c", str(config), "--max-concurrency", str(CONCURRENCY), "--no-progress-bar",
           "--no-table", "-o", str(folder / "out.json")] + (["--no-cache"] if no_cache else [])
    endpoint.reset_stats()
    return {**measure(cmd, env=env, cwd=folder), **endpoint.stats()}


def install_promptfoo(tmp: Path, installed: Path | None = None) -> Path | None:
    if installed is not None and (installed / "node_modules" / ".bin" / "promptfoo").exists():
        note(f"promptfoo: the copy installed in {installed}")
        return installed / "node_modules" / ".bin" / "promptfoo"
    npm = shutil.which("npm")
    if npm is None:
        note("promptfoo: skipped (npm is not installed)")
        return None
    folder = tmp / "promptfoo"
    folder.mkdir()
    t0 = time.perf_counter()
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", PROMPTFOO], cwd=folder,
                          capture_output=True, text=True)
    path = folder / "node_modules" / ".bin" / "promptfoo"
    if done.returncode != 0 or not path.exists():
        note(f"promptfoo: skipped (npm install {PROMPTFOO} failed: {done.stderr.strip()[-300:]})")
        return None
    note(f"promptfoo: {PROMPTFOO} installed into a temporary folder in {time.perf_counter() - t0:.0f} s")
    return path


def prepare(tmp: Path, spec: dict, endpoint) -> tuple[dict, dict]:
    """A CLI run (not measured) whose sweep record gives every cell's messages, grouped by variant."""
    prep = cli_run(tmp, "prep", spec, endpoint)
    if prep["rc"] != 0:
        raise SystemExit(f"the preparatory workbench run failed:\n{prep['output'][-3000:]}")
    variants: dict[str, list] = {}
    for cells in (prep["folder"] / "home").rglob("cells.jsonl"):
        for line in cells.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            variants.setdefault(row["variant"], []).append(row["messages"])
    return {"base_url": endpoint.base_url, "concurrency": CONCURRENCY, "variants": variants}, prep


def summary(runs: list[dict], key: str = "wall") -> str:
    values = [r[key] for r in runs]
    return f"{statistics.median(values):.4g}"


def span(runs: list[dict], key: str = "wall") -> str:
    values = [r[key] for r in runs]
    return f"{min(values):.4g}-{max(values):.4g}"  # the median's precision: a range never seems to miss it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized: invariants only (a few seconds)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated tools to leave out (asyncio,ragas,mlflow,promptfoo)")
    parser.add_argument("--questions", type=int, help="questions per variant (default 100; a smoke test of every peer)")
    parser.add_argument("--promptfoo", type=Path, help="a folder where promptfoo is installed already (npm install promptfoo)")
    args = parser.parse_args(argv)
    from workbench.testing.fake_endpoint import LatencyEndpoint

    cfg = dict(QUICK if args.quick else FULL)
    if args.questions:
        cfg["questions"] = args.questions
    rounds = 1 if args.quick else args.rounds
    skip = set(filter(None, args.skip.split(",")))
    if args.quick:
        skip |= {"ragas", "mlflow", "promptfoo"}
    broken: list[str] = []
    loads: list[float] = []
    note(f"mode={'quick' if args.quick else 'full'} cpus={os.cpu_count()} load1={os.getloadavg()[0]:.2f} "
         f"L={cfg['latency']}s concurrency={CONCURRENCY} rounds={rounds} date={time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    # Every peer runs from bytecode pip compiled at install; an editable install compiles the workbench on first
    # import, unless PYTHONDONTWRITEBYTECODE is set (as on this machine): then every fresh process would pay ~0.1 s
    # to compile it again. Compiled once here, as pip does for an installed package.
    compileall.compile_dir(str(ROOT / "workbench"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="wb-peers-") as tmpdir, LatencyEndpoint(latency=cfg["latency"]) as ep:
        tmp = Path(tmpdir)
        spec = make_spec(tmp / "unused", "peers", ep.base_url, cfg)
        if args.quick:  # no dense index: no embedding model, a few seconds
            spec["space"].update(chunking=spec["space"]["chunking"][:1], retrieval=[{"kind": "bm25", "k": 3}])
        work, prep = prepare(tmp, spec, ep)
        work_file = tmp / "messages.json"
        work_file.write_text(json.dumps(work), encoding="utf-8")
        unique = prep["unique_messages"]
        total = sum(len(ms) for ms in work["variants"].values())
        ideal = math.ceil(unique / CONCURRENCY) * cfg["latency"]
        note(f"workload: {len(work['variants'])} variants, {total} cells, {unique} unique messages; ideal "
             f"ceil({unique}/{CONCURRENCY})*{cfg['latency']} = {ideal:.2f} s")
        pf = None if "promptfoo" in skip else install_promptfoo(tmp, args.promptfoo)
        results: dict[str, list[dict]] = {}
        for r in range(rounds):
            tools = ["cli_cold", "cli_warm", *(p for p in PROGRAMS if p not in skip)]
            if pf is not None:
                tools += ["promptfoo", "promptfoo_nocache"]
            if args.quick:
                tools.remove("cli_warm")
            for tool in tools:
                loads.append(os.getloadavg()[0])
                name = f"{tool}-{r}"
                if tool == "cli_cold":
                    run = cli_run(tmp, name, spec, ep)
                elif tool == "cli_warm":
                    run = cli_run(tmp, name, spec, ep, no_cache=True, home=prep["folder"] / "home")
                elif tool.startswith("promptfoo"):
                    run = promptfoo_run(tmp, name, pf, work, ep, no_cache=tool.endswith("nocache"))
                else:
                    run = peer_run(tmp, name, work_file, ep)
                run["load"] = loads[-1]
                results.setdefault(tool, []).append(run)
                phases = (f", first call at {run['first_call_at'] - run['started']:.2f} s, last call to exit "
                          f"{run['ended'] - run['last_call_end_at']:.2f} s") if run.get("first_call_at") else ""
                note(f"round {r + 1} {tool}: {run['wall']:.2f} s{phases}, calls {run['chat_calls']}, rc {run['rc']}, "
                     f"RSS {run['rss_mb']:.0f} MB (tree {run['rss_tree_mb']:.0f}), load1 {run['load']:.2f}")
                if run["rc"] != 0:
                    broken.append(f"{tool} round {r + 1} exited {run['rc']}: {run['output'][-1500:]}")
        report(results, ideal, unique, total, broken)
    note(f"load1 during the runs: median {statistics.median(loads):.2f}, range {min(loads):.2f}-{max(loads):.2f}")
    for problem in broken:
        print(f"INVARIANT BROKEN: {problem}", flush=True)
    return 1 if broken else 0


def report(results: dict[str, list[dict]], ideal: float, unique: int, total: int, broken: list[str]) -> None:
    cold = [r for r in results["cli_cold"] if r["rc"] == 0]
    if not cold:
        return
    for r in cold:
        if r["chat_calls"] != unique:
            broken.append(f"cold CLI run made {r['chat_calls']} calls for {unique} unique messages")
        if not r["logged_ok"]:
            broken.append(f"the CLI's reported wall ended {r['late_s']:.2f} s before its last table was logged")
    for r in cold + results.get("cli_warm", []):
        r["to_first_call"] = r["first_call_at"] - r["started"]
        r["tail"] = r["ended"] - r["last_call_end_at"]
        r["visible_after_first_call"] = (r["visible"] or r["ended"]) - r["first_call_at"]
    out("cli_wall_vs_ideal_cold", statistics.median(r["wall"] for r in cold) / ideal,
        f"median {summary(cold)} s (range {span(cold)}), fresh home and store; goal <= 1.6")
    warm = [r for r in results.get("cli_warm", []) if r["rc"] == 0]
    if warm:
        out("cli_wall_vs_ideal_warm", statistics.median(r["wall"] for r in warm) / ideal,
            f"median {summary(warm)} s (range {span(warm)}), indexes built, --no-cache, fresh store; goal <= 1.3")
    both = cold + warm
    out("cli_start_to_first_call_s", float(summary(both, "to_first_call")), f"range {span(both, 'to_first_call')}")
    out("cli_last_call_to_exit_s", float(summary(both, "tail")), f"range {span(both, 'tail')}; goal <= 1")
    out("cli_first_answer_visible_s", float(summary(both, "visible_after_first_call")),
        f"after the first call, a trace or metric in the store; range {span(both, 'visible_after_first_call')}; goal <= 3")
    out("cli_peak_rss_mb", float(summary(both, "rss_mb")), f"range {span(both, 'rss_mb')}; whole tree "
        f"{summary(both, 'rss_tree_mb')} MB (the MLflow helper included); goal <= 600")
    out("cli_calls_minus_unique_messages", max(r["chat_calls"] for r in cold) - unique,
        f"cold runs; {unique} unique messages in {total} cells; goal 0")
    reported = [float(line.split(" in ")[1].split(" s;")[0]) for r in cold for line in r["output"].splitlines()
                if line.startswith("sweep ") and " variants in " in line]
    if reported:
        out("cli_reported_wall_s", statistics.median(reported), "the CLI's own 'variants in X s' line (cold), "
            "from run_sweep's call until every answer is logged")
    peers = {}
    for tool, runs in results.items():
        ok = [r for r in runs if r["rc"] == 0]
        if tool.startswith("cli") or not ok:
            continue
        peers[tool] = statistics.median(r["wall"] for r in ok)
        out(f"peer_{tool}_wall_s", peers[tool], f"range {span(ok)}, x ideal {peers[tool] / ideal:.2f}, calls "
            f"{'/'.join(str(r['chat_calls']) for r in ok)}, peak RSS {summary(ok, 'rss_mb')} MB")
    capable = {k: v for k, v in peers.items() if k != "asyncio"}
    if warm and capable:
        best = min(capable, key=capable.get)
        out("cli_vs_best_peer", statistics.median(r["wall"] for r in warm) / capable[best],
            f"CLI warm / fastest peer ({best}, {capable[best]:.2f} s), asyncio floor excluded; goal <= 0.9")


if __name__ == "__main__":
    sys.exit(main())
