"""The asyncio client: the same surface as the blocking one, in coroutines and
async iterators. One event loop per object."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque

from . import codec, errors
from ._state import (RETRYABLE, Attempts, Outcome, SubscriptionState, WriterState, connect_order,
                     no_server, parse_address, parse_addresses, redirect, schema_of)
from .client import Entity, _hello

_RECV = 1 << 18
_HIGH_WATER = 1 << 20


class _Reconnected(Exception):
    """Internal: the connection was replaced while a request was in flight."""


async def _open_one(address: str, hello: bytes, timeout: float, max_frame: int, tls=None):
    """Connects and says HELLO; returns (reader, writer, frame reader, WELCOME, frames
    that arrived with it, address)."""
    host, port = parse_address(address)

    async def handshake():
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls is not None else None)
        writer.write(hello)
        frames = codec.FrameReader(max_frame)
        while True:
            data = await reader.read(_RECV)
            if not data:
                writer.close()
                raise ConnectionResetError("the server closed the connection")
            frames.feed(data)
            got = frames.frames()
            for i, (type_, b, start, end) in enumerate(got):
                if type_ == codec.WELCOME:
                    return (reader, writer, frames, codec.decode_welcome(b, start, end),
                            got[i + 1:], address)
                writer.close()
                if type_ == codec.ERROR:
                    e = codec.decode_error(b, start, end)
                    raise errors.from_error(e.seq_or_req, e.code, e.message)
                raise codec.ProtocolError(f"{codec.FRAME_NAMES.get(type_, type_)} before WELCOME")

    try:
        return await asyncio.wait_for(handshake(), timeout)
    except asyncio.TimeoutError:
        raise errors.Timeout(f"no WELCOME from {address} within {timeout}s") from None


async def _open(addresses: list, hello: bytes, timeout: float, max_frame: int, tls,
                attempts: Attempts, first: str = ""):
    """One round over ``addresses`` (``first`` before them), following not_owner
    answers: what _open_one returns for the first that says WELCOME, or None."""
    for address in connect_order(addresses, first):
        target, hop = address, 0
        while target is not None:
            try:
                return await _open_one(target, hello, timeout, max_frame, tls)
            except (errors.ServerError, OSError, errors.Timeout, codec.ProtocolError) as e:
                target, hop = redirect(e, target, hop, attempts), hop + 1
    return None


async def _connect(addresses: list, hello: bytes, timeout: float, max_frame: int, tls):
    """The first connection: one round (see client._connect)."""
    attempts = Attempts()
    opened = await _open(addresses, hello, timeout, max_frame, tls, attempts)
    if opened is None:
        raise attempts.sole() or no_server(addresses, attempts)
    return opened


async def _reopen(addresses, hello, timeout, max_frame, reconnect_timeout, what, tls=None,
                  lost=None, first=""):
    """Connects again, rounds over ``addresses`` with backoff, for up to
    ``reconnect_timeout`` seconds; ``lost``: (address, error) of the lost connection."""
    deadline = time.monotonic() + reconnect_timeout
    delay = 0.02
    attempts = Attempts()
    if lost is not None:
        attempts.failed(*lost)
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
        opened = await _open(addresses, hello, timeout, max_frame, tls, attempts, first)
        if opened is not None:
            return opened
    raise errors.ConnectionLost(
        f"could not reconnect {what} to {','.join(addresses)} within {reconnect_timeout}s: "
        f"{attempts.summary()}")


class AsyncClient:
    """See convergence.Client; create with ``await AsyncClient.connect(...)``. A
    background task reads ACK, CREDIT, replies and errors; writes wait only for
    credit (never more unacknowledged ops than the server's credit) and for the
    socket to drain past 1 MiB of unsent bytes."""

    def __init__(self):
        raise TypeError("use: await AsyncClient.connect(...)")

    @classmethod
    async def connect(cls, address: str | list = "127.0.0.1:3727", *, source=None, token=None,
                      lease_ms: int = 0, timeout: float = 10.0, reconnect: bool = True,
                      reconnect_timeout: float = 30.0, max_frame: int = 64 << 20,
                      tls: ssl.SSLContext | None = None) -> "AsyncClient":
        self = object.__new__(cls)
        self.addresses = parse_addresses(address)
        self.address = ",".join(self.addresses)
        self._tls = tls
        self._hello = _hello(source, token, lease_ms)
        self._token = token
        self._is_writer = bool(source)
        self.timeout = timeout
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self._max_frame = max_frame
        self._state = WriterState({})
        self._fatal = None
        self._waiters: dict = {}
        self._progress = asyncio.Event()
        self._writer = None
        self._task = None
        self._reconnecting = None
        self.reconnects = 0
        opened = await _connect(self.addresses, self._hello, timeout, max_frame, tls)
        self._install(opened)
        return self

    def _install(self, opened) -> None:
        reader, writer, frames, welcome, held, self.server = opened
        self.welcome = welcome
        self.schemas = {s.name: s for s in welcome.schemas}
        self._schemas_by_id = {s.id: s for s in welcome.schemas}
        self._state.schemas = self._schemas_by_id
        resend = self._state.on_welcome(welcome, self._is_writer)
        self._writer = writer
        if resend:
            writer.write(b"".join(resend))
        self._task = asyncio.get_running_loop().create_task(
            self._read_loop(reader, frames, held))

    @property
    def credit(self) -> int:
        return self._state.credit

    @property
    def unacknowledged(self) -> int:
        return len(self._state.unacked)

    async def _read_loop(self, reader, frames, held) -> None:
        state = self._state
        out = Outcome()
        pending = held
        try:
            while True:
                for type_, b, start, end in pending:
                    state.dispatch(type_, b, start, end, out)
                    if out.reply is not None:
                        req, m = out.reply
                        out.reply = None
                        fut = self._waiters.pop(req, None)
                        if fut is not None and not fut.done():
                            fut.set_result(m)
                    if out.request_error is not None:
                        req, err = out.request_error
                        out.request_error = None
                        fut = self._waiters.pop(req, None)
                        if fut is not None and not fut.done():
                            fut.set_exception(err)
                    if out.fatal is not None:
                        raise out.fatal
                self._progress.set()
                if state.refused_from is not None:
                    asyncio.get_running_loop().call_later(0.1, self._resend_refused)
                data = await reader.read(_RECV)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                frames.feed(data)
                pending = frames.frames()
        except asyncio.CancelledError:
            raise
        except (OSError, codec.ProtocolError, errors.ServerError) as e:
            self._lost(e)

    def _resend_refused(self) -> None:
        if self._state.refused_from is not None and self._writer is not None:
            self._writer.write(b"".join(self._state.take_refused()))

    def _fail_waiters(self, exc: BaseException) -> None:
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(exc)
        self._waiters.clear()
        self._progress.set()

    def _lost(self, cause: BaseException) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fatal is not None:
            return
        retry = self.reconnect and not (isinstance(cause, errors.ServerError) and
                                        cause.code not in RETRYABLE)
        if not retry:
            self._fatal = cause if isinstance(cause, errors.ServerError) else errors.ConnectionLost(
                f"connection to {self.address} lost: {cause}")
            self._fail_waiters(self._fatal)
            return
        self._fail_waiters(_Reconnected())
        if self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(cause))

    async def _reconnect(self, cause: BaseException) -> None:
        try:
            opened = await _reopen(self.addresses, self._hello, self.timeout, self._max_frame,
                                   self.reconnect_timeout, "the writer", self._tls,
                                   (self.server, cause),
                                   cause.owner if isinstance(cause, errors.NotOwner) else "")
        except errors.ConvergenceError as e:
            self._fatal = e
            self._fail_waiters(e)
            return
        finally:
            self._reconnecting = None
        self.reconnects += 1
        self._install(opened)
        self._progress.set()

    def _check(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    async def _wait(self, cond, deadline: float) -> None:
        """Waits until ``cond()`` holds, as frames arrive."""
        while not cond():
            self._check()
            self._progress.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.Timeout("no progress within the timeout")
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except asyncio.TimeoutError:
                pass
        self._check()

    # -- writes

    async def _op(self, type_: int, schema, id, values, ts: int) -> int:
        self._check()
        state = self._state
        state.raise_op_error()
        s = schema_of(self.schemas, self._schemas_by_id, schema)
        if type_ == codec.RETRACT:
            record = None
        elif isinstance(s, int):
            raise ValueError(f"the server announced no schema {s}: cannot encode a record for it")
        else:
            record = s.encode_record(values)
        if not state.can_send_op():
            await self._wait(state.can_send_op, time.monotonic() + self.timeout)
        seq = state.take_number()
        frame = codec.encode_write(type_, seq, ts, s if isinstance(s, int) else s.id,
                                   codec.to_bytes(id), record)
        state.sent_op(seq, frame)
        w = self._writer
        # Else the reconnect sends it with the other unacknowledged ops.
        if w is not None and not w.transport.is_closing():
            w.write(frame)
            if w.transport.get_write_buffer_size() > _HIGH_WATER:
                with contextlib.suppress(OSError):
                    await w.drain()
        return seq

    async def assert_(self, schema, id, values: dict, *, ts: int = 0) -> int:
        return await self._op(codec.ASSERT, schema, id, values, ts)

    async def patch(self, schema, id, values: dict, *, ts: int = 0) -> int:
        return await self._op(codec.PATCH, schema, id, values, ts)

    async def retract(self, schema, id, *, ts: int = 0) -> int:
        return await self._op(codec.RETRACT, schema, id, None, ts)

    # -- requests

    async def _request(self, type_: int, build, schema=None, with_claims=False):
        deadline = time.monotonic() + self.timeout
        while True:
            self._check()
            if self._writer is None:
                await self._wait(lambda: self._writer is not None, deadline)
            req = self._state.take_number()
            fut = asyncio.get_running_loop().create_future()
            self._waiters[req] = fut
            self._state.requests[req] = (type_, schema, with_claims)
            self._writer.write(build(req))
            try:
                return await asyncio.wait_for(fut, max(deadline - time.monotonic(), 0))
            except _Reconnected:
                continue
            except asyncio.TimeoutError:
                self._waiters.pop(req, None)
                raise errors.Timeout("no reply within the timeout") from None

    async def sync(self) -> None:
        await self._request(codec.SYNCED, lambda req: codec.encode_single(codec.SYNC, req))
        if self._is_writer:
            await self._wait(lambda: not self._state.unacked, time.monotonic() + self.timeout)
        self._state.raise_op_error()

    async def query(self, schema, id, *, claims: bool = False) -> Entity | None:
        s = schema_of(self.schemas, self._schemas_by_id, schema)
        sid = s if isinstance(s, int) else s.id
        flags = codec.QUERY_INCLUDE_CLAIMS if claims else 0
        idb = codec.to_bytes(id)
        r = await self._request(codec.RESULT, lambda req: codec.encode_query(req, sid, idb, flags),
                                None if isinstance(s, int) else s, claims)
        return Entity(r.record, r.claims) if r.found else None

    async def stats(self) -> dict:
        r = await self._request(codec.STATS_REPLY, lambda req: codec.encode_single(codec.STATS, req))
        return dict(r.stats)

    async def ping(self) -> float:
        t = time.perf_counter()
        await self._request(codec.PONG, lambda req: codec.encode_single(codec.PING, req))
        return time.perf_counter() - t

    async def subscribe(self, schema, *, prefix="", fields=None, bootstrap=True,
                        include_prev=False, interval_ms=0, resume_window=0) -> "AsyncSubscription":
        self._check()
        s = schema_of(self.schemas, self._schemas_by_id, schema)
        return await AsyncSubscription.open(
            self.addresses, s, token=self._token, prefix=prefix, fields=fields, bootstrap=bootstrap,
            include_prev=include_prev, interval_ms=interval_ms, resume_window=resume_window,
            timeout=self.timeout, reconnect=self.reconnect,
            reconnect_timeout=self.reconnect_timeout, max_frame=self._max_frame, tls=self._tls)

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError):
                await self._writer.drain()
        if self._fatal is None:
            self._fatal = errors.ConnectionLost("the client is closed")
        for t in (self._task, self._reconnecting):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._fail_waiters(self._fatal)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class AsyncSubscription:
    """See convergence.Subscription; ``async for event in subscription``."""

    @classmethod
    async def open(cls, address: str | list, schema, *, token=None, prefix="", fields=None,
                   bootstrap=True, include_prev=False, interval_ms=0, resume_window=0,
                   timeout=10.0, reconnect=True, reconnect_timeout=30.0,
                   max_frame=64 << 20, tls=None) -> "AsyncSubscription":
        self = object.__new__(cls)
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
        opened = await _connect(self.addresses, self._hello, timeout, max_frame, tls)
        reader, writer, frames, welcome, held, self.server = opened
        if isinstance(schema, str):
            schema = {s.name: s for s in welcome.schemas}.get(schema, schema)
        if isinstance(schema, int):
            schema = codec.Schema(schema, str(schema), [])
        if not isinstance(schema, codec.Schema):
            writer.close()
            raise ValueError(f"the server has no schema {schema!r}")
        mask = schema.mask_of(fields) if fields else 0
        self._state = SubscriptionState(schema, codec.to_bytes(prefix), mask, bootstrap,
                                        include_prev, interval_ms, resume_window)
        self._use(reader, writer, frames, held, reconnect=False)
        return self

    def _use(self, reader, writer, frames, held, reconnect: bool) -> None:
        self._reader, self._writer, self._frames, self._held = reader, writer, frames, held
        writer.write(self._state.subscribe_frame(reconnect))

    @property
    def window(self) -> int:
        return self._state.window

    def __aiter__(self):
        return self

    async def __anext__(self):
        ev = await self.next()
        if ev is None:
            raise StopAsyncIteration
        return ev

    async def next(self, timeout: float | None = None):
        """The next event; None after close() or when ``timeout`` seconds pass first."""
        events = self._events
        if events:
            return events.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not events:
            if self._closed:
                return None
            if self._held:
                got, self._held = self._held, []
            else:
                try:
                    if deadline is None:
                        data = await self._reader.read(_RECV)
                    else:
                        data = await asyncio.wait_for(self._reader.read(_RECV),
                                                      max(deadline - time.monotonic(), 0))
                except asyncio.TimeoutError:
                    return None
                except OSError as e:
                    await self._lost(e)
                    continue
                if not data:
                    await self._lost(ConnectionResetError("the server closed the connection"))
                    continue
                try:
                    self._frames.feed(data)
                    got = self._frames.frames()
                except codec.ProtocolError as e:
                    await self._lost(e)
                    continue
            try:
                for type_, b, start, end in got:
                    err = self._state.events(type_, b, start, end, events)
                    if err is not None:
                        await self._on_error(err)
                        break
            except codec.ProtocolError as e:
                await self._lost(e)
        return events.popleft()

    async def _on_error(self, err: errors.ServerError) -> None:
        try:
            action = self._state.error_action(err)
        except errors.ServerError:
            await self.close()
            raise
        if action == "reconnect":
            await self._lost(err)
        else:
            self._writer.write(self._state.subscribe_frame(True))

    async def _lost(self, cause: BaseException) -> None:
        self._writer.close()
        if self._closed:
            return
        if not self.reconnect:
            self._closed = True
            if isinstance(cause, errors.ServerError):
                raise cause
            raise errors.ConnectionLost(f"subscription connection lost: {cause}") from cause
        try:
            reader, writer, frames, _, held, self.server = await _reopen(
                self.addresses, self._hello, self.timeout, self._max_frame,
                self.reconnect_timeout, "the subscription", self._tls, (self.server, cause))
        except errors.ConvergenceError:
            self._closed = True
            raise
        self.reconnects += 1
        self._use(reader, writer, frames, held, reconnect=True)

    async def close(self) -> None:
        self._closed = True
        self._writer.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
