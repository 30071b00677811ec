"""Client side of one logical operation: the retry state machine, no I/O.

A ``Call`` owns one request id and sends attempts 1..max_attempts of it. Time
is an argument (aioquic style): the driver asks ``next_timer()``, sleeps or
waits for a reply until then, and calls ``on_timer(now)``, ``on_reply(data,
now)`` or ``on_connection_lost(now)``. Each may return bytes to send. The same
machine runs on TCP, UDP and the virtual-time simulator.

Every call ends in one of three outcomes (Jepsen's ok / fail / info):
``ok`` the server applied it and said so; ``failed`` a definite error reply,
or no attempt ever left the client (every connect was refused): nothing
applied; ``unknown`` the client gave up (or the server hit an internal error):
it may or may not have been applied.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Any

from transports.admission import RETRY_WITH_TOKEN, TOKEN_ARG
from transports.retry import RetryBudget, RetryPolicy, RetrySchedule, RtoEstimator
from transports.wire import Reply, Request, Status, WireError, decode_reply, encode_request

# Error codes that do not prove the operation was not applied.
INDETERMINATE_ERRORS = frozenset({"INTERNAL"})
#: Address tokens a call accepts before it gives up (a server asking again
#: after a valid echo means the path changed address or is broken).
MAX_TOKEN_ROUNDS = 2


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, init=False)
class CallResult:
    request: Request
    outcome: Outcome
    reply: Reply | None
    attempts: int
    started: float
    finished: float

    # One per logical operation: built by writing __dict__, as wire.Request is,
    # instead of the generated frozen __init__ (a call per field).
    # Assignment after construction still raises.
    def __init__(
        self,
        request: Request,
        outcome: Outcome,
        reply: Reply | None,
        attempts: int,
        started: float,
        finished: float,
    ) -> None:
        fields = self.__dict__
        fields["request"], fields["outcome"], fields["reply"] = request, outcome, reply
        fields["attempts"], fields["started"], fields["finished"] = attempts, started, finished

    @property
    def latency(self) -> float:
        return self.finished - self.started

    @property
    def result(self) -> dict[str, Any]:
        return dict(self.reply.result or {}) if self.reply is not None else {}

    @property
    def error_code(self) -> str | None:
        return self.reply.error_code if self.reply is not None else None


class _State(enum.Enum):
    WAITING = "waiting for a reply"
    BACKING_OFF = "waiting to retry"
    DONE = "done"


@dataclass
class RetrySettings:
    """How a client retries: policy, attempt limit, shared RTT estimator, budget."""

    policy: RetryPolicy
    max_attempts: int = 5
    rto: RtoEstimator | None = None
    budget: RetryBudget | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


class Call:
    """The retry state machine of one logical operation."""

    def __init__(self, request: Request, settings: RetrySettings, rng: random.Random) -> None:
        self.request = request
        self.settings = settings
        self._schedule = RetrySchedule(settings.policy, rng=rng, rto=settings.rto)
        self._state = _State.WAITING
        self._timer = 0.0
        self.attempts = 0
        self.timeouts = 0  # attempts that timed out (a driver may drop the connection)
        self.started = 0.0
        self._sent_at = 0.0
        self._unsent = 0  # attempts that provably never left (connect refused)
        self._token: str | None = None  # the server's address token, echoed from now on
        self._token_rounds = 0  # resends asked for by RETRY_WITH_TOKEN: not retries
        self.result: CallResult | None = None

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def start(self, now: float) -> bytes:
        """Attempt 1: returns the bytes to send."""
        self.started = now
        return self._send(now)

    def next_timer(self) -> float | None:
        """When ``on_timer`` must run next (absolute time); None once done."""
        return None if self._state is _State.DONE else self._timer

    def on_timer(self, now: float) -> bytes | None:
        if self._state is _State.WAITING and now >= self._timer:
            self.timeouts += 1
            if self.settings.rto is not None:
                self.settings.rto.on_timeout()  # RFC 6298 5.5: back off the timer
            self._attempt_failed(now)
        elif self._state is _State.BACKING_OFF and now >= self._timer:
            return self._send(now)
        return None

    def on_connection_lost(self, now: float, *, sent: bool = True) -> None:
        """The stream broke while this attempt was outstanding (TCP reset).

        ``sent=False``: the attempt provably never left (no connection could
        be opened), so it cannot have been applied.
        """
        if self._state is _State.WAITING:
            self._unsent += not sent
            self._attempt_failed(now)

    def on_reply(self, data: bytes, now: float) -> bool:
        """Feed a received message; True when it answered this call."""
        if self._state is _State.DONE:
            return False
        try:
            reply = decode_reply(data)
        except WireError:
            return False  # corrupted or garbage: the timer will retry
        if reply.id != self.request.id:
            return False  # a late reply to an earlier call
        if reply.error_code == RETRY_WITH_TOKEN and self._token_rounds < MAX_TOKEN_ROUNDS:
            # Address validation (PROTOCOL.md 5.3): not run; resend at once with the token.
            self._token = reply.error_message or ""
            self._token_rounds += 1
            self._state = _State.BACKING_OFF
            self._timer = now
            return True
        # Karn's rule: an RTT sample only from a call answered on its first
        # attempt, where the reply cannot belong to another transmission.
        settings = self.settings
        if self.attempts == 1 and settings.rto is not None:
            settings.rto.on_sample(now - self._sent_at)
        if settings.budget is not None:
            settings.budget.on_success()
        if reply.status is Status.OK:
            outcome = Outcome.OK
        elif reply.error_code in INDETERMINATE_ERRORS:
            outcome = Outcome.UNKNOWN
        else:
            outcome = Outcome.FAILED
        self._finish(outcome, reply, now)
        return True

    def _send(self, now: float) -> bytes:
        self.attempts = attempt = self.attempts + 1
        self._sent_at = now
        self._state = _State.WAITING
        self._timer = now + self._schedule.attempt_timeout(attempt)
        request = self.request
        if self._token is not None:
            request = Request(request.id, request.op, {**request.args, TOKEN_ARG: self._token})
        if request.attempt != attempt:  # the caller's own Request serves when it matches
            request = Request(request.id, request.op, request.args, attempt)
        return encode_request(request)

    def _attempt_failed(self, now: float) -> None:
        budget = self.settings.budget
        if budget is not None:
            budget.on_failure()
        if self.attempts >= self.settings.max_attempts + self._token_rounds or (
            budget is not None and not budget.allow_retry()
        ):
            # If no attempt ever left, nothing can have been applied: a definite failure.
            never_sent = self._unsent == self.attempts
            self._finish(Outcome.FAILED if never_sent else Outcome.UNKNOWN, None, now)
            return
        self._state = _State.BACKING_OFF
        self._timer = now + self._schedule.delay_before(self.attempts + 1)

    def _finish(self, outcome: Outcome, reply: Reply | None, now: float) -> None:
        self._state = _State.DONE
        self.result = CallResult(self.request, outcome, reply, self.attempts, self.started, now)
