"""The conformance vectors of tests/vectors/frames.json: every frame decodes to its
fields, and every frame encodes from its fields to exactly its bytes (the c2s ones
are what this client sends; the s2c ones are encoded too, for the test server)."""

import json
import math
import os
import struct
import unittest

from convergence import codec

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
VECTORS = os.path.join(REPO, "tests", "vectors", "frames.json")


def load():
    with open(VECTORS, encoding="utf-8") as f:
        return json.load(f)


def text_json(s):
    """A decoded str (surrogateescape) as the vectors write it."""
    b = codec.to_bytes(s)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def text_from_json(j):
    return bytes.fromhex(j["hex"]) if isinstance(j, dict) else j


def value_json(schema, name, v):
    t = schema.by_name[name].type
    if t == codec.BOOL:
        return {"bool": v}
    if t == codec.I64:
        return {"i64": str(v)}
    if t == codec.F64:
        return {"f64": struct.pack(">d", v).hex()}
    if t == codec.STRING:
        return {"string": v}
    return {"bytes": bytes(v).hex()}


def value_from_json(j):
    (t, v), = j.items()
    if t == "bool":
        return v
    if t == "i64":
        return int(v)
    if t == "f64":
        return struct.unpack(">d", bytes.fromhex(v))[0]
    if t == "string":
        return v
    return bytes.fromhex(v)


def record_json(schema, rec):
    return {"mask": str(schema.mask_of(rec)),
            "values": {n: value_json(schema, n, rec[n]) for n in schema.names_of(schema.mask_of(rec))}}


def record_from_json(j):
    return {n: value_from_json(v) for n, v in j["values"].items()}


def fields_json(m, schemas, ctx):
    """The vector "fields" of a decoded message."""
    s = str
    if isinstance(m, codec.Hello):
        return {"version": s(m.version), "source_name": text_json(m.source_name),
                "auth_token": text_json(m.auth_token), "lease_ms": s(m.lease_ms)}
    if isinstance(m, codec.Welcome):
        return {"version": s(m.version), "server_name": text_json(m.server_name),
                "last_applied_seq": s(m.last_applied_seq), "window_us": s(m.window_us),
                "partitions": s(m.partitions), "credit": s(m.credit),
                "schemas": [{"id": s(sc.id), "name": text_json(sc.name),
                             "fields": [{"name": text_json(f.name), "type": f.type}
                                        for f in sc.fields]} for sc in m.schemas]}
    if isinstance(m, codec.Error):
        return {"seq_or_req": s(m.seq_or_req), "code": s(m.code), "message": text_json(m.message)}
    if isinstance(m, codec.WriteOp):
        out = {"seq": s(m.seq), "ts": s(m.ts), "schema_id": s(m.schema_id), "id": text_json(m.id)}
        if m.record is not None:
            out["record"] = record_json(schemas[m.schema_id], m.record)
        return out
    if isinstance(m, codec.Single):
        key = {codec.ACK: "seq", codec.CREDIT: "credit", codec.UNSUBSCRIBE: "sub"}.get(m.type, "req")
        return {key: s(m.value)}
    if isinstance(m, codec.Query):
        return {"req": s(m.req), "schema_id": s(m.schema_id), "id": text_json(m.id), "flags": m.flags}
    schema = schemas.get(ctx.get("schema_id"))
    if isinstance(m, codec.Result):
        out = {"req": s(m.req), "found": 1 if m.found else 0}
        if m.found:
            out["record"] = record_json(schema, m.record)
            if m.claims is not None:
                out["claims"] = [{"source": text_json(c.source), "ts_max": s(c.ts_max),
                                  "record": record_json(schema, c.record)} for c in m.claims]
        return out
    if isinstance(m, codec.Subscribe):
        return {"sub": s(m.sub), "schema_id": s(m.schema_id), "id_prefix": text_json(m.id_prefix),
                "field_mask": s(m.field_mask), "flags": m.flags,
                "resume_window": s(m.resume_window), "interval_ms": s(m.interval_ms)}
    if isinstance(m, codec.Snapshot):
        return {"sub": s(m.sub), "entries": [
            {"kind": e.kind, "id": text_json(e.id), "record": record_json(schema, e.record)}
            for e in m.entries]}
    if isinstance(m, codec.SnapshotEnd):
        return {"sub": s(m.sub), "total": s(m.total), "window": s(m.window),
                "reset": 1 if m.reset else 0}
    if isinstance(m, codec.Notify):
        changes = []
        for c in m.changes:
            j = {"kind": c.kind, "id": text_json(c.id), "changed_mask": s(c.changed_mask),
                 "ts": s(c.ts), "record": record_json(schema, c.record)}
            if ctx.get("include_prev"):
                j["had_prev"] = 1 if c.had_prev else 0
                if c.had_prev:
                    j["prev"] = record_json(schema, c.prev)
            changes.append(j)
        return {"sub": s(m.sub), "window": s(m.window), "changes": changes}
    if isinstance(m, codec.StatsReply):
        return {"req": s(m.req), "stats": [{"name": text_json(n), "value": s(v)} for n, v in m.stats]}
    raise AssertionError(f"no rendering for {m!r}")


