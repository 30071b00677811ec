"""Admission of expensive requests (logins): address validation, rate limits, bounded queue.

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
2. **Rate limits**: a token bucket per source host and one for the server.
3. **A bounded queue**: at most ``max_outstanding`` admitted requests running
   or waiting for a thread; beyond that, ``BUSY`` at once.
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
    max_outstanding: int = 12
    #: Per source host: sustained requests per second, and the burst allowed.
    source_rate: float = 5.0
    source_burst: float = 10.0
    #: The whole server: sustained requests per second, and the burst allowed.
    total_rate: float = 30.0
    total_burst: float = 60.0
    #: Source hosts whose bucket is remembered (oldest forgotten first).
    max_sources: int = 4096
    #: Address tokens are valid in the window they were issued in and the next.
    token_window: float = 10.0

    def __post_init__(self) -> None:
        if self.max_outstanding < 1 or self.max_sources < 1:
            raise ValueError("admission limits must be at least 1")
        rates = (self.source_rate, self.source_burst, self.total_rate, self.total_burst)
        if not all(r > 0 for r in rates) or not self.token_window > 0:
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
    """Decides, before an expensive request runs, whether it may (see module doc)."""

    def __init__(
        self, limits: AdmissionLimits | None = None, *, secret: bytes | None = None
    ) -> None:
        self.limits = limits = limits or AdmissionLimits()
        self.tokens = AddressTokens(limits.token_window, secret)
        self._sources: OrderedDict[str, TokenBucket] = OrderedDict()
        self._total: TokenBucket | None = None
        self._outstanding = 0
        self._lock = threading.Lock()  # release() runs on worker threads

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def admit(self, peer: Peer | None, token: object, now: float) -> Refusal | None:
        """None: run it (and ``release`` afterwards); else the refusal to send."""
        limits = self.limits
        if (
            peer is not None
            and not peer.validated
            and not self.tokens.check(token, peer.address, now)
        ):
            return Refusal(RETRY_WITH_TOKEN, self.tokens.issue(peer.address, now))
        host = peer.address[0] if peer is not None else ""
        bucket = self._sources.get(host)
        if bucket is None:
            bucket = self._sources[host] = TokenBucket(limits.source_rate, limits.source_burst, now)
            if len(self._sources) > limits.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(host)
        if not bucket.take(now):
            return Refusal(BUSY, "too many logins from your address: wait a second and retry")
        if self._total is None:
            self._total = TokenBucket(limits.total_rate, limits.total_burst, now)
        if not self._total.take(now):
            return Refusal(BUSY, "too many logins at this server: wait a second and retry")
        with self._lock:
            if self._outstanding >= limits.max_outstanding:
                return Refusal(BUSY, "server busy: too many logins waiting; retry later")
            self._outstanding += 1
        return None

    def release(self) -> None:
        """An admitted request is done (answered, dropped or abandoned)."""
        with self._lock:
            self._outstanding -= 1
