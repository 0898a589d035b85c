"""Encoding and decoding of every protocol v1 frame (docs/protocol.md): pure
functions over bytes, no sockets. The blocking and the asyncio clients both use it.

Encoders return a whole frame (u32 length, u8 type, payload) as bytes. Decoders take
a frame's payload as ``bytes`` plus its start and end offsets (so that a receive
buffer is parsed in place) and raise :class:`ProtocolError` naming the field and
offset when it is malformed.

Values: bool, int (i64), float (f64), str (string, UTF-8) and bytes. Ids, source names
and other protocol strings are bytes on the wire; they decode to ``str`` with the
``surrogateescape`` error handler, so any bytes come back unchanged when encoded
again, and ``bytes`` are accepted wherever a ``str`` is.
"""

from __future__ import annotations

import struct

PROTOCOL_VERSION = 1

# Frame types.
HELLO = 0x01
WELCOME = 0x02
ERROR = 0x03
ASSERT = 0x10
PATCH = 0x11
RETRACT = 0x12
ACK = 0x13
CREDIT = 0x14
QUERY = 0x20
RESULT = 0x21
SUBSCRIBE = 0x30
UNSUBSCRIBE = 0x31
SNAPSHOT = 0x32
SNAPSHOT_END = 0x33
NOTIFY = 0x34
SYNC = 0x40
SYNCED = 0x41
STATS = 0x42
STATS_REPLY = 0x43
PING = 0x44
PONG = 0x45

FRAME_NAMES = {
    HELLO: "HELLO", WELCOME: "WELCOME", ERROR: "ERROR", ASSERT: "ASSERT", PATCH: "PATCH",
    RETRACT: "RETRACT", ACK: "ACK", CREDIT: "CREDIT", QUERY: "QUERY", RESULT: "RESULT",
    SUBSCRIBE: "SUBSCRIBE", UNSUBSCRIBE: "UNSUBSCRIBE", SNAPSHOT: "SNAPSHOT",
    SNAPSHOT_END: "SNAPSHOT_END", NOTIFY: "NOTIFY", SYNC: "SYNC", SYNCED: "SYNCED",
    STATS: "STATS", STATS_REPLY: "STATS_REPLY", PING: "PING", PONG: "PONG",
}

# Field types (WELCOME's u8 codes).
BOOL, I64, F64, STRING, BYTES = 0, 1, 2, 3, 4
TYPE_NAMES = ("bool", "i64", "f64", "string", "bytes")

# SNAPSHOT / NOTIFY kinds, QUERY and SUBSCRIBE flags.
UPSERT = 1
DELETE = 2
QUERY_INCLUDE_CLAIMS = 1
SUBSCRIBE_BOOTSTRAP = 1
SUBSCRIBE_INCLUDE_PREV = 2

MAX_FIELDS = 64
MAX_ID_BYTES = 255
U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1

_pack_header = struct.Struct("<IB").pack
_unpack_u32 = struct.Struct("<I").unpack_from
_pack_f64 = struct.Struct("<d").pack
_unpack_f64 = struct.Struct("<d").unpack_from


class ProtocolError(Exception):
    """A frame or record that does not follow docs/protocol.md."""


# ---------------------------------------------------------------------------
# Primitives

_SMALL = [bytes((i,)) for i in range(128)]


def uvarint(v: int, what: str = "varint") -> bytes:
    """Unsigned LEB128 of ``v`` (0 <= v < 2**64)."""
    if 0 <= v < 0x80:
        return _SMALL[v]
    if 0 < v < 0x4000:
        return bytes(((v & 0x7F) | 0x80, v >> 7))
    if 0 < v < 0x200000:
        return bytes(((v & 0x7F) | 0x80, ((v >> 7) & 0x7F) | 0x80, v >> 14))
    if v < 0 or v > U64_MAX:
        raise ValueError(f"{what} {v} is outside 0..2**64-1")
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zigzag(v: int, what: str = "i64") -> bytes:
    if v < I64_MIN or v > I64_MAX:
        raise ValueError(f"{what} {v} is outside the i64 range")
    return uvarint(((v << 1) ^ (v >> 63)) & U64_MAX)


def to_bytes(s: str | bytes) -> bytes:
    """The wire bytes of an id, name or other protocol string."""
    if type(s) is str:
        return s.encode("utf-8", "surrogateescape")
    if isinstance(s, (bytes, bytearray, memoryview)):
        return bytes(s)
    raise TypeError(f"expected str or bytes, got {type(s).__name__}")


