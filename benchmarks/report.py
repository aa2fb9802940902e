"""The results table: every figure with its ratio to the Conveyor row of the same backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Result = dict[str, Any]

SECTIONS = (
    ("Embedded, no server", ("memory", "sqlite"), "conveyor-sqlite"),
    ("Redis", ("redis",), "conveyor-redis"),
    ("PostgreSQL", ("postgres",), "conveyor-postgres"),
)


@dataclass(frozen=True)
class Column:
    """One figure of the table."""

    title: str
    workload: str
    key: str
    fmt: Callable[[float], str]


def _rate(v: float) -> str:
    return f"{v:,.0f}"


def _ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _us(v: float) -> str:
    return f"{v:,.0f}"


COLUMNS = (
    Column("drain jobs/s", "drain", "jobs_per_s", _rate),
    Column("enqueue jobs/s", "drain", "enqueue_per_s", _rate),
    Column("latency p50 ms", "latency", "p50_ms", _ms),
    Column("latency p99 ms", "latency", "p99_ms", _ms),
    Column("I/O jobs/s", "io", "jobs_per_s", _rate),
    Column("worker CPU µs/job", "drain", "cpu_us_per_job", _us),
    Column("server CPU µs/job", "drain", "server_cpu_us_per_job", _us),
)


def figure(result: Result, column: Column, partial: bool = False) -> float | None:
    """The value of ``column`` for one system, when its workload ran to the end.

    With ``partial``, also one measured on the jobs done before the time limit.
    """
    work = result.get(column.workload)
    if not work or "error" in work:
        return None
    if not work.get("complete") and not partial:
        return None
    value = work.get(column.key)
    return float(value) if value is not None else None


def cell(result: Result, column: Column, reference: Result | None) -> str:
    """``value (ratio x)``, or why there is no value."""
    if result.get("skipped"):
        return "skipped"
    work = result.get(column.workload)
    if work is None:
        asked = column.workload in result.get("workloads", (column.workload,))
        return "error" if result.get("error") and asked else "-"
    if "error" in work:
        return "error"
    value = figure(result, column, partial=True)
    if value is None:
        if work.get("complete"):
            return "-"  # e.g. the server CPU of an embedded broker
        return f"timeout ({work.get('done', 0):,}/{work['jobs']:,})"
    text = column.fmt(value)
    base = figure(reference, column) if reference else None
    if base:
        text += f" ({value / base:.2f}x)"
    if column.workload == "io" and column.key == "jobs_per_s" and work.get("ideal_per_s"):
        text += f" {value / work['ideal_per_s']:.0%}"
    if not work.get("complete") and column.key == "jobs_per_s":
        text += f", timeout at {work.get('done', 0):,}/{work['jobs']:,}"
    return text


def table(results: list[Result]) -> str:
    """The Markdown table, a section per backend, then notes on layouts, errors and skips."""
    by_name = {r["name"]: r for r in results}
    head = ["system", "workers", *(c.title for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for title, backends, ref_name in SECTIONS:
        rows = [r for r in results if r["backend"] in backends]
        if not rows:
            continue
        reference = by_name.get(ref_name)
        shown_ref = ref_name
        if reference is None or figure(reference, COLUMNS[0]) is None:
            fallback = by_name.get("conveyor-sqlite")
            if fallback is not None and fallback is not reference:
                notes.append(
                    f"{title}: {ref_name} has no figures in this run, so its ratios are to "
                    "conveyor-sqlite"
                )
                reference, shown_ref = fallback, "conveyor-sqlite"
        label = f"**{title}** (ratio to {shown_ref})"
        lines.append("| " + " | ".join([label] + [""] * (len(head) - 1)) + " |")
        for r in rows:
            cells = [r["name"], r.get("layout", "")]
            cells += [cell(r, c, reference) for c in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
            if r.get("skipped"):
                notes.append(f"{r['name']} skipped: {r['skipped']}")
            if r.get("error"):
                notes.append(f"{r['name']}: {r['error']}")
            for workload in ("drain", "latency", "io"):
                err = (r.get(workload) or {}).get("error")
                if err:
                    notes.append(f"{r['name']} {workload}: {err}")
    versions = ", ".join(r["version"] for r in results if r.get("peer") and r.get("version"))
    if versions:
        notes.append(f"Versions: {versions}.")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])
