"""The two fault links of one client/server path (sans-I/O, no clock).

A ``Links`` is what every driver (TCP, UDP, the simulator) holds per client
or per peer: the ``FaultLink`` for requests and the one for replies, or None
where no fault applies. Built from ``LinkFaults`` and the run's seed, named
so that TCP, UDP and the simulator draw the same fates for the same client.
"""

from __future__ import annotations

from dataclasses import dataclass

from transports.faults import Direction, FaultLink, LinkFaults


@dataclass(frozen=True)
class Links:
    """The fault links of one client/server link, one per direction."""

    request: FaultLink | None = None
    reply: FaultLink | None = None

    @classmethod
    def build(
        cls,
        faults: LinkFaults | None,
        seed: int,
        name: str,
        *,
        stream: bool,
        always: bool = False,
        origin: float | None = None,
    ) -> Links:
        """The links of path ``name``; none where no fault can act, unless ``always``.

        ``always``: build them even then (``passthrough`` links that only
        count messages), to measure what the fault layer itself costs.
        ``origin``: time zero of timed faults (a partition), in the driver's clock
        (None: each link's first message).
        """
        if faults is None or (faults.is_zero and not always):
            return NO_LINKS
        return cls(
            FaultLink(
                faults, seed, f"{name}/{Direction.REQUEST.value}", stream=stream, origin=origin
            ),
            FaultLink(
                faults, seed, f"{name}/{Direction.REPLY.value}", stream=stream, origin=origin
            ),
        )


NO_LINKS = Links()