def text(b: bytes) -> str:
    """The inverse of :func:`to_bytes` for bytes read off the wire."""
    return b.decode("utf-8", "surrogateescape")


def pstr(b: bytes) -> bytes:
    """A ``str`` field: varint length, then the bytes."""
    n = len(b)
    return (_SMALL[n] if n < 0x80 else uvarint(n)) + b


def get_varint(b: bytes, p: int) -> tuple[int, int]:
    """Reads a varint at ``p``; returns (value, next offset). IndexError past the end."""
    x = b[p]
    if x < 0x80:
        return x, p + 1
    result = x & 0x7F
    shift = 7
    p += 1
    while True:
        x = b[p]
        p += 1
        if shift == 63 and x > 1:
            raise ProtocolError(f"varint at offset {p - 10} is over 64 bits")
        result |= (x & 0x7F) << shift
        if x < 0x80:
            return result, p
        shift += 7


def _get_str(b: bytes, p: int, end: int, what: str) -> tuple[bytes, int]:
    n, p = get_varint(b, p)
    q = p + n
    if q > end:
        raise ProtocolError(f"{what} at offset {p} runs past the end ({n} bytes)")
    return b[p:q], q


def frame(type_: int, payload: bytes) -> bytes:
    return _pack_header(len(payload) + 1, type_) + payload


# ---------------------------------------------------------------------------
# Schemas and records


class Field:
    __slots__ = ("name", "type", "index")

    def __init__(self, name: str, type_: int, index: int):
        self.name = name
        self.type = type_
        self.index = index

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {TYPE_NAMES[self.type]})"


class Schema:
    """A schema as WELCOME announces it. Encodes records from dicts and decodes them
    to dicts ({field name: value}, present fields only)."""

    def __init__(self, id: int, name: str, fields: list[tuple[str, int]]):
        if len(fields) > MAX_FIELDS:
            raise ProtocolError(f"schema {name!r} has {len(fields)} fields (at most {MAX_FIELDS})")
        self.id = id
        self.name = name
        self.fields = [Field(n, t, i) for i, (n, t) in enumerate(fields)]
        self.by_name = {f.name: f for f in self.fields}
        self.all_mask = (1 << len(fields)) - 1
        self._names = tuple(f.name for f in self.fields)
        self._types = tuple(f.type for f in self.fields)
        self._names_cache: dict[int, tuple[str, ...]] = {}
        self._plans: dict[tuple, tuple] = {}
        self.decode_record = _compile_decoder(self)

    def __repr__(self) -> str:
        return f"Schema({self.id}, {self.name!r}, {self.fields!r})"

    def mask_of(self, names) -> int:
        """The mask with a bit for each field in ``names``."""
        mask = 0
        for n in names:
            f = self.by_name.get(n)
            if f is None:
                raise ValueError(f"schema {self.name!r} has no field {n!r}")
            mask |= 1 << f.index
        return mask

    def names_of(self, mask: int) -> tuple[str, ...]:
        """The field names of the bits set in ``mask``, in field order."""
        names = self._names_cache.get(mask)
        if names is None:
            names = tuple(n for i, n in enumerate(self._names) if mask >> i & 1)
            if len(self._names_cache) < 4096:
                self._names_cache[mask] = names
        return names

    # -- encoding

    def _plan(self, names: tuple) -> tuple:
        """For records with the fields ``names`` (in any order): the encoded mask and
        the fields in field order. Cached per set of names seen (at most 1024)."""
        plan = self._plans.get(names)
        if plan is None:
            fields = []
            mask = 0
            for name in names:
                f = self.by_name.get(name)
                if f is None:
                    raise ValueError(f"schema {self.name!r} has no field {name!r}")
                mask |= 1 << f.index
                fields.append(f)
            fields.sort(key=_index)
            plan = (uvarint(mask), tuple((f.name, f.type) for f in fields))
            if len(self._plans) < 1024:
                self._plans[names] = plan
        return plan

    def encode_record(self, values: dict) -> bytes:
        """mask + values of the present fields, in field order."""
        mask, fields = self._plan(tuple(values))
        parts = [mask]
        append = parts.append
        for name, t in fields:
            v = values[name]
            if t == F64:
                if type(v) is not float:
                    if type(v) is int:
                        v = float(v)
                    else:
                        raise TypeError(f"field {name!r} is f64, got {type(v).__name__}")
                append(_pack_f64(v))
            elif t == I64:
                if type(v) is not int:
                    raise TypeError(f"field {name!r} is i64, got {type(v).__name__}")
                if -64 <= v < 64:
                    append(_SMALL[((v << 1) ^ (v >> 63)) & 0x7F])
                else:
                    append(zigzag(v, f"field {name!r}"))
            elif t == STRING:
                if type(v) is not str:
                    raise TypeError(f"field {name!r} is string, got {type(v).__name__}")
                v = v.encode("utf-8")
                n = len(v)
                append((_SMALL[n] if n < 0x80 else uvarint(n)) + v)
            elif t == BOOL:
                if type(v) is not bool:
                    raise TypeError(f"field {name!r} is bool, got {type(v).__name__}")
                append(b"\x01" if v else b"\x00")
            else:
                if not isinstance(v, (bytes, bytearray, memoryview)):
                    raise TypeError(f"field {name!r} is bytes, got {type(v).__name__}")
                append(pstr(bytes(v)))
        return b"".join(parts)



