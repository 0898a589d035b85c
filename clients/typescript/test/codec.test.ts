// The codec's error paths: what it refuses to decode or encode, and how it says so.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { BadValueError, codec, FrameSplitter, ProtocolError, Schema } from '../src/index.js';
import { repoRoot } from './server.js';

const file = JSON.parse(readFileSync(path.join(repoRoot, 'tests', 'vectors', 'frames.json'), 'utf8')) as {
  schemas: { id: number; name: string; fields: { name: string; type: 'bool' | 'i64' | 'f64' | 'string' | 'bytes' }[] }[];
  frames: { name: string; code: number; hex: string; context?: { schema_id: number; include_prev?: boolean; include_claims?: boolean } }[];
};
const schemas = new Map(file.schemas.map((s) => [BigInt(s.id), new Schema(BigInt(s.id), s.name, s.fields)]));
const kitchen = schemas.get(2n)!;

function ctxOf(v: (typeof file.frames)[0]): codec.DecodeContext {
  const ctx: codec.DecodeContext = { schemas };
  if (v.context !== undefined) {
    ctx.schema = schemas.get(BigInt(v.context.schema_id))!;
    ctx.includePrev = v.context.include_prev === true;
    ctx.claims = v.context.include_claims === true;
  }
  return ctx;
}

function decodeHex(type: number, payloadHex: string, ctx: codec.DecodeContext): codec.Frame {
  const b = new Uint8Array(Buffer.from(payloadHex, 'hex'));
  return codec.decodeFrame(type, b, 0, b.length, ctx);
}

test('codec: every vector cut short at any byte, or with a byte left over, is a ProtocolError', () => {
  let cases = 0;
  for (const v of file.frames) {
    const payload = new Uint8Array(Buffer.from(v.hex, 'hex')).subarray(5);
    for (let n = 0; n < payload.length; n++) {
      assert.throws(() => codec.decodeFrame(v.code, payload, 0, n, ctxOf(v)), ProtocolError, `${v.name} cut at ${n}`);
      cases++;
    }
    const longer = new Uint8Array(payload.length + 1);
    longer.set(payload);
    assert.throws(() => codec.decodeFrame(v.code, longer, 0, longer.length, ctxOf(v)), /left over|bool byte|past the end|varint/, `${v.name} + 1 byte`);
  }
  assert.ok(cases > 1000);
});

test('codec: malformed SNAPSHOT, NOTIFY and SNAPSHOT_END bytes name what is wrong and where', () => {
  const notify = { schema: kitchen, includePrev: true };
  // sub 1, n 1, kind 3
  assert.throws(() => decodeHex(0x32, '010103016b00', { schema: kitchen }), /kind 3 is neither 1 \(upsert\) nor 2 \(delete\) at offset 2/);
  // a delete with a field
  assert.throws(() => decodeHex(0x32, '010102016b0101', { schema: kitchen }), /a delete with fields/);
  // a bool byte 2
  assert.throws(() => decodeHex(0x32, '010101016b0102', { schema: kitchen }), /field 'flag': bool byte 2 at offset 6/);
  // a mask bit beyond kitchen's 5 fields
  assert.throws(() => decodeHex(0x32, '010101016b20', { schema: kitchen }), /mask has a bit beyond the 5 fields/);
  // NOTIFY: changed_mask beyond the fields, had_prev 2
  assert.throws(() => decodeHex(0x34, '01050101016b200100', notify), /changed_mask has a bit beyond the 5 fields/);
  assert.throws(() => decodeHex(0x34, '01050101016b01010002', notify), /had_prev byte 2 is neither 0 nor 1/);
  // SNAPSHOT_END reset 2
  assert.throws(() => decodeHex(0x33, '01000102', {}), /reset byte 2 is neither 0 nor 1 at offset 3/);
  // SNAPSHOT and NOTIFY without the subscription's schema
  assert.throws(() => decodeHex(0x34, '010100', {}), /NOTIFY: decoding needs the schema/);
  // RESULT found without a schema; ASSERT of a schema not in the context
  assert.throws(() => decodeHex(0x21, '010100', {}), /RESULT: decoding needs the schema/);
  assert.throws(() => decodeHex(0x10, '0101090178', { schemas }), /ASSERT: decoding needs schema 9/);
});

