"""Python client for the convergence server (protocol v1, docs/protocol.md).

    from convergence import Client
    with Client("127.0.0.1:3727", source="sensors") as c:
        c.patch("player", "p-1", {"x": 1.5})
        c.sync()

The blocking client is :class:`Client`; the asyncio one is :class:`AsyncClient`.
Both are built on :mod:`convergence.codec`.
"""

from . import codec, errors
from ._state import SnapshotEnd
from .aio import AsyncClient, AsyncSubscription
from .client import Client, Entity, Subscription
from .codec import Change, Claim, Schema, SnapshotEntry
from .errors import (AuthFailed, BadFrame, BadId, BadValue, ConnectionLost, ConvergenceError,
                     FrameTooLarge, HandshakeRequired, NotASource, NotOwner, Overloaded, ProtocolError,
                     ServerError, ShuttingDown, SourceTakenOver, Timeout, UnknownSchema,
                     UnknownSubscription, UnsupportedVersion)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "AsyncSubscription", "AuthFailed", "BadFrame", "BadId", "BadValue", "Change",
    "Claim", "Client", "ConnectionLost", "ConvergenceError", "Entity", "FrameTooLarge",
    "HandshakeRequired", "NotASource", "NotOwner", "Overloaded", "ProtocolError", "Schema", "ServerError",
    "ShuttingDown", "SnapshotEnd", "SnapshotEntry", "SourceTakenOver", "Subscription", "Timeout",
    "UnknownSchema", "UnknownSubscription", "UnsupportedVersion", "codec", "errors",
]
