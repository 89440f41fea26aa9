"""BENCHMARKS.md: machine, one table per database, notes, and the hand-written findings."""
from __future__ import annotations

from pathlib import Path

from .harness import CaseResult, Measurement

FINDINGS = Path(__file__).with_name("FINDINGS.md")
DATABASE_TITLES = {"sqlite": "SQLite (temp file)", "postgresql": "PostgreSQL (private scratch database)"}


def fmt_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 0.001:
        return f"{s * 1000:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1024 / 1024:.1f} MiB"


def fmt_measure(m: Measurement | None) -> str:
    if m is None:
        return "–"
    if m.display:
        return m.display
    if m.median is None:
        return "–"
    if m.unit == "s":
        return fmt_seconds(m.median)
    return f"{m.median:,.1f} {m.unit}"


def fmt_statements(r: CaseResult) -> str:
    parts = [str(m.statements) if m and m.statements is not None else "–" for m in (r.ours, r.baseline)]
    return " / ".join(parts)


def fmt_memory(r: CaseResult) -> str:
    return " / ".join(fmt_bytes(m.peak_bytes if m else None) for m in (r.ours, r.baseline))


def verdict(r: CaseResult) -> str:
    if r.status == "not run":
        return f"not run: {r.reason}"
    if r.status == "error":
        return f"error: {r.reason}"
    return "met" if r.met else "**missed**"


def table(results: list[CaseResult]) -> list[str]:
    lines = ["| case | size | ours (median) | baseline (median) | ratio | target | result | SQL statements "
             "ours / baseline | peak memory ours / baseline |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = f"{r.ratio:.2f} ({r.ratio_label})" if r.ratio is not None else "–"
        lines.append(f"| {r.case} | {r.size or '–'} | {fmt_measure(r.ours)} | {fmt_measure(r.baseline)} | {ratio} "
                     f"| {r.target or '–'} | {verdict(r)} | {fmt_statements(r)} | {fmt_memory(r)} |")
    return lines


def notes(results: list[CaseResult]) -> list[str]:
    lines = []
    for r in results:
        items = list(r.notes)
        for m in (r.ours, r.baseline):
            if m is not None and m.seconds and m.unit == "s" and not m.display:
                items.append(f"{m.label}: runs " + ", ".join(fmt_seconds(x) for x in m.seconds))
            elif m is not None:
                items.append(f"{m.label}")
        if r.elapsed:
            items.append(f"case wall time incl. seeding: {r.elapsed:.0f} s")
        if items:
            lines.append(f"- **{r.case}**: " + "; ".join(items))
    return lines


def summary_table(results: list[CaseResult]) -> list[str]:
    kinds = [k for k in ("sqlite", "postgresql") if any(r.database == k for r in results)]
    cases = list(dict.fromkeys(r.case for r in results))
    by = {(r.case, r.database): r for r in results}
    lines = ["## Summary", "", "| case | target | " + " | ".join(DATABASE_TITLES[k].split(" (")[0] for k in kinds) + " |",
             "|---|---|" + "---|" * len(kinds)]
    for case in cases:
        cells = []
        for k in kinds:
            r = by.get((case, k))
            if r is None:
                cells.append("–")
            elif r.status != "ok":
                cells.append(verdict(r))
            else:
                cells.append(f"{r.ratio:.2f} — {'met' if r.met else '**missed**'}")
        target = next((by[(case, k)].target for k in kinds if (case, k) in by and by[(case, k)].target), "")
        lines.append(f"| {case} | {target} | " + " | ".join(cells) + " |")
    return lines + ["", "Ratios as defined per table below. Every miss is explained under Findings.", ""]


def write_report(path: Path, results: list[CaseResult], machine: dict, meta: dict) -> None:
    out = ["# Benchmarks", "",
           f"Written by `{meta['command']}` (`make bench`) on {meta['started_at']} in {meta['duration_s']} s; "
           f"mode **{meta['mode']}**. Regenerate with `make bench` (full sizes, both databases with "
           "`BENCH_DATABASE_URL`) or `python -m bench --quick`.", "",
           "Ratios are what count: the machines are noisy, absolute times are for context only. Times are "
           "medians of the timed runs after one warm-up run; the warm-up run is the one measured for SQL "
           "statements (SQLAlchemy `before_cursor_execute`, an executemany counts once) and peak memory "
           "(tracemalloc peak of Python allocations, or a worker process's RSS where said).", "",
           "## Machine", ""]
    pkgs = ", ".join(f"{k} {v}" for k, v in machine.get("packages", {}).items())
    for label, key in (("CPUs (nproc)", "nproc"), ("CPU model", "cpu"), ("memory", "memory"),
                       ("platform", "platform"), ("Python", "python"), ("SQLite", "sqlite"),
                       ("PostgreSQL", "postgresql"), ("Redis", "redis"), ("Redis source", "redis_source")):
        if machine.get(key) is not None:
            out.append(f"- {label}: {machine[key]}")
    out.append(f"- packages: {pkgs}")
    if machine.get("loadavg_start"):
        out.append(f"- load average at start: {' '.join(machine['loadavg_start'])}; at end: "
                   f"{' '.join(machine.get('loadavg_end', []))}")
    for note in machine.get("notes", []):
        out.append(f"- {note}")
    out.append(f"- sizes: " + ", ".join(f"{k}={v:,}" for k, v in meta["sizes"].items()))
    out.append("")
    out += summary_table(results)
    for kind in ("sqlite", "postgresql"):
        rows = [r for r in results if r.database == kind]
        if not rows:
            continue
        out += [f"## {DATABASE_TITLES[kind]}", ""] + table(rows) + ["", "Notes:", ""] + notes(rows) + [""]
    if FINDINGS.exists():
        out += [FINDINGS.read_text().strip(), ""]
    path.write_text("\n".join(out))