def _index(f: Field) -> int:
    return f.index


def _compile_decoder(schema: Schema):
    """decode_record(b, p, end) -> ({name: value}, next offset) for ``schema``: one
    test per field, unrolled, with the varint and length fast paths inline, so that
    a record costs no per-field call or type dispatch."""
    n = len(schema.fields)
    lines = [
        "def decode_record(b, p, end):",
        "    mask = b[p]",
        "    if mask < 0x80:",
        "        p += 1",
        "    else:",
        "        mask, p = get_varint(b, p)",
        f"    if mask >> {n}:",
        "        raise ProtocolError(f'record mask {mask:#x} names a field beyond the "
        f"{n} of schema ' + {schema.name!r})",
        "    out = {}",
        "    if not mask:",
        "        return out, p",
    ]
    for f in schema.fields:
        name = repr(f.name)
        at = "f'field ' + " + repr(repr(f.name)) + " + f' at offset {p}: "
        lines.append(f"    if mask & {1 << f.index}:")
        if f.type == BOOL:
            lines += ["        x = b[p]",
                      "        if x > 1:",
                      f"            raise ProtocolError({at}bool {{x}}')",
                      f"        out[{name}] = x == 1",
                      "        p += 1"]
        elif f.type == I64:
            lines += ["        x = b[p]",
                      "        if x < 0x80:",
                      "            p += 1",
                      "        else:",
                      "            x, p = get_varint(b, p)",
                      f"        out[{name}] = (x >> 1) ^ -(x & 1)"]
        elif f.type == F64:
            lines += ["        if p + 8 > end:",
                      f"            raise ProtocolError({at}f64 runs past the end')",
                      f"        out[{name}] = unpack_f64(b, p)[0]",
                      "        p += 8"]
        else:
            lines += ["        x = b[p]",
                      "        if x < 0x80:",
                      "            p += 1",
                      "        else:",
                      "            x, p = get_varint(b, p)",
                      "        q = p + x",
                      "        if q > end:",
                      f"            raise ProtocolError({at}{{x}} bytes run past the end')"]
            if f.type == STRING:
                lines += ["        try:",
                          f"            out[{name}] = b[p:q].decode('utf-8')",
                          "        except UnicodeDecodeError:",
                          f"            raise ProtocolError({at}invalid UTF-8') from None"]
            else:
                lines.append(f"        out[{name}] = b[p:q]")
            lines.append("        p = q")
    lines += ["    if p > end:",
              f"        raise ProtocolError('record of schema ' + {schema.name!r} + ' runs past the end')",
              "    return out, p"]
    namespace = {"get_varint": get_varint, "ProtocolError": ProtocolError,
                 "unpack_f64": _unpack_f64}
    exec("\n".join(lines), namespace)  # noqa: S102 (the code is built from names via repr)
    return namespace["decode_record"]


# ---------------------------------------------------------------------------
# Decoded frames


class Message:
    """Base of the decoded frames: equality and repr over the slots."""

    __slots__ = ()

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self):
        inner = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Hello(Message):
    __slots__ = ("version", "source_name", "auth_token", "lease_ms")

    def __init__(self, source_name=b"", auth_token=b"", lease_ms=0, version=PROTOCOL_VERSION):
        self.version = version
        self.source_name = source_name
        self.auth_token = auth_token
        self.lease_ms = lease_ms