def encode_from_json(v, schemas):
    """A frame's bytes from its vector fields, through the client's encoders."""
    f = v["fields"]
    ctx = v.get("context", {})
    t = v["code"]
    i = int
    if t == codec.HELLO:
        return codec.encode_hello(text_from_json(f["source_name"]), text_from_json(f["auth_token"]),
                                  i(f["lease_ms"]), i(f["version"]))
    if t in (codec.ASSERT, codec.PATCH, codec.RETRACT):
        rec = None
        if "record" in f:
            rec = schemas[i(f["schema_id"])].encode_record(record_from_json(f["record"]))
        return codec.encode_write(t, i(f["seq"]), i(f["ts"]), i(f["schema_id"]),
                                  codec.to_bytes(text_from_json(f["id"])), rec)
    if t in codec.SINGLE_VARINT_TYPES:
        (value,) = f.values()
        return codec.encode_single(t, i(value))
    if t == codec.QUERY:
        return codec.encode_query(i(f["req"]), i(f["schema_id"]),
                                  codec.to_bytes(text_from_json(f["id"])), f["flags"])
    if t == codec.SUBSCRIBE:
        return codec.encode_subscribe(i(f["sub"]), i(f["schema_id"]),
                                      codec.to_bytes(text_from_json(f["id_prefix"])),
                                      i(f["field_mask"]), f["flags"], i(f["resume_window"]),
                                      i(f["interval_ms"]))
    if t == codec.WELCOME:
        return codec.encode_welcome(codec.Welcome(
            i(f["version"]), f["server_name"], i(f["last_applied_seq"]), i(f["window_us"]),
            i(f["partitions"]), i(f["credit"]),
            [codec.Schema(i(sc["id"]), sc["name"], [(fd["name"], fd["type"]) for fd in sc["fields"]])
             for sc in f["schemas"]]))
    if t == codec.ERROR:
        return codec.encode_error(i(f["seq_or_req"]), i(f["code"]), f["message"])
    schema = schemas.get(ctx.get("schema_id"))
    if t == codec.RESULT:
        claims = None
        if "claims" in f:
            claims = [codec.Claim(text_from_json(c["source"]), i(c["ts_max"]),
                                  record_from_json(c["record"])) for c in f["claims"]]
        rec = record_from_json(f["record"]) if "record" in f else None
        return codec.encode_result(codec.Result(i(f["req"]), f["found"] == 1, rec, claims), schema)
    if t == codec.SNAPSHOT:
        return codec.encode_snapshot(codec.Snapshot(i(f["sub"]), [
            codec.SnapshotEntry(e["kind"], text_from_json(e["id"]), record_from_json(e["record"]))
            for e in f["entries"]]), schema)
    if t == codec.SNAPSHOT_END:
        return codec.encode_snapshot_end(codec.SnapshotEnd(i(f["sub"]), i(f["total"]),
                                                           i(f["window"]), f["reset"] == 1))
    if t == codec.NOTIFY:
        return codec.encode_notify(codec.Notify(i(f["sub"]), i(f["window"]), [
            codec.Change(c["kind"], text_from_json(c["id"]), i(c["changed_mask"]), i(c["ts"]),
                        record_from_json(c["record"]), c.get("had_prev") == 1,
                        record_from_json(c["prev"]) if "prev" in c else None)
            for c in f["changes"]]), schema, ctx.get("include_prev", False))
    if t == codec.STATS_REPLY:
        return codec.encode_stats_reply(codec.StatsReply(
            i(f["req"]), [(text_from_json(s["name"]), i(s["value"])) for s in f["stats"]]))
    raise AssertionError(f"no encoder for frame type {t}")


