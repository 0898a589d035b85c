"""What the blocking and the asyncio clients share, without any I/O: a writer
connection's numbering, unacknowledged ops, credit and error routing, and a
subscription's resume point.

Numbers: ERROR carries an op's seq or a request's req in the same field
(docs/protocol.md), so on one connection ops and requests take their numbers from one
counter and no number names two things. Seqs may have gaps; a reconnect continues
above WELCOME's last_applied_seq and above every number used before.
"""

from __future__ import annotations

from collections import deque

from . import codec, errors

# Connection-level codes after which reconnecting can succeed: the server stopped or
# restarted, or was out of connections / source slots, or closed an idle connection,
# or is not (or no longer) the owner of its cluster (its message names the owner).
RETRYABLE = frozenset((errors.ShuttingDown.code, errors.Overloaded.code, errors.NotOwner.code))
# not_owner answers followed from one address of the list before trying the next.
MAX_OWNER_REDIRECTS = 3


class Outcome:
    """What dispatching one frame produced, for the I/O layer."""

    __slots__ = ("reply", "request_error", "fatal")

    def __init__(self):
        self.reply = None          # (req, message): a SYNCED / RESULT / STATS_REPLY / PONG
        self.request_error = None  # (req, ServerError)
        self.fatal = None          # a connection-level ServerError


class WriterState:
    def __init__(self, schemas: dict):
        self.schemas = schemas      # id -> Schema (for RESULT)
        self.next_number = 1
        self.unacked: deque = deque()  # (seq, frame) sent and not acknowledged, in seq order
        self.credit = 0
        self.is_writer = False
        self.op_errors: deque = deque()  # ServerErrors for ops (consumed, not applied)
        self.refused_from = None    # disk full: resend unacknowledged ops from this seq
        self.requests: dict = {}    # req -> (frame type expected, schema, with_claims)

    def on_welcome(self, welcome: codec.Welcome, is_writer: bool) -> list:
        """Takes a (re)connection's WELCOME; returns the frames to resend: every op
        above last_applied_seq, unchanged and in order."""
        mark = welcome.last_applied_seq
        self.is_writer = is_writer
        self.credit = welcome.credit
        unacked = self.unacked
        while unacked and unacked[0][0] <= mark:
            unacked.popleft()
        if mark >= self.next_number:
            self.next_number = mark + 1
        self.refused_from = None
        self.requests.clear()
        return [f for _, f in unacked]

    def take_number(self) -> int:
        n = self.next_number
        self.next_number = n + 1
        return n

    def can_send_op(self) -> bool:
        """False while as many ops as the credit are unacknowledged."""
        return not self.is_writer or len(self.unacked) < self.credit

    def sent_op(self, seq: int, frame: bytes) -> None:
        if self.is_writer:
            self.unacked.append((seq, frame))

    def dispatch(self, type_: int, b: bytes, start: int, end: int, out: Outcome) -> None:
        if type_ == codec.ACK:
            seq = codec.decode_single(type_, b, start, end).value
            unacked = self.unacked
            while unacked and unacked[0][0] <= seq:
                unacked.popleft()
        elif type_ == codec.CREDIT:
            self.credit = codec.decode_single(type_, b, start, end).value
        elif type_ == codec.ERROR:
            e = codec.decode_error(b, start, end)
            err = errors.from_error(e.seq_or_req, e.code, e.message)
            if e.seq_or_req == 0:
                out.fatal = err
            elif e.seq_or_req in self.requests:
                del self.requests[e.seq_or_req]
                out.request_error = (e.seq_or_req, err)
            elif e.code == errors.Overloaded.code:
                # A write refused for a full disk: not consumed; it and every later op
                # are sent again once the server has room.
                if self.refused_from is None or e.seq_or_req < self.refused_from:
                    self.refused_from = e.seq_or_req
            else:
                self.op_errors.append(err)
        elif type_ in (codec.SYNCED, codec.RESULT, codec.STATS_REPLY, codec.PONG):
            req = codec.get_varint(b, start)[0]
            expect = self.requests.pop(req, None)
            if expect is None or expect[0] != type_:
                raise codec.ProtocolError(
                    f"{codec.FRAME_NAMES[type_]} for req {req}, which was not asked for")
            if type_ == codec.RESULT:
                m = codec.decode(type_, b, start, end, schema=expect[1], include_claims=expect[2])
            else:
                m = codec.decode(type_, b, start, end)
            out.reply = (req, m)
        else:
            raise codec.ProtocolError(
                f"unexpected {codec.FRAME_NAMES.get(type_, hex(type_))} on a client connection")

    def take_refused(self) -> list:
        """The frames to send again after a refusal for a full disk."""
        start = self.refused_from
        self.refused_from = None
        return [f for seq, f in self.unacked if seq >= start]

    def raise_op_error(self) -> None:
        if self.op_errors:
            raise self.op_errors.popleft()


