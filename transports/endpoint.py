"""Server endpoint: the one request pipeline, bytes in, bytes out, no I/O (h11 style).

Every driver (TCP, UDP, the worker pool, the simulator) runs a request the
same way, in two steps:

* ``receive(data, now, budget)`` decodes it and applies the call semantics'
  deduplication (the at-most-once reply cache). It answers at once, with
  reply bytes (an error, a cached reply) or None (drop), or returns the
  ``Request`` to execute.
* ``complete(request, now, budget)`` runs the service, remembers the reply
  (reply cache), encodes it and fits it to the budget. Between the two steps
  an at-most-once request is "in progress": a simulator's service time or a
  crash sits there, and a driver with worker threads runs ``complete`` there
  when the service ``blocks`` on the request.

``handle`` is the two steps back to back. The endpoint is the one place where
service errors become wire errors; their messages are cut to the wire's limit.

``admission`` (optional, ``transports.admission``) screens the operations the
service marks expensive (``expensive_ops``, e.g. a login's scrypt) in
``receive``, before deduplication: an unvalidated address, a flow that
already has one running, a rate limit or a full queue gets a small error reply
at once. An admitted request holds its flow's place until ``complete`` (or
``abandon``) releases it. ``receive``, ``complete`` and ``abandon`` take the
``Peer`` for this: the driver says where a request came from and whether its
transport validated that address.

``budget`` caps a reply's size in bytes (UDP anti-amplification, see
docs/SECURITY.md): the endpoint does the fitting because only it can shorten
an error reply and still produce a valid, correctly checksummed message; the
driver decides whether a budget applies, since only it knows that its
transport has not validated the peer's address.

``crash_hook`` (optional) is called with ``(request, BEFORE_APPLY)`` just
before the service executes a request and ``(request, AFTER_APPLY)`` just
after it returned (its ledger change committed) and before the reply is
cached, encoded or sent: the two points where a process-crash injector
(``services.programs.crash_hook``) kills a real server.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from transports.admission import IN_PROGRESS, TOKEN_ARG, Admission, Peer, Refusal
from transports.semantics import InProgress, ReplyCache, Semantics
from transports.service import CallContext, Service, ServiceError
from transports.wire import (
    ERROR_MESSAGE_MAX,
    MAX_MESSAGE_SIZE,
    Reply,
    Request,
    Status,
    WireError,
    decode_reply,
    decode_request,
    encode_reply,
)

log = logging.getLogger(__name__)

INTERNAL = "INTERNAL"
RESULT_TOO_LARGE = "RESULT_TOO_LARGE"
_OVER_BUDGET = "reply exceeds the UDP anti-amplification limit; use TCP"

# Where ``complete`` calls its crash hook.
BEFORE_APPLY = "before-apply"
AFTER_APPLY = "after-apply"
CrashHook = Callable[[Request, str], None]


class ServerEndpoint:
    """Executes requests for one service under one call semantics."""

    def __init__(
        self,
        service: Service,
        semantics: Semantics = Semantics.AT_LEAST_ONCE,
        reply_cache: ReplyCache | None = None,
        crash_hook: CrashHook | None = None,
        *,
        admission: Admission | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.service = service
        self.crash_hook = crash_hook
        self.admission = admission
        #: Operations ``admission`` screens (empty without one), when the
        #: service's ``expensive(op, args)`` (if it has one) says so.
        self.expensive_ops: frozenset[str] = (
            frozenset(getattr(service, "expensive_ops", ())) if admission else frozenset()
        )
        self._expensive_call: Callable[[str, dict[str, object]], bool] | None = getattr(
            service, "expensive", None
        )
        #: The clock for times a service stores (None: ``now``, e.g. virtual time).
        self.wall_clock = wall_clock
        self.semantics = semantics
        if semantics is Semantics.AT_MOST_ONCE and reply_cache is None:
            reply_cache = ReplyCache()
        self.reply_cache = reply_cache if semantics is Semantics.AT_MOST_ONCE else None
        # One Counter per thread (the event loop, each pool worker), summed when
        # read: counting happens several times per request, and an increment of
        # a shared Counter would need a lock to stay exact.
        self._local = threading.local()
        self._thread_counters: list[Counter[str]] = []
        self._counters_lock = threading.Lock()  # guards the list, not the counts

    def blocks(self, request: Request) -> bool:
        """Whether the service may block on ``request``: run ``complete`` off the event loop."""
        return self.service.blocks(request.op, request.args)

    def expensive(self, request: Request) -> bool:
        """Whether ``request`` needs ``admission`` (and, admitted, holds a place until done)."""
        if request.op not in self.expensive_ops:
            return False
        check = self._expensive_call
        return check is None or check(request.op, request.args)

    def handle(self, data: bytes, now: float, budget: int | None = None) -> bytes | None:
        """``receive`` then, if there is a request to run, ``complete``, on this thread."""
        received = self.receive(data, now, budget)
        if isinstance(received, Request):
            return self.complete(received, now, budget)
        return received

    def receive(
        self, data: bytes, now: float, budget: int | None = None, peer: Peer | None = None
    ) -> Request | bytes | None:
        """Decode, admit and deduplicate one request (the first step of the pipeline).

        Returns the reply right away, bytes (an error, a refusal or a cached
        reply, fitted to ``budget``) or None (drop: nothing to say), or the
        ``Request`` to ``complete``. ``peer``: where it came from (None: a
        trusted caller in this process).
        """
        try:
            request = decode_request(data)
        except WireError as err:
            self.count(f"rejected_{err.code.lower()}")
            if not err.answerable or err.request_id is None:
                return None  # a corrupted message's id cannot be trusted
            reply = error_reply(err.request_id, err.attempt, err.code, err.message)
            return self.limit_reply(encode_reply(reply), budget)
        self.count("requests")
        admitted = False
        if request.op in self.expensive_ops:
            request, token = _without_token(request)
            admitted = self.expensive(request)
            if admitted:
                assert self.admission is not None
                refusal = self.admission.admit(peer, token, now, request.id)
                if refusal is not None:
                    return self._refuse(request, refusal, budget)
        if self.reply_cache is None:
            return request
        cached = self.reply_cache.begin(_cache_key(request), now)
        if cached is None:
            return request
        if admitted:
            self.abandon(request, peer)  # answered without running
        if isinstance(cached, InProgress):
            self.count("dropped_in_progress")
            return None
        self.count("reply_cache_hits")
        return self.limit_reply(self._encode(replace(cached, attempt=request.attempt)), budget)

    def _refuse(self, request: Request, refusal: Refusal, budget: int | None) -> bytes | None:
        """The reply to a request ``admission`` refused (None: drop it)."""
        if refusal.code == IN_PROGRESS:  # the running one's reply will answer it
            self.count("dropped_in_progress")
            return None
        self.count(f"refused_{refusal.code.lower()}")
        reply = error_reply(request.id, request.attempt, refusal.code, refusal.message)
        return self.limit_reply(encode_reply(reply), budget)

    def abandon(self, request: Request, peer: Peer | None = None) -> None:
        """``request`` (from ``peer``) will not be completed: free its flow's place."""
        if self.admission is not None and self.expensive(request):
            self.admission.release(peer)

    def complete(
        self, request: Request, now: float, budget: int | None = None, peer: Peer | None = None
    ) -> bytes | None:
        """Execute, remember the reply, encode it and fit it to ``budget`` (second step).

        ``peer``: as given to ``receive`` (an admitted request frees its flow's place).
        """
        hook = self.crash_hook
        if hook is not None:
            hook(request, BEFORE_APPLY)
        try:
            reply = self.execute(request, now)
        finally:
            self.abandon(request, peer)  # done: an admitted request frees its place
        if hook is not None:
            hook(request, AFTER_APPLY)  # a crash here loses the reply, not the change
        encoded = self._encode(reply)
        if self.reply_cache is not None:
            self.reply_cache.complete(_cache_key(request), reply, now, len(encoded))
        if budget is None or len(encoded) <= budget:
            return encoded
        return self.limit_reply(encoded, budget)

    def limit_reply(self, reply: bytes, budget: int | None) -> bytes | None:
        """``reply`` if it fits in ``budget`` bytes, else the closest thing that does.

        An error reply keeps its code and loses the tail of its message; an ok
        reply becomes a ``RESULT_TOO_LARGE`` error (the result is not sent, as
        if it exceeded the message limit); if not even an error with an empty
        message fits, the reply is dropped. Each case is counted.
        """
        if budget is None or len(reply) <= budget:
            return reply
        decoded = decode_reply(reply)  # our own encoding: cannot fail
        if decoded.status is Status.OK:
            self.count("amplification_replaced")
            decoded = Reply.error(decoded.id, decoded.attempt, RESULT_TOO_LARGE, _OVER_BUDGET)
        else:
            self.count("amplification_truncated")
        fitted = _fit_error(decoded, budget)
        if fitted is None:
            self.count("amplification_dropped")
        return fitted

    def execute(self, request: Request, now: float) -> Reply:
        """Run the service; map every error to a reply (the one mapping place)."""
        ctx = CallContext(
            request.id,
            now,
            self.semantics is Semantics.EXACTLY_ONCE,
            self.wall_clock() if self.wall_clock is not None else None,
        )
        try:
            result = self.service.handle(request.op, request.args, ctx)
        except ServiceError as err:
            self.count(f"error_{err.code.lower()}")
            return error_reply(request.id, request.attempt, err.code, err.message)
        except Exception:
            log.exception("internal error executing %s", request.op)
            self.count("error_internal")
            return Reply.error(request.id, request.attempt, INTERNAL, "internal server error")
        self.count("executed")
        return Reply.ok(request.id, request.attempt, result)

    def _encode(self, reply: Reply) -> bytes:
        try:
            return encode_reply(reply)
        except WireError:
            self.count("error_result_too_large")
            return encode_reply(
                Reply.error(
                    reply.id,
                    reply.attempt,
                    RESULT_TOO_LARGE,
                    "the result exceeds the message limit",
                )
            )

    def count(self, what: str, n: int = 1) -> None:
        try:
            mine: Counter[str] = self._local.counters
        except AttributeError:
            mine = self._local.counters = Counter()
            with self._counters_lock:
                self._thread_counters.append(mine)
        mine[what] += n

    @property
    def counters(self) -> Counter[str]:
        """Every count so far, over all threads (a snapshot)."""
        total: Counter[str] = Counter()
        with self._counters_lock:
            for counts in self._thread_counters:
                # dict() copies in one step (C, under the GIL): iterating another
                # thread's Counter while it adds a key would raise.
                total.update(dict(counts))
        return total


