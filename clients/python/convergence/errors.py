"""Typed errors. Every ERROR code of docs/protocol.md "Errors" has its class; each
carries ``code`` (the spec's number), ``name`` (the spec's name), ``seq_or_req`` (the
failed op's seq, request's req or subscription's sub; 0 when connection-level) and
the server's ``message``."""

from __future__ import annotations

from .codec import ProtocolError  # noqa: F401  (re-exported)


class ConvergenceError(Exception):
    """Base of every error this package raises on purpose."""


class ConnectionLost(ConvergenceError):
    """The connection ended (or could not be made) and the client does not reconnect:
    reconnecting is off, or it did not succeed within the reconnect timeout."""


class Timeout(ConvergenceError):
    """A reply did not arrive within the client's timeout."""


class ServerError(ConvergenceError):
    """An ERROR frame from the server."""

    code = 0
    name = "unknown"

    def __init__(self, seq_or_req: int, message: str, code: int | None = None):
        if code is not None:
            self.code = code
        self.seq_or_req = seq_or_req
        self.message = message
        super().__init__(f"{self.name} ({self.code}) for {seq_or_req}: {message}"
                         if seq_or_req else f"{self.name} ({self.code}): {message}")

    @property
    def connection_level(self) -> bool:
        """True when the server closes the connection after it (seq_or_req 0)."""
        return self.seq_or_req == 0


class BadFrame(ServerError):
    code, name = 1, "bad_frame"


class FrameTooLarge(ServerError):
    code, name = 2, "frame_too_large"


class UnsupportedVersion(ServerError):
    code, name = 3, "unsupported_version"


class AuthFailed(ServerError):
    code, name = 4, "auth_failed"


class NotASource(ServerError):
    code, name = 5, "not_a_source"


class UnknownSchema(ServerError):
    code, name = 6, "unknown_schema"


class BadValue(ServerError):
    code, name = 7, "bad_value"


class BadId(ServerError):
    code, name = 8, "bad_id"


class UnknownSubscription(ServerError):
    code, name = 9, "unknown_subscription"


class Overloaded(ServerError):
    code, name = 10, "overloaded"


class ShuttingDown(ServerError):
    code, name = 11, "shutting_down"


class SourceTakenOver(ServerError):
    code, name = 12, "source_taken_over"


class HandshakeRequired(ServerError):
    code, name = 13, "handshake_required"


class NotOwner(ServerError):
    """A writer's HELLO to a read replica (``serve --follow``). ``owner`` is the
    owner's HOST:PORT named by the message (``""`` when the replica does not know it
    yet): connect there instead."""

    code, name = 14, "not_owner"
    OWNER_IS_AT = "the owner is at "

    @property
    def owner(self) -> str:
        at = self.message.find(self.OWNER_IS_AT)
        return "" if at < 0 else self.message[at + len(self.OWNER_IS_AT):]


CODES: dict[int, type[ServerError]] = {
    cls.code: cls for cls in (BadFrame, FrameTooLarge, UnsupportedVersion, AuthFailed, NotASource,
                              UnknownSchema, BadValue, BadId, UnknownSubscription, Overloaded,
                              ShuttingDown, SourceTakenOver, HandshakeRequired, NotOwner)
}


def from_error(seq_or_req: int, code: int, message: str) -> ServerError:
    """The typed error for an ERROR frame; a code this version does not know gives a
    plain ServerError carrying it."""
    cls = CODES.get(code)
    if cls is None:
        return ServerError(seq_or_req, message, code)
    return cls(seq_or_req, message)