class Welcome(Message):
    __slots__ = ("version", "server_name", "last_applied_seq", "window_us", "partitions",
                 "credit", "schemas")

    def __init__(self, version, server_name, last_applied_seq, window_us, partitions, credit,
                 schemas):
        self.version = version
        self.server_name = server_name
        self.last_applied_seq = last_applied_seq
        self.window_us = window_us
        self.partitions = partitions
        self.credit = credit
        self.schemas = schemas  # list[Schema]


class Error(Message):
    __slots__ = ("seq_or_req", "code", "message")

    def __init__(self, seq_or_req, code, message):
        self.seq_or_req = seq_or_req
        self.code = code
        self.message = message


class WriteOp(Message):
    """ASSERT, PATCH or RETRACT; ``record`` is None for RETRACT."""

    __slots__ = ("type", "seq", "ts", "schema_id", "id", "record")

    def __init__(self, type_, seq, ts, schema_id, id, record):
        self.type = type_
        self.seq = seq
        self.ts = ts
        self.schema_id = schema_id
        self.id = id
        self.record = record


class Single(Message):
    """A frame whose payload is one varint: ACK (seq), CREDIT (credit), UNSUBSCRIBE
    (sub), SYNC, SYNCED, STATS, PING, PONG (req)."""

    __slots__ = ("type", "value")

    def __init__(self, type_, value):
        self.type = type_
        self.value = value


class Query(Message):
    __slots__ = ("req", "schema_id", "id", "flags")

    def __init__(self, req, schema_id, id, flags):
        self.req = req
        self.schema_id = schema_id
        self.id = id
        self.flags = flags


class Claim(Message):
    __slots__ = ("source", "ts_max", "record")

    def __init__(self, source, ts_max, record):
        self.source = source
        self.ts_max = ts_max
        self.record = record


class Result(Message):
    """``record`` is None when not found; ``claims`` is None unless asked for."""

    __slots__ = ("req", "found", "record", "claims")

    def __init__(self, req, found, record, claims):
        self.req = req
        self.found = found
        self.record = record
        self.claims = claims


class Subscribe(Message):
    __slots__ = ("sub", "schema_id", "id_prefix", "field_mask", "flags", "resume_window",
                 "interval_ms")

    def __init__(self, sub, schema_id, id_prefix, field_mask, flags, resume_window, interval_ms):
        self.sub = sub
        self.schema_id = schema_id
        self.id_prefix = id_prefix
        self.field_mask = field_mask
        self.flags = flags
        self.resume_window = resume_window
        self.interval_ms = interval_ms


class SnapshotEntry(Message):
    """One entity of a SNAPSHOT: its current record (upsert) or its deletion."""

    __slots__ = ("kind", "id", "record")

    def __init__(self, kind, id, record):
        self.kind = kind
        self.id = id
        self.record = record

    @property
    def deleted(self) -> bool:
        return self.kind == DELETE


class Change(Message):
    """One change of a NOTIFY: the entity's record at the end of ``window`` (empty on
    a delete), the fields whose presence or value changed, the largest op ts, and
    with include_prev the record at the start of the window (``prev`` is None when
    the entity did not exist then)."""

    __slots__ = ("kind", "id", "changed_mask", "ts", "record", "had_prev", "prev", "window",
                 "schema")

    def __init__(self, kind, id, changed_mask, ts, record, had_prev=False, prev=None, window=0,
                 schema=None):
        self.kind = kind
        self.id = id
        self.changed_mask = changed_mask
        self.ts = ts
        self.record = record
        self.had_prev = had_prev
        self.prev = prev
        self.window = window
        self.schema = schema

    @property
    def deleted(self) -> bool:
        return self.kind == DELETE

    @property
    def changed(self) -> tuple:
        """The names of the changed fields, in field order."""
        return self.schema.names_of(self.changed_mask)

    def __repr__(self):
        return (f"Change({'delete' if self.kind == DELETE else 'upsert'} {self.id!r}, "
                f"changed={self.changed}, ts={self.ts}, record={self.record!r}"
                + (f", prev={self.prev!r}" if self.had_prev else "") + f", window={self.window})")


class Snapshot(Message):
    __slots__ = ("sub", "entries")

    def __init__(self, sub, entries):
        self.sub = sub
        self.entries = entries


