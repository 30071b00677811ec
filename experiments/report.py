"""Turn cell runs into records, tables (tabulate) and files under results/.

Shared by every experiment: one record per cell (a flat dict), tables whose
caption states seed, fault model, policy and environment, and writers for
JSON, CSV, Markdown and (when matplotlib is installed) PNG plots.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from experiments.analytic import Prediction, agrees, predict
from experiments.runner import CellRun

Record = dict[str, Any]
PREDICTED = ("ok", "unknown", "duplicated", "phantom")


def prediction_for(run: CellRun) -> Prediction | None:
    """The analytic prediction, where the model's assumptions hold (see ANALYSIS.md)."""
    spec = run.cell.faults
    if spec.dup or spec.reorder or spec.corrupt or spec.ge_p or spec.reset or spec.crash:
        return None
    return predict(
        run.cell.semantics.value, spec.loss, run.cell.attempts_allowed, app_fail=spec.app_fail
    )


def record(run: CellRun) -> Record:
    cell = run.cell
    rec: Record = {
        "transport": cell.transport,
        "semantics": cell.semantics.value,
        "loss": cell.faults.loss,
        "faults": cell.faults.to_spec(),
        "policy": cell.policy.describe(),
        "max_attempts": cell.attempts_allowed,
        "clients": cell.clients,
        "seed": cell.seed,
        **asdict(run.audit),
        "seconds": round(run.seconds, 3),
    }
    prediction = prediction_for(run)
    if prediction is not None:
        rec["predicted"] = {k: round(v, 6) for k, v in prediction.to_dict().items()}
        rec["agrees"] = {k: agrees(rec[k], cell.ops, getattr(prediction, k)) for k in PREDICTED}
    return rec


def measured_vs_predicted(rec: Record, key: str) -> str:
    """``measured / predicted`` count, ``!`` when outside 4 standard errors."""
    predicted = rec.get("predicted")
    if predicted is None:
        return str(rec[key])
    flag = "" if rec["agrees"][key] else " !"
    return f"{rec[key]} / {predicted[key] * rec['ops']:.1f}{flag}"


def transport_table(records: Sequence[Record]) -> str:
    rows = [
        [
            r["semantics"],
            r["loss"],
            measured_vs_predicted(r, "ok"),
            r["failed"],
            measured_vs_predicted(r, "unknown"),
            measured_vs_predicted(r, "duplicated"),
            measured_vs_predicted(r, "phantom"),
            r["lost"],
            r["money_drift"],
            r["executions"],
            r["attempts"],
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
        ]
        for r in records
    ]
    headers = [
        "semantics", "loss", "ok", "failed", "unknown", "duplicated", "phantom", "lost",
        "drift", "execs", "attempts", "p50 ms", "p99 ms", "max ms",
    ]  # fmt: skip
    return tabulate(rows, headers, floatfmt=".2f", disable_numparse=False)


def side_by_side_table(records: Sequence[Record], left: str, right: str) -> str:
    """Matching cells of two transports next to each other."""
    index = {(r["transport"], r["semantics"], r["loss"]): r for r in records}
    rows = []
    for r in records:
        if r["transport"] != left or (right, r["semantics"], r["loss"]) not in index:
            continue
        o = index[(right, r["semantics"], r["loss"])]
        rows.append(
            [
                r["semantics"], r["loss"],
                r["duplicated"], o["duplicated"], r["unknown"], o["unknown"],
                r["attempts"], o["attempts"], r["p50_ms"], o["p50_ms"], r["p99_ms"], o["p99_ms"],
            ]
        )  # fmt: skip
    headers = ["semantics", "loss"] + [
        f"{what} {t}"
        for what in ("dup", "unknown", "attempts", "p50 ms", "p99 ms")
        for t in (left, right)
    ]
    return tabulate(rows, headers, floatfmt=".2f")


def caption(records: Sequence[Record], transport: str, env: dict[str, Any]) -> str:
    r = records[0]
    attempts = max(x["max_attempts"] for x in records)
    return (
        f"{transport}: {r['ops']} ops x {r['clients']} clients per cell, seed {r['seed']}, "
        f"faults [{r['faults'] or 'none'}] with loss per row, policy {r['policy']}, "
        f"max attempts {attempts} (maybe: 1); Python {env['python']} on {env['platform']}, "
        f"{env['cpus']} CPUs. Cells read measured / predicted count ('!' = outside 4 sigma)."
        + (" Latencies are virtual time." if transport == "sim" else "")
    )


