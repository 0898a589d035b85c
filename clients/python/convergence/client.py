"""The blocking client: one TCP connection per Client (writes, queries, stats, sync)
and one per Subscription. One thread at a time per object."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections import deque

from . import codec, errors
from ._state import (RETRYABLE, Attempts, Outcome, SnapshotEnd, SubscriptionState, WriterState,
                     connect_order, no_server, parse_address, parse_addresses, redirect,
                     schema_of)

_RECV = 1 << 18
_BATCH_BYTES = 1 << 18


class Entity:
    """A QUERY's answer: the converged ``record`` and, when asked for, the live
    ``claims`` (codec.Claim: source, ts_max, record), ordered by the server's source id."""

    __slots__ = ("record", "claims")

    def __init__(self, record: dict, claims):
        self.record = record
        self.claims = claims

    def __repr__(self):
        return f"Entity({self.record!r}, claims={self.claims!r})"


class _Reconnected(Exception):
    """Internal: the connection was replaced; requests in flight must be sent again."""


class _Conn:
    """A socket with a frame reader: connect + HELLO -> WELCOME."""

    def __init__(self, address: str, hello: bytes, timeout: float, max_frame: int, tls=None):
        host, port = parse_address(address)
        self.address = address
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            # TLS below the framing; the server's certificate must name `host`.
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except BaseException:
                self.sock.close()
                raise
        self.reader = codec.FrameReader(max_frame)
        self.sock.sendall(hello)
        self.held: list = []  # frames that arrived with WELCOME
        deadline = time.monotonic() + timeout
        while True:
            frames = self.recv(deadline)
            for i, (type_, b, start, end) in enumerate(frames):
                if type_ == codec.WELCOME:
                    self.welcome = codec.decode_welcome(b, start, end)
                    self.held = frames[i + 1:]
                    return
                if type_ == codec.ERROR:
                    e = codec.decode_error(b, start, end)
                    self.close()
                    raise errors.from_error(e.seq_or_req, e.code, e.message)
                self.close()
                raise codec.ProtocolError(f"{codec.FRAME_NAMES.get(type_, type_)} before WELCOME")

    def recv(self, deadline: float | None) -> list:
        """The frames of the next read; raises Timeout past ``deadline`` and
        ConnectionError when the server closed."""
        if self.held:
            frames, self.held = self.held, []
            return frames
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.Timeout("no reply within the timeout")
            self.sock.settimeout(left)
        else:
            self.sock.settimeout(None)
        try:
            data = self.sock.recv(_RECV)
        except socket.timeout:
            raise errors.Timeout("no reply within the timeout") from None
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self.reader.feed(data)
        return self.reader.frames()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


def _open(addresses: list, hello: bytes, timeout: float, max_frame: int, tls,
          attempts: Attempts, first: str = ""):
    """One round over ``addresses`` (``first`` before them), following not_owner
    answers: the first connection that says WELCOME, or None (``attempts`` says why)."""
    for address in connect_order(addresses, first):
        target, hop = address, 0
        while target is not None:
            try:
                return _Conn(target, hello, timeout, max_frame, tls)
            except (errors.ServerError, OSError, errors.Timeout, codec.ProtocolError) as e:
                target, hop = redirect(e, target, hop, attempts), hop + 1
    return None


def _connect(addresses: list, hello: bytes, timeout: float, max_frame: int, tls) -> _Conn:
    """The first connection: one round; fails with every address's error (or, when
    there was one address, its error as it is)."""
    attempts = Attempts()
    conn = _open(addresses, hello, timeout, max_frame, tls, attempts)
    if conn is None:
        raise attempts.sole() or no_server(addresses, attempts)
    return conn


def _hello(source, token, lease_ms) -> bytes:
    return codec.encode_hello(source or b"", token or b"", lease_ms)