class SnapshotEnd(Message):
    __slots__ = ("sub", "total", "window", "reset")

    def __init__(self, sub, total, window, reset):
        self.sub = sub
        self.total = total
        self.window = window
        self.reset = reset


class Notify(Message):
    __slots__ = ("sub", "window", "changes")

    def __init__(self, sub, window, changes):
        self.sub = sub
        self.window = window
        self.changes = changes


class StatsReply(Message):
    __slots__ = ("req", "stats")

    def __init__(self, req, stats):
        self.req = req
        self.stats = stats  # list[(name, value)]


# ---------------------------------------------------------------------------
# Encoders (whole frames)


def encode_hello(source_name=b"", auth_token=b"", lease_ms=0, version=PROTOCOL_VERSION) -> bytes:
    return frame(HELLO, uvarint(version) + pstr(to_bytes(source_name)) +
                 pstr(to_bytes(auth_token)) + uvarint(lease_ms, "lease_ms"))


def encode_welcome(m: Welcome) -> bytes:
    parts = [uvarint(m.version), pstr(to_bytes(m.server_name)), uvarint(m.last_applied_seq),
             uvarint(m.window_us), uvarint(m.partitions), uvarint(m.credit),
             uvarint(len(m.schemas))]
    for s in m.schemas:
        parts += [uvarint(s.id), pstr(to_bytes(s.name)), uvarint(len(s.fields))]
        for f in s.fields:
            parts += [pstr(to_bytes(f.name)), _SMALL[f.type]]
    return frame(WELCOME, b"".join(parts))


def encode_error(seq_or_req: int, code: int, message) -> bytes:
    return frame(ERROR, uvarint(seq_or_req) + uvarint(code) + pstr(to_bytes(message)))


def encode_write(type_: int, seq: int, ts: int, schema_id: int, id_bytes: bytes,
                 record: bytes | None) -> bytes:
    """ASSERT / PATCH (``record``: Schema.encode_record's bytes) or RETRACT (None)."""
    n = len(id_bytes)
    payload = b"".join((uvarint(seq, "seq"), b"\x00" if ts == 0 else uvarint(ts, "ts"),
                        uvarint(schema_id, "schema_id"), _SMALL[n] if n < 0x80 else uvarint(n),
                        id_bytes, record or b""))
    return _pack_header(len(payload) + 1, type_) + payload


def encode_single(type_: int, value: int) -> bytes:
    v = uvarint(value)
    return _pack_header(len(v) + 1, type_) + v


def encode_query(req: int, schema_id: int, id_bytes: bytes, flags: int = 0) -> bytes:
    return frame(QUERY, uvarint(req) + uvarint(schema_id) + pstr(id_bytes) + bytes((flags,)))


def encode_result(m: Result, schema: Schema) -> bytes:
    parts = [uvarint(m.req), b"\x01" if m.found else b"\x00"]
    if m.found:
        parts.append(schema.encode_record(m.record))
        if m.claims is not None:
            parts.append(uvarint(len(m.claims)))
            for c in m.claims:
                parts += [pstr(to_bytes(c.source)), uvarint(c.ts_max), schema.encode_record(c.record)]
    return frame(RESULT, b"".join(parts))


def encode_subscribe(sub: int, schema_id: int, id_prefix: bytes, field_mask: int = 0,
                     flags: int = 0, resume_window: int = 0, interval_ms: int = 0) -> bytes:
    return frame(SUBSCRIBE, b"".join((
        uvarint(sub, "sub"), uvarint(schema_id, "schema_id"), pstr(id_prefix),
        uvarint(field_mask, "field_mask"), bytes((flags,)), uvarint(resume_window, "resume_window"),
        uvarint(interval_ms, "interval_ms"))))


def encode_snapshot(m: Snapshot, schema: Schema) -> bytes:
    parts = [uvarint(m.sub), uvarint(len(m.entries))]
    for e in m.entries:
        parts += [bytes((e.kind,)), pstr(to_bytes(e.id)), schema.encode_record(e.record)]
    return frame(SNAPSHOT, b"".join(parts))


def encode_snapshot_end(m: SnapshotEnd) -> bytes:
    return frame(SNAPSHOT_END, uvarint(m.sub) + uvarint(m.total) + uvarint(m.window) +
                 (b"\x01" if m.reset else b"\x00"))


