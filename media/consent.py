"""ICE consent freshness (RFC 7675) that a busy event loop does not break.

aioice checks consent every 4 to 6 s with one STUN Binding request whose
transaction ends 0.5 s after it is sent, and closes the connection after six
such checks in a row went unanswered.  A response that arrives later is
dropped, although RFC 7675 §5.1 only lets consent expire when *no* response
came for 30 s.  Through an SFU every subscribed stream shares one bundled UDP
socket (RFC 8843), and asyncio reads one datagram per loop iteration: when
the loop is busy (several peers, their encoders and decoders in one process)
the answer queues behind hundreds of RTP packets, arrives after its 0.5 s,
and a connection whose peer answered every check is closed (aiortc then
closes the whole RTCPeerConnection).

:func:`keep_consent` replaces the check loop of a peer connection's ICE
connections (per instance, reaching aioice's ``Connection`` through aiortc's
``RTCIceGatherer``; nothing process-wide) with RFC 7675's rule: a check every 4 to 6 s
(§5.1: randomized around 5 s), retransmitted as any STUN request over
unreliable transport (RFC 8489 §6.2.1) so a late answer still counts, and
the connection closed once 30 s passed without any answer (the consent
timeout of §5.1).
"""

from __future__ import annotations

import asyncio
import logging
import random

from aioice import Connection, stun
from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

#: RFC 7675 §5.1: consent expires this long (seconds) after the last answered check
CONSENT_TIMEOUT = 30.0
#: RFC 7675 §5.1: a check every 4 to 6 seconds
CHECK_INTERVAL = (4.0, 6.0)
#: retransmissions of one check (RFC 8489 §6.2.1: Rc; 0.5 + 1 + 2 + 4 s before it gives up)
CHECK_RETRANSMISSIONS = 3


def keep_consent(pc: RTCPeerConnection) -> None:
    """Check consent by RFC 7675's rule on every ICE connection of ``pc`` once it connects
    (call before ICE starts: before the description that completes the negotiation is set)."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is not None:
            connection: Connection = transport.transport.iceGatherer._connection
            connection.query_consent = lambda c=connection: _query_consent(c)  # type: ignore[method-assign]


async def _query_consent(connection: Connection) -> None:
    loop = asyncio.get_running_loop()
    answered = loop.time()
    checks: set[asyncio.Task[None]] = set()

    async def check(pair: object) -> None:
        nonlocal answered
        request = connection.build_request(pair, nominate=False)
        try:
            await pair.protocol.request(request, pair.remote_addr,  # type: ignore[attr-defined]
                                        integrity_key=connection.remote_password.encode("utf8"),
                                        retransmissions=CHECK_RETRANSMISSIONS)
            answered = loop.time()
        except stun.TransactionError:
            pass

    try:
        while True:
            await asyncio.sleep(random.uniform(*CHECK_INTERVAL))
            if loop.time() - answered > CONSENT_TIMEOUT:
                logger.info("ICE consent expired: no answer for %.0f s", loop.time() - answered)
                connection._query_consent_task = None  # closing must not cancel this task
                await connection.close()
                return
            for pair in connection._nominated.values():
                task = asyncio.ensure_future(check(pair))
                checks.add(task)
                task.add_done_callback(checks.discard)
    finally:
        for task in checks:
            task.cancel()
