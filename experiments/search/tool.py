"""A search and a replay as the command line runs and prints them.

``run_search`` asks Hypothesis (``finder``) for a schedule that breaks the
property in the simulator, makes sure the answer is 1-minimal, and runs it
once more to explain it. ``render_search`` and ``render_replay`` are the
printed answers: what was searched, the schedule in its text form, why it
breaks the property, the command that replays it; or "no counterexample in N
examples"; for a replay, the audit on each transport and where they differ.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from experiments.search.bank import BankTemplate, Model, ScheduleRun, run_in_sim
from experiments.search.config import CRASH_KINDS, SearchConfig
from experiments.search.explain import explain, link_summary
from experiments.search.finder import find
from experiments.search.replay import REPLAYS, Replay, signature
from experiments.search.space import one_minimal
from experiments.search.trace import Step, timeline_lines
from transports.schedule import FaultSchedule

_MODEL = {
    Model.DATAGRAM: "datagram (UDP-like: a dropped message is gone)",
    Model.TCP: "tcp (a byte stream: TCP retransmits a drop after its RTO, ~204 ms)",
    Model.TCP_RESET: "tcp-reset (a byte stream: a loss breaks the connection)",
}


#: Timers this late (seconds) can swap a retry with a TCP retransmission
#: (150 ms timeout, ~204 ms RTO: 54 ms apart).
LATE_TIMERS = 0.025


@dataclass(frozen=True)
class SearchAnswer:
    config: SearchConfig
    runs: int  # runs of the property, shrinking included
    clients: int | None = None
    schedule: FaultSchedule | None = None  # 1-minimal
    shrunk: FaultSchedule | None = None  # as Hypothesis left it
    run: ScheduleRun | None = None  # the counterexample's run
    timeline: tuple[str, ...] = ()  # what happened in it, step by step


def run_search(config: SearchConfig, bank: BankTemplate) -> SearchAnswer:
    workload, space = config.workload(), config.space()

    def run(clients: int, schedule: FaultSchedule, trace: list[Step] | None = None) -> ScheduleRun:
        model, seed = config.model, config.seed
        return run_in_sim(bank, workload, model, schedule, clients, seed=seed, trace=trace)

    def check(clients: int, schedule: FaultSchedule) -> str | None:
        return None if config.prop.holds(run(clients, schedule)) else str(schedule)

    found = find(
        check,
        space.schedules(),
        space.clients(),
        max_examples=config.examples,
        seed_value=config.seed,
    )
    if found.schedule is None or found.clients is None:
        return SearchAnswer(config, found.runs)
    clients = found.clients

    def fails(schedule: FaultSchedule) -> bool:
        return check(clients, schedule) is not None

    minimal = one_minimal(found.schedule, fails, space.windows)
    steps: list[Step] = []
    explained = run(clients, minimal, steps)
    timeline = tuple(timeline_lines(steps))
    return SearchAnswer(config, found.runs, clients, minimal, found.schedule, explained, timeline)


def describe(config: SearchConfig) -> list[str]:
    """What a search covers, in a few lines."""
    space = config.space()
    crashes = [k for k in config.faults if k in CRASH_KINDS]
    on = " and ".join(config.directions)
    kinds = []
    if space.actions:
        actions = ", ".join(str(a) for a in space.actions)
        kinds.append(f"{actions} on {on} messages #0-{space.max_index} of each client")
    if space.windows:
        longest = max(w.end - w.start for w in space.windows)
        last = max(w.end for w in space.windows)
        kinds.append(
            f"a partition of {on} links of each client, {len(space.windows)} windows "
            f"from 0 to {last * 1e3:g} ms, up to {longest * 1e3:g} ms long"
        )
    if crashes:
        points = " and ".join(k.removeprefix("crash-") for k in crashes)
        kinds.append(f"crashes {points} apply at request arrivals #0-{space.max_arrival}")
    return [
        f"property: {config.prop.value} ({config.prop.meaning})",
        f"semantics {config.semantics.value}{_retention(config)}; network model "
        f"{_MODEL[config.model]}",
        f"retries: {config.retry_policy.describe()}, at most {config.attempts} attempts "
        f"(maybe: 1); 1-{config.clients} clients, {config.ops} deposits each, one at a time",
        f"faults: {'; '.join(kinds)}; at most {config.max_faults} per schedule",
        f"budget {config.examples} examples, seed {config.seed} (the simulator, virtual time)",
    ]


def _retention(config: SearchConfig) -> str:
    if config.retention is None:
        return ""
    return f" (the reply cache keeps a reply {config.retention * 1e3:g} ms)"


def replay_command(config: SearchConfig, schedule: FaultSchedule, clients: int) -> str:
    argv = ["python", "-m", "experiments.search", "replay", str(schedule)]
    argv += ["--semantics", config.semantics.value, "--model", config.model.value]
    if config.policy != "fixed":
        argv += ["--policy", config.policy]
    argv += ["--timeout", f"{config.timeout * 1e3:g}ms", "--attempts", str(config.attempts)]
    if config.retention is not None:
        argv += ["--retention", f"{config.retention * 1e3:g}ms"]
    argv += ["--ops", str(config.ops), "--clients", str(clients)]
    argv += ["--property", config.prop.value, "--seed", str(config.seed)]
    return shlex.join(argv)


def render_search(answer: SearchAnswer) -> str:
    config = answer.config
    lines = ["search", *(f"  {line}" for line in describe(config))]
    if answer.schedule is None or answer.clients is None or answer.run is None:
        lines.append(
            f"no counterexample in {config.examples} examples ({answer.runs} runs): "
            f"{config.prop.value} held in every schedule searched"
        )
        return "\n".join(lines)
    schedule, clients = answer.schedule, answer.clients
    plural = "s" * (schedule.faults != 1)
    lines.append(
        f"counterexample after {answer.runs} runs, {clients} client{'s' * (clients != 1)}, "
        f"{schedule.faults} fault{plural} (1-minimal: removing any one fault repairs it"
        f"{_NARROW if _has_window(schedule) else ''}):"
    )
    lines.append(f"  {schedule}")
    if answer.shrunk != schedule:
        since = "single faults removed" + (
            " or windows narrowed" if _has_window(answer.shrunk) else ""
        )
        lines.append(f"  (Hypothesis shrank it to '{answer.shrunk}'; {since} since)")
    lines.append(f"why it breaks {config.prop.value}:")
    lines += [f"  {line}" for line in explain(answer.run, config.prop)]
    lines += [f"  {line}" for line in tcp_note(config, answer.run)]
    lines.append("what happened (virtual time; a link acts when a message is sent or received):")
    lines += [f"  {line}" for line in answer.timeline]
    lines.append("replay it on real TCP and UDP sockets and in the simulator:")
    lines.append(f"  {replay_command(config, schedule, clients)}")
    return "\n".join(lines)


_NARROW = ", as does narrowing a partition window to any shorter one inside it"


def _has_window(schedule: FaultSchedule | None) -> bool:
    clients = () if schedule is None else schedule.clients
    return any(p.request_window or p.reply_window for p in clients)


def tcp_note(config: SearchConfig, run: ScheduleRun) -> list[str]:
    """Under the TCP model a drop is late, not lost: say so when that made the violation."""
    late = sum(counts.get("retransmitted", 0) for counts in run.links.values())
    if not late or config.model is not Model.TCP:
        return []
    cut = "dropped or cut" if any(c.get("partition") for c in run.links.values()) else "dropped"
    what = f"the {cut} message" if late == 1 else f"the {late} {cut} messages"
    return [
        f"no message was lost: TCP retransmitted {what} after its RTO (~204 ms), but the "
        f"client's timeout ({config.timeout * 1e3:g} ms) is shorter, so it retried first"
    ]


def render_replay(config: SearchConfig, schedule: FaultSchedule, result: Replay) -> str:
    stream = config.model if config.model.stream else Model.TCP
    lines = [
        f"replay of '{schedule}'",
        f"  semantics {config.semantics.value}{_retention(config)}; retries "
        f"{config.retry_policy.describe()}, at most {config.attempts} attempts; "
        f"{config.ops} deposits per client",
        f"  udp and sim-udp: datagram rules; tcp and sim-tcp: {_MODEL[stream]}",
        "  tcp and udp: real loopback sockets, the schedule's links in the client channels",
    ]
    for where in REPLAYS:
        run = result.runs.get(where)
        if run is None:
            continue
        verdict = "holds" if config.prop.holds(run) else "BROKEN"
        lag = (
            ""
            if run.timer_lag is None
            else f" (timers ran up to {run.timer_lag * 1e3:.0f} ms late)"
        )
        lines.append(f"{where}: {config.prop.value} {verdict}{lag}")
        lines += [f"  {line}" for line in explain(run, config.prop)]
    for real in ("udp", "tcp"):
        if real in result.runs and f"sim-{real}" in result.runs:
            same = "agrees" if result.agree(real) else "DISAGREES"
            lines.append(
                f"{real} {same} with sim-{real} (per deposit: times applied, what the client "
                "was told, by which attempt's reply)"
            )
            late = result.runs[real].timer_lag or 0.0
            if not result.agree(real) and late > LATE_TIMERS:
                lines.append(
                    f"  its timers ran up to {late * 1e3:.0f} ms late: on a busy machine two "
                    "events can swap (a retry and TCP's retransmission); run it again"
                )
    lines += transport_difference(result)
    return "\n".join(lines)


def transport_difference(result: Replay) -> list[str]:
    """Where the TCP and UDP runs differ, deposit by deposit, with what their links did."""
    udp, tcp = result.runs.get("sim-udp"), result.runs.get("sim-tcp")
    if udp is None or tcp is None:
        return []
    differing = [
        f"{u[0]}: applied {u[1]}x, told {u[2]} over UDP; applied {t[1]}x, told {t[2]} over TCP"
        for u, t in zip(signature(udp), signature(tcp), strict=True)
        if u[:3] != t[:3]
    ]
    if not differing:
        return ["TCP and UDP: the same outcome for every deposit"]
    return [
        "TCP and UDP differ, because of the transport:",
        *(f"  {line}" for line in differing),
        f"  UDP links: {'; '.join(link_summary(udp))}",
        f"  TCP links: {'; '.join(link_summary(tcp))}",
    ]