def encode_notify(m: Notify, schema: Schema, include_prev: bool) -> bytes:
    parts = [uvarint(m.sub), uvarint(m.window), uvarint(len(m.changes))]
    for c in m.changes:
        parts += [bytes((c.kind,)), pstr(to_bytes(c.id)), uvarint(c.changed_mask), uvarint(c.ts),
                  schema.encode_record(c.record)]
        if include_prev:
            parts.append(b"\x01" if c.had_prev else b"\x00")
            if c.had_prev:
                parts.append(schema.encode_record(c.prev))
    return frame(NOTIFY, b"".join(parts))


def encode_stats_reply(m: StatsReply) -> bytes:
    parts = [uvarint(m.req), uvarint(len(m.stats))]
    for name, value in m.stats:
        parts += [pstr(to_bytes(name)), uvarint(value)]
    return frame(STATS_REPLY, b"".join(parts))


# ---------------------------------------------------------------------------
# Decoders (payloads)

SINGLE_VARINT_TYPES = frozenset((ACK, CREDIT, UNSUBSCRIBE, SYNC, SYNCED, STATS, PING, PONG))


def _done(p: int, end: int, name: str) -> None:
    if p != end:
        raise ProtocolError(f"{name}: {end - p} bytes left over at offset {p}"
                            if p < end else f"{name}: runs past the end")


def decode_welcome(b: bytes, p: int, end: int) -> Welcome:
    version, p = get_varint(b, p)
    server_name, p = _get_str(b, p, end, "server_name")
    last_applied, p = get_varint(b, p)
    window_us, p = get_varint(b, p)
    partitions, p = get_varint(b, p)
    credit, p = get_varint(b, p)
    n_schemas, p = get_varint(b, p)
    if n_schemas > (end - p) // 3:
        raise ProtocolError(f"WELCOME: {n_schemas} schemas cannot fit in {end - p} bytes")
    schemas = []
    for _ in range(n_schemas):
        sid, p = get_varint(b, p)
        name, p = _get_str(b, p, end, "schema name")
        n_fields, p = get_varint(b, p)
        if n_fields > MAX_FIELDS:
            raise ProtocolError(f"WELCOME: schema {text(name)!r} has {n_fields} fields")
        fields = []
        for _ in range(n_fields):
            fname, p = _get_str(b, p, end, "field name")
            if p >= end:
                raise ProtocolError("WELCOME: field type runs past the end")
            t = b[p]
            p += 1
            if t > BYTES:
                raise ProtocolError(f"WELCOME: field {text(fname)!r} has type {t}")
            fields.append((text(fname), t))
        schemas.append(Schema(sid, text(name), fields))
    _done(p, end, "WELCOME")
    return Welcome(version, text(server_name), last_applied, window_us, partitions, credit,
                   schemas)


def decode_error(b: bytes, p: int, end: int) -> Error:
    seq_or_req, p = get_varint(b, p)
    code, p = get_varint(b, p)
    message, p = _get_str(b, p, end, "message")
    _done(p, end, "ERROR")
    return Error(seq_or_req, code, text(message))


def decode_hello(b: bytes, p: int, end: int) -> Hello:
    version, p = get_varint(b, p)
    source, p = _get_str(b, p, end, "source_name")
    token, p = _get_str(b, p, end, "auth_token")
    lease, p = get_varint(b, p)
    _done(p, end, "HELLO")
    return Hello(text(source), text(token), lease, version)


def decode_write(type_: int, b: bytes, p: int, end: int, schemas: dict) -> WriteOp:
    seq, p = get_varint(b, p)
    ts, p = get_varint(b, p)
    schema_id, p = get_varint(b, p)
    id_, p = _get_str(b, p, end, "id")
    record = None
    if type_ != RETRACT:
        schema = schemas.get(schema_id)
        if schema is None:
            raise ProtocolError(f"{FRAME_NAMES[type_]}: unknown schema id {schema_id}")
        record, p = schema.decode_record(b, p, end)
    _done(p, end, FRAME_NAMES[type_])
    return WriteOp(type_, seq, ts, schema_id, text(id_), record)


def decode_query(b: bytes, p: int, end: int) -> Query:
    req, p = get_varint(b, p)
    schema_id, p = get_varint(b, p)
    id_, p = _get_str(b, p, end, "id")
    flags = b[p]
    _done(p + 1, end, "QUERY")
    return Query(req, schema_id, text(id_), flags)


