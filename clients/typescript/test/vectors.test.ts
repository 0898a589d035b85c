// Conformance: every vector of tests/vectors/frames.json (tests/vectors/README.md)
// decodes to exactly its fields, and every c2s vector encodes from its fields to
// exactly its bytes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { codec, FrameSplitter, Schema, type Field, type Id, type Values } from '../src/index.js';
import { repoRoot } from './server.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

interface Vector {
  name: string;
  type: string;
  code: number;
  direction: 'c2s' | 's2c';
  hex: string;
  context?: { schema_id: number; include_prev?: boolean; include_claims?: boolean };
  fields: Obj;
}

const file = JSON.parse(readFileSync(path.join(repoRoot, 'tests', 'vectors', 'frames.json'), 'utf8')) as {
  protocol_version: number;
  schemas: { id: number; name: string; fields: { name: string; type: Field['type'] }[] }[];
  frames: Vector[];
};

const schemas = new Map<bigint, Schema>(file.schemas.map((s) => [BigInt(s.id), new Schema(BigInt(s.id), s.name, s.fields)]));
const typeNames = ['bool', 'i64', 'f64', 'string', 'bytes'];

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytesOf = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

function f64Bits(v: number): string {
  const b = new DataView(new ArrayBuffer(8));
  b.setFloat64(0, v);
  return hexOf(new Uint8Array(b.buffer));
}

function f64FromBits(h: string): number {
  return new DataView(bytesOf(h).buffer).getFloat64(0);
}

// ------------------------------------------------------- decoded → vector JSON

const idJson = (id: Id): Json => (typeof id === 'string' ? id : { hex: hexOf(id) });

function recordJson(schema: Schema, values: Values): Json {
  let mask = 0n;
  const out: Obj = {};
  schema.fields.forEach((f, i) => {
    const v = values[f.name];
    if (v === undefined) return;
    mask |= 1n << BigInt(i);
    switch (f.type) {
      case 'bool':
        out[f.name] = { bool: v as boolean };
        break;
      case 'i64':
        out[f.name] = { i64: String(v) };
        break;
      case 'f64':
        out[f.name] = { f64: f64Bits(v as number) };
        break;
      case 'string':
        out[f.name] = { string: v as string };
        break;
      case 'bytes':
        out[f.name] = { bytes: hexOf(v as Uint8Array) };
        break;
    }
  });
  assert.equal(Object.keys(values).length, Object.keys(out).length, 'no values beyond the schema');
  return { mask: String(mask), values: out };
}

function frameJson(f: codec.Frame, schema: Schema | undefined): Obj {
  const s = String;
  switch (f.type) {
    case 'HELLO':
      return { version: s(f.version), source_name: idJson(f.sourceName), auth_token: idJson(f.authToken), lease_ms: s(f.leaseMs) };
    case 'WELCOME':
      return {
        version: s(f.version),
        server_name: f.serverName,
        last_applied_seq: s(f.lastAppliedSeq),
        window_us: s(f.windowUs),
        partitions: s(f.partitions),
        credit: s(f.credit),
        schemas: f.schemas.map((sc) => ({
          id: s(sc.id),
          name: sc.name,
          fields: sc.fields.map((fl) => ({ name: fl.name, type: typeNames.indexOf(fl.type) })),
        })),
      };
    case 'ERROR':
      return { seq_or_req: s(f.seqOrReq), code: s(f.code), message: f.message };
    case 'ASSERT':
    case 'PATCH':
      return { seq: s(f.seq), ts: s(f.ts), schema_id: s(f.schemaId), id: idJson(f.id), record: recordJson(schemas.get(f.schemaId)!, f.record) };
    case 'RETRACT':
      return { seq: s(f.seq), ts: s(f.ts), schema_id: s(f.schemaId), id: idJson(f.id) };
    case 'ACK':
      return { seq: s(f.seq) };
    case 'CREDIT':
      return { credit: s(f.credit) };
    case 'QUERY':
      return { req: s(f.req), schema_id: s(f.schemaId), id: idJson(f.id), flags: f.flags };
    case 'RESULT': {
      const out: Obj = { req: s(f.req), found: f.found ? 1 : 0 };
      if (f.record !== undefined) out['record'] = recordJson(schema!, f.record);
      if (f.claims !== undefined) {
        out['claims'] = f.claims.map((c) => ({ source: idJson(c.source), ts_max: s(c.tsMax), record: recordJson(schema!, c.record) }));
      }
      return out;
    }
    case 'SUBSCRIBE':
      return {
        sub: s(f.sub),
        schema_id: s(f.schemaId),
        id_prefix: idJson(f.idPrefix),
        field_mask: s(f.fieldMask),
        flags: f.flags,
        resume_window: s(f.resumeWindow),
        interval_ms: s(f.intervalMs),
      };
    case 'UNSUBSCRIBE':
      return { sub: s(f.req) };
    case 'SNAPSHOT':
      return {
        sub: s(f.sub),
        entries: f.entries.map((e) => ({ kind: e.kind === 'upsert' ? 1 : 2, id: idJson(e.id), record: recordJson(schema!, e.record) })),
      };
    case 'SNAPSHOT_END':
      return { sub: s(f.sub), total: s(f.total), window: s(f.window), reset: f.reset ? 1 : 0 };
    case 'NOTIFY':
      return {
        sub: s(f.sub),
        window: s(f.window),
        changes: f.changes.map((c) => {
          assert.equal(c.window, f.window);
          const out: Obj = {
            kind: c.kind === 'upsert' ? 1 : 2,
            id: idJson(c.id),
            changed_mask: s(c.changedMask),
            ts: s(c.ts),
            record: recordJson(schema!, c.record),
          };
          if (c.prev !== undefined) {
            out['had_prev'] = c.prev === null ? 0 : 1;
            if (c.prev !== null) out['prev'] = recordJson(schema!, c.prev);
          }
          return out;
        }),
      };
    case 'SYNC':
    case 'SYNCED':
    case 'STATS':
    case 'PING':
    case 'PONG':
      return { req: s(f.req) };
    case 'STATS_REPLY':
      return { req: s(f.req), stats: f.stats.map((st) => ({ name: st.name, value: s(st.value) })) };
  }
}

