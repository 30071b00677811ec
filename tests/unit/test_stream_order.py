"""through_link keeps a stream link's deliveries in order on the event loop (no sockets).

The loop runs callbacks due at the same instant in no fixed order, and the
TCP model gives every message held behind a retransmission the same time:
without care the real TCP driver would reorder a byte stream.
"""

from __future__ import annotations

import asyncio
import time

from transports.aio.driver import through_link
from transports.schedule import DELIVER, DROP, ScheduledLink, delay


class Sink(list[str]):
    def take(self, data: bytes) -> None:
        self.append(data.decode())


def _no_reset() -> None:
    raise AssertionError("no reset expected")


def test_messages_held_behind_a_retransmission_arrive_in_order() -> None:
    async def run() -> list[int]:
        link = ScheduledLink([DROP], "client0/request", stream=True)
        out: list[int] = []
        for k in range(12):  # all held behind #0 until TCP retransmits it (~204 ms)
            through_link(link, b"%d" % k, lambda data: out.append(int(data)), _no_reset)
        await asyncio.sleep(link.last_delivery_at - asyncio.get_running_loop().time() + 0.05)
        return out

    assert asyncio.run(run()) == list(range(12))


def test_a_message_due_now_does_not_overtake_one_due_before_it() -> None:
    async def run() -> list[str]:
        link = ScheduledLink([delay(0.01)], "client0/request", stream=True)
        sink = Sink()
        through_link(link, b"first", sink.take, _no_reset)
        time.sleep(0.03)  # the loop is late: "first" is due but has not run
        through_link(link, b"second", sink.take, _no_reset)
        await asyncio.sleep(0.02)
        return list(sink)

    assert asyncio.run(run()) == ["first", "second"]


def test_a_new_connection_does_not_wait_for_the_old_ones_deliveries() -> None:
    async def run() -> list[str]:
        link = ScheduledLink([delay(0.5), DELIVER], "client0/request", stream=True)
        sink = Sink()
        through_link(link, b"old", sink.take, _no_reset)  # held 0.5 s
        link.connect(asyncio.get_running_loop().time())  # the client reconnects
        through_link(link, b"new", sink.take, _no_reset)
        await asyncio.sleep(0.05)
        return list(sink)

    assert asyncio.run(run()) == ["new"]
