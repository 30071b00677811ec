"""Admission of expensive requests (logins): address validation, fair per flow, bounded.

Sans-I/O, time is an argument. The endpoint asks ``Admission.admit`` before an
operation the service marks expensive (``expensive_ops``, e.g. ``bank.login``,
~50 ms of scrypt) may run, and calls ``release`` when it is done. A refusal is
a small error reply sent at once, so expensive work can never pile up behind
a flood, and cheap operations keep their capacity (docs/SECURITY.md):

1. **Address validation** (UDP only: a TCP handshake has proved the address).
   An unvalidated source that sends no valid token gets ``RETRY_WITH_TOKEN``
   with a token bound to its address, as a QUIC Retry (RFC 9000 section 8.1)
   or a DTLS HelloVerifyRequest cookie does. The token is stateless: the
   window number and an HMAC-SHA256 of (window, host, port) under a secret of
   this server process, valid in its window and the next. A spoofed source
   never sees its token, so it costs the server one small reply and cannot
   reach the ledger (nor lock accounts).
2. **Fair per flow.** A flow is the peer's (host, port), an address the
   transport or the token proved: a TCP connection, or a UDP source port.
   A flow may have ONE request admitted and not finished (a second gets
   ``BUSY``; a resend of the same request id is dropped, ``IN_PROGRESS``),
   and a token bucket of its own. The threads take admitted requests in
   arrival order, so with one place per flow the queue is round-robin over
   flows: a flood from the user's own host (or NAT) cannot take the user's
   turn, only add to the wait.
3. **A bounded queue**: at most ``max_outstanding`` admitted requests running
   or waiting for a thread, at most ``max_per_host`` of them from one host
   (another host always finds a place); beyond that, ``BUSY`` at once. There
   is no server-wide rate: the login threads bound the CPU, this bound the
   wait, and a shared bucket would be drained by the flood (docs/SECURITY.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

#: Error codes of the refusals (transports/PROTOCOL.md, section 5.3).
RETRY_WITH_TOKEN = "RETRY_WITH_TOKEN"
BUSY = "BUSY"
#: Not a reply: the request is a resend of one its flow is running; drop it.
IN_PROGRESS = "IN_PROGRESS"
#: The argument an expensive request over UDP echoes its token in; the
#: endpoint removes it before the service sees the arguments.
TOKEN_ARG = "address_token"

Address = tuple[str, int]  # (host, port) of the peer


class Peer(NamedTuple):
    """Where a request came from, and whether the transport proved that address.

    A tuple, not a dataclass: the UDP driver builds one per datagram.
    """

    address: Address
    validated: bool


@dataclass(frozen=True)
class AdmissionLimits:
    """How much expensive work a server admits (defaults: docs/SECURITY.md, "Limits")."""

    #: Admitted expensive requests running or queued; then ``BUSY`` at once.
    #: With 2 login threads the last of 64 waits for 32 logins' time, under
    #: 2 s at this machine's scrypt cost (docs/SECURITY.md, "Fair per flow").
    max_outstanding: int = 64
    #: Of those, at most this many from one host, so another host always
    #: keeps ``max_outstanding - max_per_host`` places.
    max_per_host: int = 48
    #: Per flow (host, port): sustained requests per second, and the burst allowed.
    flow_rate: float = 5.0
    flow_burst: float = 10.0
    #: Flows whose rate bucket is remembered (least recently seen forgotten first).
    max_flows: int = 4096
    #: Address tokens are valid in the window they were issued in and the next.
    token_window: float = 10.0

    def __post_init__(self) -> None:
        if min(self.max_outstanding, self.max_per_host, self.max_flows) < 1:
            raise ValueError("admission limits must be at least 1")
        if not (self.flow_rate > 0 and self.flow_burst > 0 and self.token_window > 0):
            raise ValueError("rates, bursts and the token window must be positive")


@dataclass(frozen=True)
class Refusal:
    """Why an expensive request is not run: an error code and its message."""

    code: str
    message: str


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class AddressTokens:
    """Stateless address tokens: issue one for an address, check one from it."""

    _HEAD = struct.Struct(">I")
    _MAC_BYTES = 16

    def __init__(self, window: float, secret: bytes | None = None) -> None:
        self.window = window
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def issue(self, address: Address, now: float) -> str:
        head = self._HEAD.pack(self._epoch(now))
        raw = head + self._mac(head, address)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def check(self, token: object, address: Address, now: float) -> bool:
        if not isinstance(token, str) or len(token) != 27:  # 20 bytes in base64url
            return False
        try:
            raw = base64.b64decode(token + "=", altchars=b"-_", validate=True)
        except ValueError:  # not base64url (binascii.Error is a ValueError)
            return False
        if len(raw) != 4 + self._MAC_BYTES:
            return False
        head, mac = raw[:4], raw[4:]
        age = (self._epoch(now) - self._HEAD.unpack(head)[0]) % 2**32
        return age <= 1 and hmac.compare_digest(mac, self._mac(head, address))

    def _epoch(self, now: float) -> int:
        return int(now // self.window) % 2**32

    def _mac(self, head: bytes, address: Address) -> bytes:
        host, port = address[0], address[1]
        message = head + str(host).encode("utf-8", "replace") + b"\x00" + str(port).encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()[: self._MAC_BYTES]


class Admission:
    """Decides, before an expensive request runs, whether it may (see module doc).

    Thread-safe: ``admit`` runs on the event loop, ``release`` on worker threads.
    """

    def __init__(
        self, limits: AdmissionLimits | None = None, *, secret: bytes | None = None
    ) -> None:
        self.limits = limits = limits or AdmissionLimits()
        self.tokens = AddressTokens(limits.token_window, secret)
        self._buckets: OrderedDict[Address, TokenBucket] = OrderedDict()  # LRU
        #: The flows with a request admitted and not finished, and its id.
        self._running: dict[Address, str] = {}
        self._per_host: dict[str, int] = {}  # outstanding per host (no zeros)
        self._lock = threading.Lock()

    @property
    def outstanding(self) -> int:
        return len(self._running)

    @property
    def flows_remembered(self) -> int:
        return len(self._buckets)

    def admit(
        self, peer: Peer | None, token: object, now: float, request_id: str = ""
    ) -> Refusal | None:
        """None: run it (and ``release`` afterwards); else the refusal to send.

        ``request_id``: a resend of the request its flow is running gets
        ``IN_PROGRESS`` (drop it: the running one's reply answers it).
        """
        if (
            peer is not None
            and not peer.validated
            and not self.tokens.check(token, peer.address, now)
        ):
            return Refusal(RETRY_WITH_TOKEN, self.tokens.issue(peer.address, now))
        flow = _flow(peer)
        limits = self.limits
        with self._lock:
            running = self._running.get(flow)
            if running is not None:
                if request_id and running == request_id:
                    return Refusal(IN_PROGRESS, "already running")
                return Refusal(BUSY, "a login of yours is still running: wait for its reply")
            if len(self._running) >= limits.max_outstanding:
                return Refusal(BUSY, "server busy: too many logins waiting; retry later")
            host = flow[0]
            if self._per_host.get(host, 0) >= limits.max_per_host:
                return Refusal(BUSY, "too many logins waiting from your address; retry later")
            if not self._bucket(flow, now).take(now):
                return Refusal(BUSY, "too many logins from your connection: wait a second")
            self._running[flow] = request_id
            self._per_host[host] = self._per_host.get(host, 0) + 1
        return None

    def release(self, peer: Peer | None) -> None:
        """The request admitted from ``peer`` is done (answered, dropped or abandoned)."""
        flow = _flow(peer)
        with self._lock:
            if self._running.pop(flow, None) is None:
                return  # nothing admitted from there: never count below zero
            host = flow[0]
            left = self._per_host[host] - 1
            if left:
                self._per_host[host] = left
            else:
                del self._per_host[host]

    def _bucket(self, flow: Address, now: float) -> TokenBucket:
        """The flow's rate bucket, remembered in a bounded LRU (call with the lock held)."""
        buckets = self._buckets
        bucket = buckets.get(flow)
        if bucket is not None:
            buckets.move_to_end(flow)
            return bucket
        limits = self.limits
        bucket = buckets[flow] = TokenBucket(limits.flow_rate, limits.flow_burst, now)
        if len(buckets) > limits.max_flows:
            buckets.popitem(last=False)
        return bucket


def _flow(peer: Peer | None) -> Address:
    """The flow a request belongs to: its peer's address (None: in-process callers)."""
    return peer.address if peer is not None else ("", 0)