test('codec: varints over 64 bits, invalid UTF-8, unknown frame and field types are refused', () => {
  assert.throws(() => decodeHex(0x13, 'ffffffffffffffffff02', {}), /seq: varint over 64 bits at offset 9/);
  assert.throws(() => decodeHex(0x13, 'ffffffffffffffffffff01', {}), /varint over 64 bits/);
  assert.throws(() => decodeHex(0x03, '000102ff80', {}), /message: invalid UTF-8 at offset 3/);
  assert.throws(() => decodeHex(0x7f, '00', {}), /unknown frame type 0x7f/);
  // WELCOME: one schema "s" with a field "f" of type 9
  assert.throws(() => decodeHex(0x02, '0100000000000101017301016609', {}), /field 'f' of schema 's': unknown type 9/);
  // a count larger than what is left cannot be allocated for
  assert.throws(() => decodeHex(0x43, '01ffffffff0f', {}), /n: 4294967295 is over/);
});

test('codec: the frame splitter refuses a length of 0 and one over its limit before buffering', () => {
  const s = new FrameSplitter(16);
  assert.throws(() => s.push(new Uint8Array([0, 0, 0, 0]), () => {}), /frame of length 0/);
  const t = new FrameSplitter(16);
  assert.throws(() => t.push(new Uint8Array([17, 0, 0, 0, 1]), () => {}), /frame of 17 bytes is over the limit of 16/);
  // A frame in three pieces, then two frames in one chunk.
  const got: string[] = [];
  const u = new FrameSplitter(16);
  const on = (type: number, b: Uint8Array, st: number, e: number): void => {
    got.push(`${type}:${Buffer.from(b.subarray(st, e)).toString('hex')}`);
  };
  u.push(new Uint8Array([2, 0]), on);
  u.push(new Uint8Array([0, 0, 0x13]), on);
  u.push(new Uint8Array([7, 1, 0, 0, 0, 0x41]), on);
  assert.deepStrictEqual(got, ['19:07', '65:']);
});

test('codec: records refuse unknown fields and values of the wrong type or range, naming the field', () => {
  const enc = new codec.Encoder();
  const write = (values: Record<string, unknown>): void =>
    codec.encodeWrite(enc, codec.FrameType.PATCH, 1n, 0n, kitchen, 'k', values as never);
  assert.throws(() => write({ nope: 1 }), (e: unknown) => e instanceof BadValueError && e.code === 7 && /schema 'kitchen' has no field 'nope'/.test(e.message));
  assert.throws(() => write({ flag: 1 }), /field 'flag' of schema 'kitchen' is bool: got a number/);
  assert.throws(() => write({ count: 1.5 }), /field 'count' of schema 'kitchen' is i64: 1.5 is not a 64-bit integer \(numbers must be safe integers/);
  assert.throws(() => write({ count: 1n << 63n }), /field 'count' of schema 'kitchen' is i64: 9223372036854775808 is not a 64-bit integer/);
  assert.throws(() => write({ ratio: 1n }), /field 'ratio' of schema 'kitchen' is f64: got a bigint/);
  assert.throws(() => write({ label: new Uint8Array(1) }), /field 'label' of schema 'kitchen' is string: got a Uint8Array/);
  assert.throws(() => write({ blob: 'x' }), /field 'blob' of schema 'kitchen' is bytes: got a string/);
  assert.equal(enc.pos, 0, 'nothing written for a refused record');
  assert.throws(() => codec.encodeRetract(enc, 1n << 64n, 0n, 1n, 'k'), /seq: 18446744073709551616 is not an unsigned 64-bit integer/);
  assert.throws(() => codec.encodeRetract(enc, 1n, -1, 1n, 'k'), /ts: -1 is not an unsigned 64-bit integer/);
  assert.equal(enc.pos, 0);
  // i64 given as safe-integer numbers encodes like the same bigints.
  write({ count: -(2 ** 53 - 1) });
  const a = enc.take();
  write({ count: -(2n ** 53n - 1n) });
  assert.deepStrictEqual(enc.take(), a);
});
