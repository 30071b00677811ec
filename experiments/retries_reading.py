"""The reading of a retries run: a few sentences computed from the run's own numbers.

For the TCP/UDP pair (real sockets, else the simulator), at the run's highest
loss, under at-least-once (else the first semantics present): one sentence
per timeout with what each transport duplicated, left unknown and waited
(p99), and the mechanism only where the numbers point its way: below TCP's
200 ms retransmission timeout TCP doing worse (the retry queues behind the
lost message and both execute), above it TCP doing better (the retransmission
arrives in time). A further sentence says whether the simulator orders the two
transports the same way; the last ones say how much money duplicates moved
(deposits and withdrawals apart) and where exactly-once's drift comes from.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.cell_record import BankRecord
from transports.tcp_model import TCP_RTO_MIN

#: (TCP-like, datagram) transports compared side by side, real sockets first.
PAIRS = (("tcp", "udp"), ("sim-tcp", "sim-udp"))
PREFERRED_SEMANTICS = ("at-least-once", "exactly-once", "at-most-once", "maybe")

_Index = dict[tuple[str, str, float, float], BankRecord]


def timeout_text(seconds: float) -> str:
    """``50 ms``, ``1 s``, ``1.5 s``."""
    return f"{seconds * 1000:g} ms" if seconds < 1.0 else f"{seconds:g} s"


def reading(records: Sequence[BankRecord]) -> list[str]:
    """The sentences, or none when the run has no TCP/UDP pair with loss to compare."""
    index: _Index = {(r.transport, r.semantics, r.loss, r.timeout): r for r in records}
    pairs = [pair for pair in PAIRS if _common(index, pair)]
    if not pairs:
        return []
    tcp, udp = pairs[0]
    common = _common(index, (tcp, udp))
    semantics = next(s for s in PREFERRED_SEMANTICS if any(c[0] == s for c in common))
    lossy = [loss for s, loss, _ in common if s == semantics and loss > 0.0]
    if not lossy:
        return []
    loss = max(lossy)
    timeouts = sorted({t for s, x, t in common if s == semantics and x == loss})
    key = "duplicated" if semantics == "at-least-once" else "unknown"
    lines = []
    for n, timeout in enumerate(timeouts):
        a, b = index[(tcp, semantics, loss, timeout)], index[(udp, semantics, loss, timeout)]
        lines.append(_sentence(a, b, key, first=n == 0))
    if len(pairs) > 1:
        lines.append(_echo(index, pairs[1], (tcp, udp), semantics, loss, timeouts, key))
    return lines


def _common(index: _Index, pair: tuple[str, str]) -> set[tuple[str, float, float]]:
    """(semantics, loss, timeout) of the cells both transports of ``pair`` ran."""
    cells = [{(s, loss, t) for (tr, s, loss, t) in index if tr == name} for name in pair]
    return cells[0] & cells[1]


def _sentence(a: BankRecord, b: BankRecord, key: str, *, first: bool) -> str:
    """One timeout: the TCP-like record ``a`` against the datagram one ``b``."""
    x, y = a.audit, b.audit
    numbers = (
        f"{a.transport} duplicated {x.duplicated} (of {x.ops}; {b.transport} {y.duplicated}), "
        f"left {x.unknown} unknown ({b.transport} {y.unknown}) and took p99 "
        f"{x.p99_ms:.0f} ms ({b.transport} {y.p99_ms:.0f} ms)"
    )
    if first:
        opening = f"At a {timeout_text(a.timeout)} timeout and loss {a.loss:g}, {a.semantics} over "
    else:
        opening = f"At {timeout_text(a.timeout)}, "
    return f"{opening}{numbers}: {_why(a, b, key)}."


def _why(a: BankRecord, b: BankRecord, key: str) -> str:
    tcp, udp = getattr(a.audit, key), getattr(b.audit, key)
    rto = f"TCP's {TCP_RTO_MIN * 1000:g} ms retransmission timeout"
    if a.timeout < TCP_RTO_MIN and tcp > udp:
        if key == "duplicated":
            return (
                f"the timeout is shorter than {rto}, so the retry queues behind the lost "
                "message on the same connection, and both execute"
            )
        return (
            f"the timeout is shorter than {rto}: a lost message arrives too late, and "
            "what the client sends next waits behind it"
        )
    if a.timeout >= TCP_RTO_MIN and tcp < udp:
        if key == "duplicated":
            return (
                f"the timeout outlasts {rto}, so TCP usually delivers the lost message in "
                f"time, while over {b.transport} every lost reply is followed by a retry that "
                "executes again"
            )
        return f"the timeout outlasts {rto}, so TCP usually delivers a lost message in time"
    more = "more" if tcp > udp else "fewer" if tcp < udp else "as many"
    return f"{a.transport} had {more} {key} than {b.transport} here"


def _echo(
    index: _Index,
    sim: tuple[str, str],
    real: tuple[str, str],
    semantics: str,
    loss: float,
    timeouts: Sequence[float],
    key: str,
) -> str:
    """Whether the simulator orders the pair as the real sockets do, with its counts."""
    counts: list[tuple[int, int]] = []
    agree = []
    used = []
    for timeout in timeouts:
        cells = [index.get((t, semantics, loss, timeout)) for t in (*sim, *real)]
        if any(c is None for c in cells):
            continue
        s_tcp, s_udp, r_tcp, r_udp = (getattr(c.audit, key) for c in cells if c is not None)
        counts.append((s_tcp, s_udp))
        used.append(timeout)
        agree.append(_sign(s_tcp - s_udp) == _sign(r_tcp - r_udp))
    if not counts:
        return f"The simulator ({sim[0]}, {sim[1]}) ran none of these cells."
    at = " and ".join(timeout_text(t) for t in used)
    verdict = "orders them the same way" if all(agree) else "orders them differently"
    tcp_counts = " / ".join(str(c[0]) for c in counts)
    udp_counts = " / ".join(str(c[1]) for c in counts)
    return (
        f"The simulator (virtual time, same fault decisions) {verdict}: {sim[0]} {key} "
        f"{tcp_counts}, {sim[1]} {udp_counts} (at {at})."
    )


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def reading_text(records: Sequence[BankRecord]) -> str:
    """The reading as a Markdown list: TCP against UDP, then where the drift comes from."""
    lines = reading(records)
    lines += [line for line in (_duplicated_money(records), exactly_once_drift(records)) if line]
    return "\n".join(f"- {line}" for line in lines)


def _where(r: BankRecord) -> str:
    return f"{r.transport}, timeout {timeout_text(r.timeout)}, loss {r.loss:g}"


def _duplicated_money(records: Sequence[BankRecord]) -> str | None:
    """The at-least-once cell whose second executions moved the most money, per kind."""
    cells = [
        r
        for r in records
        if r.semantics == "at-least-once" and r.audit.deposits and r.audit.withdrawals
    ]
    if not cells or not any(r.audit.duplicated for r in cells):
        return None
    real = [r for r in cells if not r.transport.startswith("sim")]
    worst = max(real or cells, key=lambda r: r.audit.duplicated)
    d, w = worst.audit.deposits, worst.audit.withdrawals
    assert d is not None and w is not None
    return (
        f"Duplicates move real money. At-least-once duplicated most at {_where(worst)}: "
        f"{d.duplicated} of {d.ops} deposits were credited twice or more "
        f"({d.drift_duplicated:+d} ledger units nobody paid in) and {w.duplicated} of "
        f"{w.ops} withdrawals debited twice or more ({w.drift_duplicated:+d} units)."
    )


def exactly_once_drift(records: Sequence[BankRecord]) -> str | None:
    """Whether exactly-once's drift is money created or operations the client cannot know."""
    cells = [
        r
        for r in records
        if r.semantics == "exactly-once" and r.audit.drift_unacknowledged is not None
    ]
    if not cells:
        return None
    worst = max(cells, key=lambda r: abs(r.audit.money_drift))
    a = worst.audit
    if a.money_drift == 0:
        return "Exactly-once left no drift in any cell: the ledger moved what the ok replies say."
    twice = sum(r.audit.duplicated for r in cells)
    if twice == 0 and all(r.audit.money_drift == r.audit.drift_unacknowledged for r in cells):
        return (
            "Exactly-once creates no money: no operation ran twice in any cell. Its drift "
            f"(largest {a.money_drift:+d} ledger units, at {_where(worst)}) is operations "
            "applied once whose client gave up before a reply came "
            f"({a.phantom} of its {a.unknown} unknown were applied): the client cannot know, "
            "and a balance check tells."
        )
    return (
        f"Exactly-once applied {twice} operation(s) twice or the ledger lost one: its drift "
        f"(largest {a.money_drift:+d} units, at {_where(worst)}) is not only operations of "
        "unknown outcome. That breaks its guarantee."
    )