def by_transport(records: Iterable[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r["transport"], []).append(r)
    return groups


def render(records: Sequence[Record], env: dict[str, Any]) -> str:
    """All tables as plain text: one per transport, then TCP vs UDP."""
    parts = []
    for transport, group in by_transport(records).items():
        parts.append(f"## {caption(group, transport, env)}\n\n{transport_table(group)}")
    groups = by_transport(records)
    if "tcp" in groups and "udp" in groups:
        kernel = records[0].get("backend") == "kernel"
        same = "kernel packet loss (not seeded)" if kernel else "same seed and fault decisions"
        parts.append(f"## TCP vs UDP, {same}\n\n" + side_by_side_table(records, "tcp", "udp"))
    return "\n\n".join(parts)


def plot(out: Path, name: str, records: Sequence[Record]) -> list[Path]:
    """Duplicates and latency against loss per transport, with the prediction."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, (dup_ax, lat_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = {"tcp": "tab:blue", "udp": "tab:orange", "sim": "tab:green"}
    predicted: dict[float, float] = {}
    for (transport, semantics), group in _series(records).items():
        losses = [r["loss"] for r in group]
        colour = colours.get(transport, "tab:gray")
        if semantics == "at-least-once":
            dup_ax.plot(
                losses,
                [r["duplicated"] / r["ops"] for r in group],
                "o-",
                color=colour,
                label=f"{transport} measured",
            )
            predicted.update(
                (r["loss"], r["predicted"]["duplicated"]) for r in group if "predicted" in r
            )
        if semantics in ("at-least-once", "exactly-once"):
            style = "o-" if semantics == "at-least-once" else "s--"
            lat_ax.plot(
                losses,
                [r["p99_ms"] for r in group],
                style,
                color=colour,
                label=f"{transport} {semantics}",
            )
    if predicted:
        xs = sorted(predicted)
        dup_ax.plot(xs, [predicted[x] for x in xs], "k:", label="analytic prediction")
    dup_ax.set(
        title="at-least-once: operations applied twice or more",
        xlabel="loss probability per message, each direction",
        ylabel="fraction of operations",
    )
    lat_ax.set(
        title="p99 latency of a logical operation (sim: virtual time)",
        xlabel="loss probability per message, each direction",
        ylabel="ms (log scale)",
    )
    lat_ax.set_yscale("log")
    for ax in (dup_ax, lat_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    deduplicated = sum(
        r["duplicated"] for r in records if r["semantics"] in ("at-most-once", "exactly-once")
    )
    fig.suptitle(
        f"{name}: operations duplicated under at-most-once and exactly-once: {deduplicated}"
    )
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]  # fmt: skip


def _series(records: Sequence[Record]) -> dict[tuple[str, str], list[Record]]:
    series: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        series.setdefault((r["transport"], r["semantics"]), []).append(r)
    return series


Renderer = Callable[[Sequence[Record], dict[str, Any]], str]
Plotter = Callable[[Path, str, Sequence[Record]], list[Path]]


def write_results(
    out: Path,
    name: str,
    records: Sequence[Record],
    params: dict[str, Any],
    env: dict[str, Any],
    *,
    render_tables: Renderer | None = None,
    plotter: Plotter | None = plot,
) -> list[Path]:
    """``name``.json (parameters, environment, cells), .csv, .md and plots.

    ``render_tables`` defaults to this module's retries layout; ``plotter``
    to its plot (None: no plot).
    """
    render_tables = render_tables or render
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{name}.json", out / f"{name}.csv", out / f"{name}.md"]
    document = {"parameters": params, "environment": env, "cells": list(records)}
    written[0].write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    flat = [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in records]
    # Records of one file may differ in columns: the union, in first-seen order.
    fields = list(dict.fromkeys(k for r in flat for k in r))
    with written[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    written[2].write_text(
        f"# {name}\n\nCommand: `{env['argv']}`\n\n```\n{render_tables(records, env)}\n```\n"
    )
    if plotter is not None:
        written.extend(plotter(out, name, records))
    return written
