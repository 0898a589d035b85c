// Primitive encoding and decoding (docs/protocol.md, "Transport and framing" and
// "Records"): little-endian integers, LEB128 varints of up to 64 bits, zigzag, f64,
// length-prefixed bytes, and records typed by a schema. Varints are handled as two
// 32-bit halves so that the common small values never become bigints.

import { BadValueError, ProtocolError } from './errors.js';
import {
  Schema,
  TYPE_BOOL,
  TYPE_BYTES,
  TYPE_F64,
  TYPE_I64,
  TYPE_STRING,
  fieldTypes,
  type Id,
  type Value,
  type Values,
} from './schema.js';

const TWO_32 = 4294967296;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

// BigInts are immutable: the small ones, which most masks and counters are, are made once.
const SMALL: readonly bigint[] = Array.from({ length: 1024 }, (_, i) => BigInt(i));

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Appends encoded values to a growing buffer. */
export class Encoder {
  buf: Uint8Array;
  view: DataView;
  pos = 0;

  constructor(size = 256) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** The bytes written so far (a copy), and starts over. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.pos);
    this.pos = 0;
    return out;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.pos++] = v;
  }

  /** An unsigned varint from its 32-bit halves. */
  varint64(lo: number, hi: number): void {
    this.reserve(10);
    const b = this.buf;
    let p = this.pos;
    while (hi !== 0 || lo > 0x7f) {
      b[p++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi = hi >>> 7;
    }
    b[p++] = lo;
    this.pos = p;
  }

  /** An unsigned varint; `what` names the value in the error for one out of range. */
  varint(v: bigint | number, what: string): void {
    if (typeof v === 'number') {
      if (v >= 0 && v <= 0x7f && Number.isInteger(v)) {
        this.reserve(1);
        this.buf[this.pos++] = v;
        return;
      }
      if (!Number.isSafeInteger(v) || v < 0) {
        throw new RangeError(`${what}: ${v} is not an unsigned 64-bit integer`);
      }
      this.varint64(v >>> 0, Math.floor(v / TWO_32));
      return;
    }
    if (v < 0n || v > U64_MAX) throw new RangeError(`${what}: ${v} is not an unsigned 64-bit integer`);
    if (v <= 0x7fn) {
      this.reserve(1);
      this.buf[this.pos++] = Number(v);
      return;
    }
    this.varint64(Number(v & 0xffffffffn), Number(v >> 32n));
  }

  /** A signed 64-bit integer as zigzag; the caller has checked the range. */
  zigzag(v: bigint | number): void {
    if (typeof v === 'number' && v > -0x10000000000000 && v < 0x10000000000000) {
      const z = v >= 0 ? v * 2 : -v * 2 - 1;
      this.varint64(z % TWO_32, Math.floor(z / TWO_32));
      return;
    }
    const b = BigInt(v);
    const z = BigInt.asUintN(64, (b << 1n) ^ (b >> 63n));
    this.varint64(Number(z & 0xffffffffn), Number(z >> 32n));
  }

  f64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  /** A varint length, then the bytes. */
  bytes(v: Uint8Array): void {
    this.varint(v.length, 'length');
    this.reserve(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  /** A string as a varint byte length, then its UTF-8. */
  str(v: string): void {
    const n = v.length;
    if (n < 128) {
      // Short ASCII strings (ids, names) are written directly.
      this.reserve(n + 1);
      const b = this.buf;
      const start = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = v.charCodeAt(i);
        if (c >= 0x80) break;
        b[start + i] = c;
      }
      if (i === n) {
        b[this.pos] = n;
        this.pos = start + n;
        return;
      }
    }
    this.bytes(utf8.encode(v));
  }

  /** An id or other str field given as a string or as bytes. */
  strOrBytes(v: string | Uint8Array): void {
    if (typeof v === 'string') this.str(v);
    else this.bytes(v);
  }

  /** Starts a frame: room for the u32 length, then the type. Returns the frame's start for endFrame. */
  beginFrame(type: number): number {
    this.reserve(5);
    const start = this.pos;
    this.buf[start + 4] = type;
    this.pos = start + 5;
    return start;
  }

  endFrame(start: number): void {
    this.view.setUint32(start, this.pos - start - 4, true);
  }

  /**
   * A record of `schema` holding the fields of `values` (docs/protocol.md,
   * "Records"). A field the schema lacks, or a value of the wrong type or out of
   * range, is a BadValueError naming the field; nothing is written then.
   */
  record(schema: Schema, values: Values): void {
    let lo = 0;
    let hi = 0;
    for (const name in values) {
      if (values[name] === undefined) continue;
      const i = schema.fieldIndex(name);
      if (i < 0) {
        throw new BadValueError(7, `schema '${schema.name}' has no field '${name}'`);
      }
      if (i < 32) lo |= 1 << i;
      else hi |= 1 << (i - 32);
    }
    lo >>>= 0;
    hi >>>= 0;
    const start = this.pos;
    this.varint64(lo, hi);
    const types = schema.typeCodes;
    const names = schema.fieldNames;
    for (let i = 0; i < types.length; i++) {
      if (i < 32 ? (lo & (1 << i)) === 0 : (hi & (1 << (i - 32))) === 0) continue;
      const name = names[i]!;
      const v = values[name]!;
      const type = types[i]!;
      let ok: boolean;
      switch (type) {
        case TYPE_BOOL:
          ok = typeof v === 'boolean';
          if (ok) this.u8(v ? 1 : 0);
          break;
        case TYPE_I64:
          ok =
            (typeof v === 'number' && Number.isSafeInteger(v)) ||
            (typeof v === 'bigint' && v >= I64_MIN && v <= I64_MAX);
          if (ok) this.zigzag(v as number | bigint);
          break;
        case TYPE_F64:
          ok = typeof v === 'number';
          if (ok) this.f64(v as number);
          break;
        case TYPE_STRING:
          ok = typeof v === 'string';
          if (ok) this.str(v as string);
          break;
        default:
          ok = v instanceof Uint8Array;
          if (ok) this.bytes(v as Uint8Array);
          break;
      }
      if (!ok) {
        this.pos = start;
        throw new BadValueError(
          7,
          `field '${name}' of schema '${schema.name}' is ${fieldTypes[type]}: ${describe(v, type)}`,
        );
      }
    }
  }
}

function describe(v: Value, type: number): string {
  if (type === TYPE_I64 && (typeof v === 'number' || typeof v === 'bigint')) {
    return `${v} is not a 64-bit integer${typeof v === 'number' ? ' (numbers must be safe integers; use a bigint)' : ''}`;
  }
  const kind = v instanceof Uint8Array ? 'Uint8Array' : typeof v;
  return `got a ${kind}`;
}

/** Reads values from a slice of a buffer; every read is checked against the end. */
export class Reader {
  buf: Uint8Array = new Uint8Array(0);
  view: DataView = new DataView(this.buf.buffer);
  pos = 0;
  end = 0;
  /** Where the payload starts, for offsets in errors. */
  start = 0;
  /** The halves of the last varint64(). */
  lo = 0;
  hi = 0;

  /** Reads buf[start, end). */
  reset(buf: Uint8Array, start: number, end: number): this {
    if (buf !== this.buf) {
      this.buf = buf;
      this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    this.pos = start;
    this.start = start;
    this.end = end;
    return this;
  }

  fail(what: string): never {
    throw new ProtocolError(`${what} at offset ${this.pos - this.start}`, this.pos - this.start);
  }

  need(n: number, what: string): void {
    if (this.end - this.pos < n) this.fail(`${what}: ${n} bytes past the end of the payload`);
  }

  u8(what: string): number {
    if (this.pos >= this.end) this.fail(`${what}: past the end of the payload`);
    return this.buf[this.pos++]!;
  }

  /** A varint into this.lo / this.hi. */
  varint64(what: string): void {
    const b = this.buf;
    const end = this.end;
    let p = this.pos;
    let lo = 0;
    let hi = 0;
    let byte: number;
    for (let shift = 0; shift < 28; shift += 7) {
      if (p >= end) this.fail(`${what}: varint runs past the end`);
      byte = b[p++]!;
      lo |= (byte & 0x7f) << shift;
      if (byte < 0x80) {
        this.pos = p;
        this.lo = lo >>> 0;
        this.hi = 0;
        return;
      }
    }
    if (p >= end) this.fail(`${what}: varint runs past the end`);
    byte = b[p++]!;
    lo |= (byte & 0x7f) << 28;
    hi = (byte & 0x7f) >>> 4;
    if (byte >= 0x80) {
      for (let shift = 3; ; shift += 7) {
        if (p >= end) this.fail(`${what}: varint runs past the end`);
        byte = b[p++]!;
        if (shift === 31 && byte > 1) {
          this.pos = p - 1;
          this.fail(`${what}: varint over 64 bits`);
        }
        hi |= (byte & 0x7f) << shift;
        if (byte < 0x80) break;
      }
    }
    this.pos = p;
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }

  /** An unsigned varint as a bigint. */
  varBig(what: string): bigint {
    const b = this.buf;
    const p = this.pos;
    if (p < this.end && b[p]! < 0x80) {
      this.pos = p + 1;
      return SMALL[b[p]!]!;
    }
    this.varint64(what);
    if (this.hi === 0 && this.lo < 1024) return SMALL[this.lo]!;
    if (this.hi < 0x200000) return BigInt(this.hi * TWO_32 + this.lo);
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** An unsigned varint that must be at most `max` (a count or a length). */
  varNum(what: string, max: number): number {
    const p = this.pos;
    const b = this.buf;
    let v: number;
    if (p < this.end && b[p]! < 0x80) {
      this.pos = p + 1;
      v = b[p]!;
    } else {
      this.varint64(what);
      v = this.hi * TWO_32 + this.lo;
      if (this.hi >= 0x200000) v = Infinity;
    }
    if (v > max) {
      this.pos = p;
      this.fail(`${what}: ${v === Infinity ? 'over 2^53' : v} is over ${max}`);
    }
    return v;
  }

  /** A zigzag varint as a bigint. */
  zigzag(what: string): bigint {
    this.varint64(what);
    const lo = this.lo;
    const hi = this.hi;
    if (hi < 0x200000) {
      const z = hi * TWO_32 + lo;
      return BigInt(lo & 1 ? -(z + 1) / 2 : z / 2);
    }
    const z = (BigInt(hi) << 32n) | BigInt(lo);
    return (z >> 1n) ^ -(z & 1n);
  }

  f64(what: string): number {
    this.need(8, what);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** The bounds [pos, pos + len) of a varint-length-prefixed field, advancing past it. */
  span(what: string): number {
    const len = this.varNum(`${what} length`, this.end - this.pos);
    const s = this.pos;
    this.pos += len;
    return s;
  }

  /** A str field's bytes (a copy). */
  bytes(what: string): Uint8Array {
    const s = this.span(what);
    return this.buf.slice(s, this.pos);
  }

  /** A str field as text; invalid UTF-8 is a ProtocolError. */
  str(what: string): string {
    const s = this.span(what);
    const text = asciiOrNull(this.buf, s, this.pos);
    if (text !== null) return text;
    try {
      return utf8Strict.decode(this.buf.subarray(s, this.pos));
    } catch {
      this.pos = s;
      this.fail(`${what}: invalid UTF-8`);
    }
  }

  /** An id: text when its bytes are valid UTF-8, else the bytes. */
  id(what: string): Id {
    const s = this.span(what);
    const text = asciiOrNull(this.buf, s, this.pos);
    if (text !== null) return text;
    try {
      return utf8Strict.decode(this.buf.subarray(s, this.pos));
    } catch {
      return this.buf.slice(s, this.pos);
    }
  }

  /** The payload must be consumed exactly. */
  done(what: string): void {
    if (this.pos !== this.end) this.fail(`${what}: ${this.end - this.pos} bytes left over`);
  }

  /** A record of `schema`; returns its values and leaves its mask in this.lo / this.hi. */
  record(schema: Schema, what: string): Values {
    this.varint64(`${what} mask`);
    const lo = this.lo;
    const hi = this.hi;
    const types = schema.typeCodes;
    const n = types.length;
    if (n < 64 && (n < 32 ? lo >>> n !== 0 || hi !== 0 : hi >>> (n - 32) !== 0)) {
      this.fail(`${what}: mask has a bit beyond the ${n} fields of schema '${schema.name}'`);
    }
    const out: Values = {};
    if (lo === 0 && hi === 0) return out;
    const names = schema.fieldNames;
    for (let i = 0; i < n; i++) {
      if (i < 32 ? (lo & (1 << i)) === 0 : (hi & (1 << (i - 32))) === 0) continue;
      const name = names[i]!;
      switch (types[i]) {
        case TYPE_BOOL: {
          const v = this.u8(name);
          if (v > 1) {
            this.pos--;
            this.fail(`field '${name}': bool byte ${v}`);
          }
          out[name] = v === 1;
          break;
        }
        case TYPE_I64:
          out[name] = this.zigzag(name);
          break;
        case TYPE_F64:
          out[name] = this.f64(name);
          break;
        case TYPE_STRING:
          out[name] = this.str(name);
          break;
        case TYPE_BYTES:
          out[name] = this.bytes(name);
          break;
      }
    }
    this.lo = lo;
    this.hi = hi;
    return out;
  }
}

/** The text of buf[s, e) when it is all ASCII and short, else null. */
function asciiOrNull(buf: Uint8Array, s: number, e: number): string | null {
  if (e - s > 64) return null;
  let out = '';
  for (let i = s; i < e; i++) {
    const c = buf[i]!;
    if (c >= 0x80) return null;
    out += String.fromCharCode(c);
  }
  return out;
}

/** The mask a varint64() left in (lo, hi), as a bigint. */
export function maskBig(lo: number, hi: number): bigint {
  if (hi === 0) return lo < 1024 ? SMALL[lo]! : BigInt(lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

