"""Runs the cases on each database and writes the report."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from .harness import (FULL, PROJECT_ROOT, QUICK, BenchEnv, CaseResult, CaseUnavailable, ScratchDatabases,
                      machine_info, redis_for_bench, temp_workdir)
from .report import write_report

# In the order: name -> module in bench.cases with run(env) -> CaseResult.
CASES = {
    "fanout": "fanout",
    "fanout_inapp": "fanout",
    "fanout_naive": "fanout",
    "rankings": "rankings",
    "digests": "digests",
    "center": "center",
    "throughput": "workers",
    "e2e": "workers",
    "memory": "workers",
}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes ~50-100x smaller (CI)")
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), metavar="CASE",
                        help=f"run only these cases ({', '.join(CASES)})")
    parser.add_argument("--databases", nargs="+", choices=("sqlite", "postgresql"),
                        default=["sqlite", "postgresql"])
    parser.add_argument("--output", type=Path, help="report path (default BENCHMARKS.md; "
                                                    "instance/BENCHMARKS.quick.md with --quick)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--repeats", type=int, help="timed runs per side (default 3)")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=VALUE",
                        help="override one size, e.g. --size digest_users=2000 (names: see bench/harness.py Sizes)")
    parser.add_argument("--from-json", type=Path, nargs="+",
                        help="only re-render the report from --json files (a later file's result for the same "
                             "case and database replaces an earlier one's)")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's machine section")
    return parser.parse_args(argv)


def run_case(name: str, env: BenchEnv) -> CaseResult:
    module = importlib.import_module(f"bench.cases.{CASES[name]}")
    runner = getattr(module, f"run_{name}", None) or module.run
    started = time.perf_counter()
    try:
        env.reset()
        result = runner(env)
    except CaseUnavailable as exc:
        result = CaseResult.not_run(name, env.kind, str(exc), target=getattr(module, "TARGETS", {}).get(name, ""))
    except Exception as exc:  # one broken case must not lose the others' numbers
        traceback.print_exc()
        result = CaseResult(case=name, database=env.kind, status="error",
                            reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    result.elapsed = time.perf_counter() - started
    return result


def _stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # so the finally blocks drop the scratch databases and stop Redis


def main(argv=None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = dataclasses.replace(sizes, repeats=args.repeats)
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in {f.name for f in dataclasses.fields(sizes)} or not value.isdigit():
            raise SystemExit(f"python -m bench: --size {item!r}: expected NAME=NUMBER with NAME one of "
                             f"{', '.join(f.name for f in dataclasses.fields(sizes))}")
        sizes = dataclasses.replace(sizes, **{name: int(value)})
    if args.from_json:
        return rerender(args.from_json, args.output or PROJECT_ROOT / "BENCHMARKS.md")
    output = args.output or (PROJECT_ROOT / "instance" / "BENCHMARKS.quick.md" if args.quick
                             else PROJECT_ROOT / "BENCHMARKS.md")
    names = args.only or list(CASES)
    pg_url = os.environ.get("BENCH_DATABASE_URL")
    workdir = temp_workdir()
    databases = ScratchDatabases(workdir)
    results: list[CaseResult] = []
    skipped: list[str] = []
    started_at = datetime.now(timezone.utc)
    try:
        with redis_for_bench(workdir) as (redis_url, redis_source):
            machine = machine_info(pg_url, redis_url)
            machine["redis_source"] = redis_source
            for kind in args.databases:
                if kind == "postgresql" and not pg_url:
                    skipped.append("PostgreSQL: not run (BENCH_DATABASE_URL is unset)")
                    continue
                env = BenchEnv(kind, databases.url(kind), redis_url, sizes, workdir)
                try:
                    for name in names:
                        print(f"bench: {kind}: {name} ...", file=sys.stderr, flush=True)
                        result = run_case(name, env)
                        print(f"bench: {kind}: {name}: {result.status} {summary(result)} "
                              f"({result.elapsed:.0f}s)", file=sys.stderr, flush=True)
                        results.append(result)
                finally:
                    env.dispose()
    finally:
        databases.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    machine["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    machine["notes"] = args.note + skipped
    meta = {"mode": "quick" if args.quick else "full", "sizes": dataclasses.asdict(sizes),
            "started_at": started_at.isoformat(timespec="seconds"),
            "duration_s": round((datetime.now(timezone.utc) - started_at).total_seconds()),
            "command": command_line(sys.argv[1:] if argv is None else argv)}
    output.parent.mkdir(parents=True, exist_ok=True)
    write_report(output, results, machine, meta)
    print(f"bench: wrote {output}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "machine": machine,
                                         "results": [dataclasses.asdict(r) for r in results]}, indent=2,
                                        default=str))
    return 1 if any(r.status == "error" for r in results) else 0


def command_line(argv) -> str:
    """The command for the report, without the --note texts (they are listed under Machine)."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        else:
            shown.append(arg)
    return "python -m bench " + " ".join(shown)


def summary(r: CaseResult) -> str:
    if r.status != "ok":
        return r.reason
    ratio = f"ratio {r.ratio:.2f}" if r.ratio is not None else ""
    return f"{ratio} target {r.target}: {'met' if r.met else 'MISSED'}"


def rerender(paths: list[Path], output: Path) -> int:
    """Write the report again from saved results (e.g. after editing bench/FINDINGS.md, or to
    combine a re-run of some cases with the run they complete)."""
    from .harness import Measurement

    merged: dict[tuple[str, str], CaseResult] = {}
    meta = machine = None
    for path in paths:
        data = json.loads(path.read_text())
        if meta is None:
            meta, machine = data["meta"], data["machine"]
            meta["command"] = meta["command"].split(" --note ")[0]
        else:
            meta["command"] += f"` + `{data['meta']['command'].split(' --note ')[0]}"
            meta["duration_s"] += data["meta"]["duration_s"]
            machine["notes"] = machine.get("notes", []) + [
                n for n in data["machine"].get("notes", []) if n not in machine.get("notes", [])]
            machine["loadavg_end"] = data["machine"].get("loadavg_end", [])
        for r in data["results"]:
            for side in ("ours", "baseline"):
                if r.get(side):
                    r[side] = Measurement(**r[side])
            merged[(r["case"], r["database"])] = CaseResult(**r)
    order = {name: i for i, name in enumerate(CASES)}
    results = sorted(merged.values(), key=lambda r: (r.database != "sqlite", order.get(r.case, 99)))
    write_report(output, results, machine, meta)
    print(f"bench: wrote {output}", file=sys.stderr)
    return 0