def decode_vector(v, schemas):
    raw = bytes.fromhex(v["hex"])
    reader = codec.FrameReader(max_frame=1 << 32)
    reader.feed(raw)
    frames = reader.frames()
    if len(frames) != 1 or reader.pending():
        raise AssertionError("hex is not exactly one frame")
    t, buf, start, end = frames[0]
    ctx = v.get("context", {})
    return t, codec.decode(t, buf, start, end, schemas=schemas,
                           schema=schemas.get(ctx.get("schema_id")),
                           include_prev=ctx.get("include_prev", False),
                           include_claims=ctx.get("include_claims", False))


class VectorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load()
        cls.schemas = {s["id"]: codec.Schema(s["id"], s["name"], [
            (f["name"], codec.TYPE_NAMES.index(f["type"])) for f in s["fields"]])
            for s in cls.doc["schemas"]}

    def test_every_vector_decodes_to_its_fields(self):
        for v in self.doc["frames"]:
            with self.subTest(v["name"]):
                t, m = decode_vector(v, self.schemas)
                self.assertEqual(t, v["code"])
                self.assertEqual(codec.FRAME_NAMES[t], v["type"])
                self.assertEqual(fields_json(m, self.schemas, v.get("context", {})), v["fields"])

    def test_every_vector_encodes_from_its_fields(self):
        c2s = 0
        for v in self.doc["frames"]:
            with self.subTest(v["name"]):
                self.assertEqual(encode_from_json(v, self.schemas).hex(), v["hex"])
                c2s += v["direction"] == "c2s"
        self.assertGreater(c2s, 20)

    def test_every_frame_type_and_error_code_has_a_vector(self):
        types = {v["code"] for v in self.doc["frames"]}
        self.assertEqual(types, set(codec.FRAME_NAMES))
        codes = {int(v["fields"]["code"]) for v in self.doc["frames"] if v["code"] == codec.ERROR}
        from convergence import errors
        self.assertLessEqual(set(errors.CODES), codes)

    def test_edge_values_decode_exactly(self):
        by_name = {v["name"]: v for v in self.doc["frames"]}
        _, m = decode_vector(by_name["assert: NaN, -0.0 and infinity"], self.schemas)
        self.assertTrue(math.isnan(m.record["x"]))
        self.assertEqual(struct.pack(">d", m.record["y"]).hex(), "8000000000000000")
        self.assertEqual(m.record["z"], math.inf)
        _, m = decode_vector(by_name["assert: i64 min (zigzag extreme)"], self.schemas)
        self.assertEqual(m.record["count"], -(1 << 63))
        _, m = decode_vector(by_name["patch: largest varint seq and ts"], self.schemas)
        self.assertEqual(m.seq, (1 << 64) - 1)
        _, m = decode_vector(by_name["assert: id that is not UTF-8"], self.schemas)
        self.assertEqual(codec.to_bytes(m.id), b"\xff\x00\x80")

    def test_a_vector_with_one_byte_changed_or_cut_is_refused_or_differs(self):
        # Every prefix of a frame whose length field is fixed up is malformed, and
        # reading stops at the declared length rather than running into what follows.
        v = next(v for v in self.doc["frames"]
                 if v["name"] == "notify: include_prev, with and without a previous record")
        raw = bytes.fromhex(v["hex"])
        schema = self.schemas[v["context"]["schema_id"]]
        for cut in range(5, len(raw)):
            payload = raw[5:cut]
            with self.subTest(cut=cut):
                with self.assertRaises(codec.ProtocolError):
                    codec.decode(codec.NOTIFY, payload + b"\x01" * 16, 0, len(payload),
                                 schema=schema, include_prev=True)
        with self.assertRaises(codec.ProtocolError):
            codec.decode(codec.NOTIFY, raw, 5, len(raw), schema=schema, include_prev=False)


if __name__ == "__main__":
    unittest.main()
