"""The throughput benchmark's shared names: transports, services, server labels, goals.

Imported by the modules of ``experiments.bench`` that start and measure the
servers, judge the targets and write the report, so that none of those need
import another for them.
"""

from __future__ import annotations

TRANSPORTS = ("tcp", "udp")
SERVICES = ("text", "numbers", "bank")
CEILING = "echo"
TARGETS = {"one_client_vs_echo": 0.8, "collapse_512_vs_best": 0.7, "fault_layer_cost": 0.05}
SIM_TARGET = 50_000
DEFAULT_TEXT = "text"  # our text server as it starts by default: one process
SEED_FRAMING = "text, seed framing"  # our server speaking the lab's protocol
UVLOOP_TEXT = "text uvloop"  # our text server on uvloop (serve --loop uvloop)


def workers_label(workers: int) -> str:
    """The label of our text server run as ``workers`` processes."""
    return f"text x{workers}"


def text_config(label: str) -> str | None:
    """How the text configuration ``label`` of ours runs, or None if it is not one.

    The default server, ``text xN`` (N processes) and ``text uvloop``; the
    seed-framing and fault-layer variants measure something else.
    """
    if label == DEFAULT_TEXT:
        return "1 process"
    if label == UVLOOP_TEXT:
        return "1 process on uvloop"
    if label.startswith("text x") and label.removeprefix("text x").isdigit():
        return f"{label.removeprefix('text x')} processes"
    return None