def decode_result(b: bytes, p: int, end: int, schema: Schema, with_claims: bool) -> Result:
    req, p = get_varint(b, p)
    found = b[p]
    p += 1
    if found > 1:
        raise ProtocolError(f"RESULT: found byte {found}")
    if not found:
        _done(p, end, "RESULT")
        return Result(req, False, None, None)
    record, p = schema.decode_record(b, p, end)
    claims = None
    if with_claims:
        n, p = get_varint(b, p)
        if n > (end - p) // 3:
            raise ProtocolError(f"RESULT: {n} claims cannot fit in {end - p} bytes")
        claims = []
        for _ in range(n):
            source, p = _get_str(b, p, end, "claim source")
            ts_max, p = get_varint(b, p)
            crec, p = schema.decode_record(b, p, end)
            claims.append(Claim(text(source), ts_max, crec))
    _done(p, end, "RESULT")
    return Result(req, True, record, claims)


def decode_subscribe(b: bytes, p: int, end: int) -> Subscribe:
    sub, p = get_varint(b, p)
    schema_id, p = get_varint(b, p)
    prefix, p = _get_str(b, p, end, "id_prefix")
    field_mask, p = get_varint(b, p)
    flags = b[p]
    resume, p = get_varint(b, p + 1)
    interval, p = get_varint(b, p)
    _done(p, end, "SUBSCRIBE")
    return Subscribe(sub, schema_id, text(prefix), field_mask,
                     flags & (SUBSCRIBE_BOOTSTRAP | SUBSCRIBE_INCLUDE_PREV), resume, interval)


def decode_snapshot_end(b: bytes, p: int, end: int) -> SnapshotEnd:
    sub, p = get_varint(b, p)
    total, p = get_varint(b, p)
    window, p = get_varint(b, p)
    reset = b[p]
    if reset > 1:
        raise ProtocolError(f"SNAPSHOT_END: reset byte {reset}")
    _done(p + 1, end, "SNAPSHOT_END")
    return SnapshotEnd(sub, total, window, reset == 1)


def decode_snapshot(b: bytes, p: int, end: int, schema: Schema) -> Snapshot:
    sub, p = get_varint(b, p)
    n, p = get_varint(b, p)
    if n > (end - p) // 3:
        raise ProtocolError(f"SNAPSHOT: {n} entries cannot fit in {end - p} bytes")
    entries = []
    append = entries.append
    decode_record = schema.decode_record
    for _ in range(n):
        kind = b[p]
        if kind != UPSERT and kind != DELETE:
            raise ProtocolError(f"SNAPSHOT: kind {kind} at offset {p}")
        id_, p = _get_str(b, p + 1, end, "id")
        record, p = decode_record(b, p, end)
        if kind == DELETE and record:
            raise ProtocolError(f"SNAPSHOT: delete of {text(id_)!r} carries fields")
        append(SnapshotEntry(kind, text(id_), record))
    _done(p, end, "SNAPSHOT")
    return Snapshot(sub, entries)


def decode_notify(b: bytes, p: int, end: int, schema: Schema, include_prev: bool) -> Notify:
    sub, p = get_varint(b, p)
    window, p = get_varint(b, p)
    n, p = get_varint(b, p)
    if n > (end - p) // (6 if include_prev else 5):
        raise ProtocolError(f"NOTIFY: {n} changes cannot fit in {end - p} bytes")
    changes = []
    append = changes.append
    decode_record = schema.decode_record
    beyond = ~schema.all_mask
    for _ in range(n):
        kind = b[p]
        if kind != UPSERT and kind != DELETE:
            raise ProtocolError(f"NOTIFY: kind {kind} at offset {p}")
        ln = b[p + 1]
        if ln < 0x80:
            q = p + 2 + ln
            id_ = b[p + 2:q]
            if q > end:
                raise ProtocolError(f"NOTIFY: id at offset {p + 2} runs past the end")
        else:
            id_, q = _get_str(b, p + 1, end, "id")
        changed = b[q]
        if changed < 0x80:
            q += 1
        else:
            changed, q = get_varint(b, q)
        if changed & beyond:
            raise ProtocolError(f"NOTIFY: changed_mask {changed:#x} names a field beyond the schema")
        ts, q = get_varint(b, q)
        record, p = decode_record(b, q, end)
        if kind == DELETE and record:
            raise ProtocolError(f"NOTIFY: delete of {text(id_)!r} carries fields")
        if include_prev:
            had = b[p]
            p += 1
            if had > 1:
                raise ProtocolError(f"NOTIFY: had_prev byte {had} at offset {p - 1}")
            if had:
                prev, p = decode_record(b, p, end)
                append(Change(kind, id_.decode("utf-8", "surrogateescape"), changed, ts, record,
                              True, prev, window, schema))
                continue
        append(Change(kind, id_.decode("utf-8", "surrogateescape"), changed, ts, record, False,
                      None, window, schema))
    _done(p, end, "NOTIFY")
    return Notify(sub, window, changes)