class SubscriptionState:
    """A subscription's parameters and resume point; turns its frames into events."""

    SUB = 1  # each subscription has its own connection: sub 1

    def __init__(self, schema: codec.Schema, prefix: bytes, field_mask: int, bootstrap: bool,
                 include_prev: bool, interval_ms: int, resume_window: int):
        self.schema = schema
        self.prefix = prefix
        self.field_mask = field_mask
        self.bootstrap = bootstrap
        self.include_prev = include_prev
        self.interval_ms = interval_ms
        self.window = resume_window   # the window to resume from (0: none yet)
        self.snapshot_done = False
        self.resumed = False          # the current SUBSCRIBE resumes after a reconnect

    def subscribe_frame(self, reconnect: bool) -> bytes:
        self.resumed = reconnect and self.window > 0
        self.snapshot_done = False
        flags = (codec.SUBSCRIBE_BOOTSTRAP if self.bootstrap else 0) | (
            codec.SUBSCRIBE_INCLUDE_PREV if self.include_prev else 0)
        return codec.encode_subscribe(self.SUB, self.schema.id, self.prefix, self.field_mask, flags,
                                      self.window, self.interval_ms)

    def error_action(self, err: errors.ServerError) -> str:
        """What to do about an ERROR on the subscription's connection: "resubscribe"
        (the server ended it, ERROR(sub, overloaded): a snapshot not read for 30 s,
        or more merged changes held than its backlog limit), "reconnect"
        (the server stops or sheds connections); any other error ends the
        subscription and is raised."""
        if err.code in RETRYABLE:
            if err.seq_or_req == 0:
                return "reconnect"
            if err.seq_or_req == self.SUB and err.code == errors.Overloaded.code:
                return "resubscribe"
        raise err

    def events(self, type_: int, b: bytes, start: int, end: int, out: list):
        """Appends the events of one frame to ``out``. Returns a ServerError the server
        sent (for the subscription or the connection), or None."""
        if type_ == codec.NOTIFY:
            m = codec.decode(type_, b, start, end, schema=self.schema,
                             include_prev=self.include_prev)
            out.extend(m.changes)
            self.window = m.window
        elif type_ == codec.SNAPSHOT:
            out.extend(codec.decode(type_, b, start, end, schema=self.schema).entries)
        elif type_ == codec.SNAPSHOT_END:
            m = codec.decode_snapshot_end(b, start, end)
            self.window = m.window
            self.snapshot_done = True
            out.append(SnapshotEnd(m.total, m.window, m.reset, self.resumed))
        elif type_ == codec.ERROR:
            e = codec.decode_error(b, start, end)
            return errors.from_error(e.seq_or_req, e.code, e.message)
        else:
            raise codec.ProtocolError(
                f"unexpected {codec.FRAME_NAMES.get(type_, hex(type_))} on a subscription")
        return None


class SnapshotEnd(codec.Message):
    """The end of a subscription's snapshot: the state is as of the end of ``window``.
    ``reset``: the entries since the previous SnapshotEnd are the whole state (drop
    whatever else you held); otherwise they were the changes since the window the
    subscription resumed from. ``resumed``: this snapshot followed a reconnect."""

    __slots__ = ("total", "window", "reset", "resumed")

    def __init__(self, total, window, reset, resumed):
        self.total = total
        self.window = window
        self.reset = reset
        self.resumed = resumed


def schema_of(schemas_by_name: dict, schemas_by_id: dict, schema) -> codec.Schema | int:
    """The Schema named by ``schema`` (a name, an id or a Schema). An id the server did
    not announce is returned as is, so that the server answers unknown_schema."""
    if isinstance(schema, codec.Schema):
        return schema
    if isinstance(schema, str):
        s = schemas_by_name.get(schema)
        if s is None:
            raise ValueError(f"the server has no schema {schema!r} "
                             f"(it has {', '.join(sorted(schemas_by_name))})")
        return s
    if isinstance(schema, int):
        return schemas_by_id.get(schema, schema)
    raise TypeError(f"schema must be a name, an id or a Schema, not {type(schema).__name__}")


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_addresses(address) -> list:
    """The servers to try, in order: "HOST:PORT", "HOST:PORT,HOST:PORT,..." or a list
    of HOST:PORT strings (an owner and its standbys, or replicas). Raises ValueError
    naming the entry that is wrong."""
    entries = address.split(",") if isinstance(address, str) else list(address)
    if not entries or entries == [""]:
        raise ValueError("the server list is empty; give HOST:PORT[,HOST:PORT...]")
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"address list {address!r}: entry {n} is empty or not a string; "
                             f"give HOST:PORT[,HOST:PORT...]")
        try:
            port = parse_address(entry)[1]
        except ValueError as e:
            raise ValueError(f"address list {address!r}: entry {n}: {e}") from None
        if port > 65535:
            raise ValueError(f"address list {address!r}: entry {n}: port {port} is over 65535")
    return entries


def connect_order(addresses: list, first: str = "") -> list:
    """The addresses one round of connecting tries: ``first`` (the owner a not_owner
    named) before the list."""
    return [first] + [a for a in addresses if a != first] if first else list(addresses)


class Attempts:
    """The addresses tried while (re)connecting, each with its last error."""

    def __init__(self):
        self.errors: dict = {}

    def failed(self, address: str, error: BaseException) -> None:
        self.errors[address] = error

    def sole(self):
        """The one error when a single address was tried: raised as it is."""
        return next(iter(self.errors.values())) if len(self.errors) == 1 else None

    def summary(self) -> str:
        return "; ".join(f"{a}: {e}" for a, e in self.errors.items())


def redirect(error: BaseException, target: str, hop: int, attempts: Attempts):
    """Notes a failed connection to ``target``; returns the owner to try next (a
    not_owner answer's) or None. Raises a refusal that no other server would lift
    (a wrong token, an unsupported version)."""
    if isinstance(error, errors.ServerError) and error.code not in RETRYABLE:
        raise error
    attempts.failed(target, error)
    if isinstance(error, errors.NotOwner) and error.owner and hop < MAX_OWNER_REDIRECTS:
        return error.owner
    return None


def no_server(addresses: list, attempts: Attempts) -> errors.ConnectionLost:
    return errors.ConnectionLost(
        f"no server of {','.join(addresses)} took the connection: {attempts.summary()}")
