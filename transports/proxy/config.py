"""The fault proxy's settings: ``ProxyConfig``, ``HOST:PORT`` parsing and the one-line description.

Shared by the TCP and UDP relays (``transports.proxy.tcp``, ``transports.proxy.udp``),
the counters (``transports.proxy.stats``) and the command line (``transports.proxy``).
"""

from __future__ import annotations

from dataclasses import dataclass

from transports.faults import FaultSpec

REQUEST, REPLY = "request", "reply"
READ_SIZE = 65536
Address = tuple[str, int]


def parse_address(text: str) -> Address:
    """``HOST:PORT`` or ``[V6HOST]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:5050 or [::1]:5050), got {text!r}")
    return host.strip("[]"), int(port)


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ProxyConfig:
    transport: str
    listen: Address
    upstream: Address
    faults: FaultSpec
    seed: int = 0
    stall: float = 0.0  # TCP: probability per message that the direction stalls first
    stall_time: float = 1.0
    slice_size: int = 0  # TCP: 0 = off, else writes of 1..slice_size bytes
    slice_delay: float = 0.0
    slice_dir: str = "both"  # which direction slicing applies to
    framing: str = "chunk"  # TCP: "chunk" (one read = one message) or "length"
    max_connections: int = 256  # TCP connections, or UDP sessions
    idle_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be tcp or udp, got {self.transport!r}")
        if not 0.0 <= self.stall <= 1.0:
            raise ValueError(f"--stall must be a probability in [0, 1], got {self.stall}")
        if self.slice_size < 0 or self.max_connections < 1:
            raise ValueError("--slice must be >= 0 and --max-connections >= 1")
        if min(self.stall_time, self.slice_delay) < 0 or self.idle_timeout <= 0:
            raise ValueError("durations must be >= 0 and --idle-timeout > 0")

    def slices(self, direction: str) -> bool:
        return self.slice_size > 0 and self.slice_dir in ("both", direction)


def describe(config: ProxyConfig) -> str:
    extras = []
    if config.stall:
        extras.append(f"stall {config.stall} for {config.stall_time}s")
    if config.slice_size:
        extras.append(f"slice 1..{config.slice_size} B ({config.slice_dir})")
    if config.transport == "tcp" and config.framing != "chunk":
        extras.append(f"framing {config.framing}")
    return (
        f"{config.transport} {format_address(config.listen)} -> "
        f"{format_address(config.upstream)}, faults {config.faults}, seed {config.seed}"
        + "".join(f", {e}" for e in extras)
    )
