"""The channel between a stress run and its worker processes
(:mod:`media.stress.worker`): the :class:`WorkerSetup` a worker gets first,
then length-prefixed pickles both ways, over the worker's stdin and stdout
(both ends are this program; the pipe never leaves the machine).

Apart from the worker module so that the run's side imports it without
importing the worker, which ``python -m media.stress.worker`` runs as
``__main__`` (importing both would load it twice).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from ..transform import HoldLimits

_HEADER = struct.Struct(">I")


@dataclass(frozen=True)
class WorkerSetup:
    """The first message to a worker."""

    #: the run's ledger origin (``time.monotonic()``)
    origin: float
    ws_url: str
    room: str
    log_level: str = "ERROR"
    #: how receivers hold frames of an epoch not installed yet (None: off)
    hold: HoldLimits | None = HoldLimits()


async def read_message(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at end of input."""
    try:
        header = await reader.readexactly(_HEADER.size)
        return pickle.loads(await reader.readexactly(_HEADER.unpack(header)[0]))
    except asyncio.IncompleteReadError:
        return None


def write_message(writer: asyncio.StreamWriter, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(data)) + data)