class Client:
    """A connection to a convergence server.

    ``source``: the writer's source name (None: this connection only reads). Ops get
    their seq from the client, starting above WELCOME's last_applied_seq. Every op
    not yet acknowledged is kept (at most the server's credit of them) and sent again,
    unchanged, after a reconnect, so that each op is applied exactly once. Ops are
    sent as they are made, or together inside ``with client.batch():``.

    ``address``: "HOST:PORT", or several servers as "HOST:PORT,HOST:PORT,..." or a
    list (an owner and its standbys, or replicas): tried in order, following
    not_owner answers to the owner they name.

    ``reconnect``: when the connection ends (the server restarted or died, a network
    error, ERROR shutting_down, overloaded or not_owner from a deposed owner), connect
    again, to the named owner first and then to the servers of ``address`` in turn, for
    up to ``reconnect_timeout`` seconds; False: raise instead. ``timeout`` bounds every
    wait for a reply or for credit.
    """

    def __init__(self, address: str | list = "127.0.0.1:3727", *,
                 source: str | bytes | None = None, token: str | bytes | None = None,
                 lease_ms: int = 0, timeout: float = 10.0, reconnect: bool = True,
                 reconnect_timeout: float = 30.0, max_frame: int = 64 << 20,
                 tls: ssl.SSLContext | None = None):
        self.addresses = parse_addresses(address)
        self.address = ",".join(self.addresses)
        self._hello = _hello(source, token, lease_ms)
        self._tls = tls
        self._params = (self.addresses, token, timeout, reconnect, reconnect_timeout, max_frame)
        self._is_writer = bool(source)
        self.timeout = timeout
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self._max_frame = max_frame
        self._out: list = []
        self._out_bytes = 0
        self._batching = 0
        self._fatal = None
        self._replies: dict = {}
        self._state = WriterState({})
        self.reconnects = 0
        self._conn = _connect(self.addresses, self._hello, timeout, max_frame, tls)
        self._take_welcome(self._conn.welcome)

    # -- connection

    def _take_welcome(self, welcome: codec.Welcome) -> list:
        self.welcome = welcome
        self.schemas = {s.name: s for s in welcome.schemas}
        self._schemas_by_id = {s.id: s for s in welcome.schemas}
        self._state.schemas = self._schemas_by_id
        return self._state.on_welcome(welcome, self._is_writer)

    @property
    def server(self) -> str:
        """The address of the server this connection is to."""
        return self._conn.address

    @property
    def last_applied_seq(self) -> int:
        """WELCOME's mark of the current connection."""
        return self.welcome.last_applied_seq

    @property
    def credit(self) -> int:
        return self._state.credit

    @property
    def unacknowledged(self) -> int:
        """Ops sent (or queued in a batch) and not acknowledged yet."""
        return len(self._state.unacked)

    def _lost(self, cause: BaseException) -> None:
        """The connection failed: reconnect and resend, or raise."""
        self._conn.close()
        if isinstance(cause, errors.ServerError) and cause.code not in RETRYABLE:
            self._fatal = cause
            raise cause
        if not self.reconnect:
            self._fatal = cause if isinstance(cause, errors.ServerError) else errors.ConnectionLost(
                f"connection to {self.address} lost: {cause}")
            raise self._fatal from (None if self._fatal is cause else cause)
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.02
        attempts = Attempts()
        attempts.failed(self._conn.address, cause)
        first = cause.owner if isinstance(cause, errors.NotOwner) else ""
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            try:
                conn = _open(self.addresses, self._hello, self.timeout, self._max_frame,
                             self._tls, attempts, first)
            except errors.ServerError as e:
                self._fatal = e
                raise
            if conn is None:
                continue
            self._conn = conn
            self.reconnects += 1
            self._out.clear()
            self._out_bytes = 0
            resend = self._take_welcome(conn.welcome)
            try:
                if resend:
                    conn.sock.sendall(b"".join(resend))
            except OSError as e:
                conn.close()
                attempts.failed(conn.address, e)
                continue
            raise _Reconnected()
        self._fatal = errors.ConnectionLost(
            f"could not reconnect to {self.address} within {self.reconnect_timeout}s: "
            f"{attempts.summary()}")
        raise self._fatal

    def _check(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _send(self, data: bytes) -> None:
        try:
            self._conn.sock.settimeout(self.timeout)
            self._conn.sock.sendall(data)
        except OSError as e:
            self._lost(e)

    def flush(self) -> None:
        """Sends the ops queued by a batch."""
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._out_bytes = 0
            try:
                self._send(data)
            except _Reconnected:
                pass  # the batch's ops were among the unacknowledged ops resent

    def _pump(self, deadline: float | None) -> None:
        """Reads and dispatches the frames of one read."""
        try:
            frames = self._conn.recv(deadline)
            out = Outcome()
            for type_, b, start, end in frames:
                self._state.dispatch(type_, b, start, end, out)
                if out.reply is not None:
                    self._replies[out.reply[0]] = out.reply[1]
                    out.reply = None
                if out.request_error is not None:
                    self._replies[out.request_error[0]] = out.request_error[1]
                    out.request_error = None
                if out.fatal is not None:
                    raise out.fatal
        except errors.Timeout:
            raise
        except (OSError, codec.ProtocolError, errors.ServerError) as e:
            self._lost(e)
        if self._state.refused_from is not None:
            # The disk was full: send the refused op and those after it again, after a
            # pause that gives the server time to find room.
            time.sleep(0.1)
            self._send(b"".join(self._state.take_refused()))

    # -- writes

    @contextlib.contextmanager
    def batch(self):
        """Queues ops and sends them together (at the end, when the queue is large,
        or when the credit is used up). Pipelined writes go much faster this way."""
        self._batching += 1
        try:
            yield self
        finally:
            self._batching -= 1
            if not self._batching and self._fatal is None:
                self.flush()

    def _op(self, type_: int, schema, id, values, ts: int) -> int:
        if self._fatal is not None:
            raise self._fatal
        state = self._state
        if state.op_errors:
            state.raise_op_error()
        s = self.schemas.get(schema) if type(schema) is str else None
        if s is None:
            s = schema_of(self.schemas, self._schemas_by_id, schema)
        if type_ == codec.RETRACT:
            record = None
        elif isinstance(s, int):
            raise ValueError(f"the server announced no schema {s}: cannot encode a record for it")
        else:
            record = s.encode_record(values)
        if state.is_writer and len(state.unacked) >= state.credit:
            self._wait_credit()
        seq = state.next_number
        state.next_number = seq + 1
        frame = codec.encode_write(type_, seq, ts, s if isinstance(s, int) else s.id,
                                   codec.to_bytes(id), record)
        if state.is_writer:
            state.unacked.append((seq, frame))
        if self._batching:
            self._out.append(frame)
            self._out_bytes += len(frame)
            if self._out_bytes >= _BATCH_BYTES:
                self.flush()
        else:
            try:
                self._send(frame)
            except _Reconnected:
                pass  # resent with the other unacknowledged ops
        return seq

    def _wait_credit(self) -> None:
        self.flush()
        deadline = time.monotonic() + self.timeout
        while not self._state.can_send_op():
            try:
                self._pump(deadline)
            except _Reconnected:
                pass

    def assert_(self, schema, id, values: dict, *, ts: int = 0) -> int:
        """Replaces this source's claim on the entity with ``values``. ``ts``:
        microseconds since the Unix epoch (0: the server's receive time). Returns the
        op's seq."""
        return self._op(codec.ASSERT, schema, id, values, ts)

    def patch(self, schema, id, values: dict, *, ts: int = 0) -> int:
        """Sets ``values`` in this source's claim on the entity. Returns the seq."""
        return self._op(codec.PATCH, schema, id, values, ts)

    def retract(self, schema, id, *, ts: int = 0) -> int:
        """Removes this source's claim on the entity. Returns the seq."""
        return self._op(codec.RETRACT, schema, id, None, ts)

    # -- requests

    def _request(self, type_: int, build, schema=None, with_claims=False):
        """Sends a request built by ``build(req)`` and waits for its reply; sends it
        again after a reconnect."""
        self._check()
        self.flush()
        deadline = time.monotonic() + self.timeout
        while True:
            req = self._state.take_number()
            self._state.requests[req] = (type_, schema, with_claims)
            try:
                self._send(build(req))
                while req not in self._replies:
                    self._pump(deadline)
            except _Reconnected:
                continue
            reply = self._replies.pop(req)
            if isinstance(reply, errors.ServerError):
                raise reply
            return reply

    def sync(self) -> None:
        """Returns once every op sent so far is applied and durable (SYNC, then every
        op acknowledged), and raises the error of an op the server refused, if any."""
        self._request(codec.SYNCED, lambda req: codec.encode_single(codec.SYNC, req))
        deadline = time.monotonic() + self.timeout
        while self._state.unacked and self._is_writer:
            try:
                self._pump(deadline)
            except _Reconnected:
                pass
        self._state.raise_op_error()

    def query(self, schema, id, *, claims: bool = False) -> Entity | None:
        """The converged record of the entity, or None when it does not exist. A query
        sees every op acknowledged before it; call sync() first to read your writes."""
        s = schema_of(self.schemas, self._schemas_by_id, schema)
        sid = s if isinstance(s, int) else s.id
        flags = codec.QUERY_INCLUDE_CLAIMS if claims else 0
        idb = codec.to_bytes(id)
        r = self._request(codec.RESULT, lambda req: codec.encode_query(req, sid, idb, flags),
                          None if isinstance(s, int) else s, claims)
        return Entity(r.record, r.claims) if r.found else None

    def stats(self) -> dict:
        """The server's counters (docs/operations.md)."""
        r = self._request(codec.STATS_REPLY, lambda req: codec.encode_single(codec.STATS, req))
        return dict(r.stats)

    def ping(self) -> float:
        """Round-trip time in seconds."""
        t = time.perf_counter()
        self._request(codec.PONG, lambda req: codec.encode_single(codec.PING, req))
        return time.perf_counter() - t

    # -- subscriptions

    def subscribe(self, schema, *, prefix: str | bytes = "", fields=None, bootstrap: bool = True,
                  include_prev: bool = False, interval_ms: int = 0,
                  resume_window: int = 0) -> "Subscription":
        """A subscription on its own connection (see Subscription)."""
        self._check()
        s = schema_of(self.schemas, self._schemas_by_id, schema)
        address, token, timeout, reconnect, reconnect_timeout, max_frame = self._params
        return Subscription(address, s, token=token, prefix=prefix, fields=fields,
                            bootstrap=bootstrap, include_prev=include_prev,
                            interval_ms=interval_ms, resume_window=resume_window,
                            timeout=timeout, reconnect=reconnect,
                            reconnect_timeout=reconnect_timeout, max_frame=max_frame,
                            tls=self._tls)

    def close(self) -> None:
        """Sends what a batch queued and closes. Unacknowledged ops are not waited
        for: call sync() first."""
        if self._fatal is None:
            with contextlib.suppress(errors.ConvergenceError, OSError, _Reconnected):
                self.flush()
        self._conn.close()
        if self._fatal is None:
            self._fatal = errors.ConnectionLost("the client is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Subscription:
    """An iterator of a subscription's events: SnapshotEntry (the bootstrap or resume
    snapshot), SnapshotEnd, then Change for every change of each window. When the
    connection ends it reconnects and resumes from the last window it delivered
    (SnapshotEnd.resumed; SnapshotEnd.reset when the server sent the whole state
    instead). Reads only as fast as it is iterated: the server conflates what a slow
    subscriber has not read, so nothing grows without bound here."""

    def __init__(self, address: str | list, schema, *, token=None, prefix="", fields=None,
                 bootstrap=True, include_prev=False, interval_ms=0, resume_window=0,
                 timeout=10.0, reconnect=True, reconnect_timeout=30.0, max_frame=64 << 20,
                 tls=None):
        self.addresses = parse_addresses(address)
        self.address = ",".join(self.addresses)
        self._tls = tls
        self.timeout = timeout
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self._max_frame = max_frame
        self._hello = _hello(None, token, 0)
        self._events: deque = deque()
        self._closed = False
        self.reconnects = 0
        self._conn = _connect(self.addresses, self._hello, timeout, max_frame, tls)
        if isinstance(schema, str):
            schema = {s.name: s for s in self._conn.welcome.schemas}.get(schema, schema)
        if isinstance(schema, int):
            # Unknown to the server: the SUBSCRIBE below gets unknown_schema.
            schema = codec.Schema(schema, str(schema), [])
        if not isinstance(schema, codec.Schema):
            raise ValueError(f"the server has no schema {schema!r}")
        mask = schema.mask_of(fields) if fields else 0
        self._state = SubscriptionState(schema, codec.to_bytes(prefix), mask, bootstrap,
                                        include_prev, interval_ms, resume_window)
        self._conn.sock.sendall(self._state.subscribe_frame(False))

    @property
    def window(self) -> int:
        """The window the subscription would resume from (0: before its snapshot)."""
        return self._state.window

    @property
    def schema(self) -> codec.Schema:
        return self._state.schema

    def __iter__(self):
        return self

    def __next__(self):
        ev = self.next(None)
        if ev is None:
            raise StopIteration
        return ev

    def next(self, timeout: float | None = None):
        """The next event; None after close() or when ``timeout`` seconds pass first."""
        events = self._events
        if events:
            return events.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not events:
            if self._closed:
                return None
            try:
                frames = self._conn.recv(deadline)
            except errors.Timeout:
                return None
            except (OSError, codec.ProtocolError) as e:
                self._lost(e)
                continue
            try:
                for type_, b, start, end in frames:
                    err = self._state.events(type_, b, start, end, events)
                    if err is not None:
                        self._on_error(err)
                        break
            except codec.ProtocolError as e:
                self._lost(e)
        return events.popleft()

    def _on_error(self, err: errors.ServerError) -> None:
        try:
            action = self._state.error_action(err)
        except errors.ServerError:
            self.close()
            raise
        if action == "reconnect":
            self._lost(err)
            return
        try:
            self._conn.sock.sendall(self._state.subscribe_frame(True))
        except OSError as e:
            self._lost(e)

    def _lost(self, cause: BaseException) -> None:
        self._conn.close()
        if self._closed:
            return
        if not self.reconnect:
            self._closed = True
            if isinstance(cause, errors.ServerError):
                raise cause
            raise errors.ConnectionLost(f"subscription connection lost: {cause}") from cause
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.02
        attempts = Attempts()
        attempts.failed(self._conn.address, cause)
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            try:
                conn = _open(self.addresses, self._hello, self.timeout, self._max_frame,
                             self._tls, attempts)
            except errors.ServerError:
                self._closed = True
                raise
            if conn is None:
                continue
            try:
                conn.sock.sendall(self._state.subscribe_frame(True))
            except OSError as e:
                conn.close()
                attempts.failed(conn.address, e)
                continue
            self._conn = conn
            self.reconnects += 1
            return
        self._closed = True
        raise errors.ConnectionLost(
            f"could not reconnect to {self.address} within {self.reconnect_timeout}s: "
            f"{attempts.summary()}")

    def close(self) -> None:
        self._closed = True
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["Client", "Subscription", "Entity", "SnapshotEnd"]