def error_reply(request_id: str, attempt: int, code: str, message: str) -> Reply:
    """An error reply whose message is cut to the wire's limit (its first
    ``ERROR_MESSAGE_MAX`` characters), so that a long message (e.g. one listing
    a request's many unexpected fields) cannot make the reply unencodable."""
    return Reply.error(request_id, attempt, code, message[:ERROR_MESSAGE_MAX])


def _without_token(request: Request) -> tuple[Request, object]:
    """``request`` without the address token in its args, and the token (None: none)."""
    if TOKEN_ARG not in request.args:
        return request, None
    args = dict(request.args)
    token = args.pop(TOKEN_ARG)
    return Request(request.id, request.op, args, request.attempt), token


def _fit_error(reply: Reply, limit: int) -> bytes | None:
    """Encode error ``reply`` in at most ``limit`` bytes by cutting its message."""
    data = encode_reply(reply)
    excess = len(data) - min(limit, MAX_MESSAGE_SIZE)
    if excess <= 0:
        return data
    message = reply.error_message or ""
    cut = len(message)
    # JSON escapes each character on its own, so dropping characters from the
    # end shrinks the message by exactly their encoded cost: one re-encode.
    while excess > 0 and cut > 0:
        cut -= 1
        excess -= _json_cost(message[cut])
    if excess > 0:
        return None
    return encode_reply(replace(reply, error_message=message[:cut]))


def _json_cost(char: str) -> int:
    """Bytes ``char`` takes inside a JSON string as the wire codec writes it."""
    return len(json.dumps(char, ensure_ascii=False).encode("utf-8")) - 2


def _cache_key(request: Request) -> str:
    # The id alone would let a buggy or hostile client that reuses an id read
    # another request's reply; binding the operation and arguments prevents it.
    args = json.dumps(request.args, sort_keys=True, separators=(",", ":"))
    return f"{request.id}\x00{request.op}\x00{args}"