// ------------------------------------------------------- vector JSON → encoded

const big = (j: Json): bigint => BigInt(j as string);
const idOf = (j: Json): Id => (typeof j === 'string' ? j : bytesOf((j as { hex: string }).hex));

function valuesOf(schema: Schema, rec: Json): Values {
  const out: Values = {};
  const values = (rec as Obj)['values'] as Obj;
  for (const [name, typed] of Object.entries(values)) {
    const [type, v] = Object.entries(typed as Obj)[0]!;
    assert.equal(type, schema.fields[schema.fieldIndex(name)]!.type, `type of field ${name}`);
    switch (type) {
      case 'bool':
        out[name] = v as boolean;
        break;
      case 'i64':
        out[name] = BigInt(v as string);
        break;
      case 'f64':
        out[name] = f64FromBits(v as string);
        break;
      case 'string':
        out[name] = v as string;
        break;
      case 'bytes':
        out[name] = bytesOf(v as string);
        break;
    }
  }
  return out;
}

function encode(v: Vector): Uint8Array {
  const f = v.fields;
  const enc = new codec.Encoder();
  switch (v.type) {
    case 'HELLO':
      codec.encodeHello(enc, { version: big(f['version']!), sourceName: idOf(f['source_name']!), authToken: idOf(f['auth_token']!), leaseMs: big(f['lease_ms']!) });
      break;
    case 'ASSERT':
    case 'PATCH': {
      const schema = schemas.get(big(f['schema_id']!))!;
      codec.encodeWrite(enc, v.code, big(f['seq']!), big(f['ts']!), schema, idOf(f['id']!), valuesOf(schema, f['record']!));
      break;
    }
    case 'RETRACT':
      codec.encodeRetract(enc, big(f['seq']!), big(f['ts']!), big(f['schema_id']!), idOf(f['id']!));
      break;
    case 'QUERY':
      codec.encodeQuery(enc, big(f['req']!), big(f['schema_id']!), idOf(f['id']!), f['flags'] as number);
      break;
    case 'SUBSCRIBE':
      codec.encodeSubscribe(enc, {
        sub: big(f['sub']!),
        schemaId: big(f['schema_id']!),
        idPrefix: idOf(f['id_prefix']!),
        fieldMask: big(f['field_mask']!),
        flags: f['flags'] as number,
        resumeWindow: big(f['resume_window']!),
        intervalMs: big(f['interval_ms']!),
      });
      break;
    case 'UNSUBSCRIBE':
      codec.encodeReq(enc, v.code, big(f['sub']!));
      break;
    case 'SYNC':
    case 'STATS':
    case 'PING':
      codec.encodeReq(enc, v.code, big(f['req']!));
      break;
    default:
      throw new Error(`no encoder for c2s frame ${v.type}`);
  }
  return enc.take();
}

// ---------------------------------------------------------------------- tests

test('vectors: the file is protocol version 1 and covers every frame type', () => {
  assert.equal(file.protocol_version, 1);
  const types = new Set(file.frames.map((v) => v.type));
  for (const name of Object.keys(codec.FrameType)) assert.ok(types.has(name), `a vector of ${name}`);
});

for (const v of file.frames) {
  test(`vectors: decode ${v.name}`, () => {
    const bytes = bytesOf(v.hex);
    // Whole, and one byte at a time: the splitter hands out the same frame.
    const frames: { type: number; buf: Uint8Array; start: number; end: number }[] = [];
    const onFrame = (type: number, buf: Uint8Array, start: number, end: number): void => {
      frames.push({ type, buf, start, end });
    };
    new FrameSplitter(1 << 20).push(bytes, onFrame);
    const bytewise = new FrameSplitter(1 << 20);
    for (let i = 0; i < bytes.length; i++) bytewise.push(bytes.subarray(i, i + 1), onFrame);
    assert.equal(frames.length, 2);
    const [whole, pieces] = frames as [(typeof frames)[0], (typeof frames)[0]];
    assert.deepStrictEqual(pieces.buf.subarray(pieces.start, pieces.end), whole.buf.subarray(whole.start, whole.end));
    const chunks = frames;
    assert.equal(chunks[0]!.type, v.code);
    const schema = v.context !== undefined ? schemas.get(BigInt(v.context.schema_id)) : undefined;
    const ctx: codec.DecodeContext = { schemas };
    if (schema !== undefined) ctx.schema = schema;
    if (v.context?.include_prev !== undefined) ctx.includePrev = v.context.include_prev;
    if (v.context?.include_claims !== undefined) ctx.claims = v.context.include_claims;
    const frame = codec.decodeFrame(v.code, pieces.buf, pieces.start, pieces.end, ctx);
    assert.equal(whole.end - whole.start, bytes.length - 5);
    assert.equal(frame.type, v.type);
    assert.deepStrictEqual(frameJson(frame, schema), v.fields);
  });

  if (v.direction === 'c2s') {
    test(`vectors: encode ${v.name}`, () => {
      assert.equal(hexOf(encode(v)), v.hex);
    });
  }
}