def decode_stats_reply(b: bytes, p: int, end: int) -> StatsReply:
    req, p = get_varint(b, p)
    n, p = get_varint(b, p)
    if n > (end - p) // 2:
        raise ProtocolError(f"STATS_REPLY: {n} stats cannot fit in {end - p} bytes")
    stats = []
    for _ in range(n):
        name, p = _get_str(b, p, end, "stat name")
        value, p = get_varint(b, p)
        stats.append((text(name), value))
    _done(p, end, "STATS_REPLY")
    return StatsReply(req, stats)


def decode_single(type_: int, b: bytes, p: int, end: int) -> Single:
    v, p = get_varint(b, p)
    _done(p, end, FRAME_NAMES[type_])
    return Single(type_, v)


def decode(type_: int, b: bytes, p: int = 0, end: int | None = None, *, schemas=None,
           schema: Schema | None = None, include_prev: bool = False,
           include_claims: bool = False) -> Message:
    """Decodes any frame's payload ``b[p:end]``. ``schemas`` ({id: Schema}) is needed
    for ASSERT and PATCH; ``schema`` (and ``include_prev`` / ``include_claims``) for
    SNAPSHOT, NOTIFY and RESULT."""
    if end is None:
        end = len(b)
    try:
        if type_ in SINGLE_VARINT_TYPES:
            return decode_single(type_, b, p, end)
        if type_ == NOTIFY:
            return decode_notify(b, p, end, _need(schema), include_prev)
        if type_ == SNAPSHOT:
            return decode_snapshot(b, p, end, _need(schema))
        if type_ == SNAPSHOT_END:
            return decode_snapshot_end(b, p, end)
        if type_ == RESULT:
            return decode_result(b, p, end, _need(schema), include_claims)
        if type_ == ERROR:
            return decode_error(b, p, end)
        if type_ == WELCOME:
            return decode_welcome(b, p, end)
        if type_ == STATS_REPLY:
            return decode_stats_reply(b, p, end)
        if type_ in (ASSERT, PATCH, RETRACT):
            return decode_write(type_, b, p, end, schemas or {})
        if type_ == HELLO:
            return decode_hello(b, p, end)
        if type_ == QUERY:
            return decode_query(b, p, end)
        if type_ == SUBSCRIBE:
            return decode_subscribe(b, p, end)
    except IndexError:
        raise ProtocolError(f"{FRAME_NAMES[type_]}: payload of {end - p} bytes ends early") from None
    raise ProtocolError(f"unknown frame type {type_:#04x}")


def _need(schema):
    if schema is None:
        raise ValueError("decoding this frame needs its schema")
    return schema


class FrameReader:
    """Cuts frames out of a byte stream. ``feed`` bytes, then iterate ``frames()`` for
    (type, buffer, start, end) tuples; the payload is ``buffer[start:end]``. A declared
    length of 0 or over ``max_frame`` raises ProtocolError before the frame is
    buffered."""

    def __init__(self, max_frame: int = 64 << 20):
        self.max_frame = max_frame
        self._buf = b""

    def feed(self, data: bytes) -> None:
        self._buf = self._buf + data if self._buf else bytes(data)

    def pending(self) -> int:
        return len(self._buf)

    def frames(self):
        b = self._buf
        p = 0
        n = len(b)
        out = []
        append = out.append
        max_frame = self.max_frame
        while n - p >= 4:
            length = _unpack_u32(b, p)[0]
            if length == 0:
                raise ProtocolError(f"frame of length 0 at stream offset {p}")
            if length > max_frame:
                raise ProtocolError(f"frame length {length} is over the limit {max_frame}")
            if n - p - 4 < length:
                break
            append((b[p + 4], b, p + 5, p + 4 + length))
            p += 4 + length
        self._buf = b[p:] if p else b
        return out
