// Every protocol v1 frame (docs/protocol.md, "Frames"): encoders for the frames a
// client sends and decoders for all of them. Decoded frames name their fields as
// docs/protocol.md does, in camelCase. Records decode to Values by field name.

import { ProtocolError } from './errors.js';
import { Schema, fieldTypes, type Field, type Id, type Values } from './schema.js';
import { Encoder, Reader, maskBig } from './wire.js';

export const FrameType = {
  HELLO: 0x01,
  WELCOME: 0x02,
  ERROR: 0x03,
  ASSERT: 0x10,
  PATCH: 0x11,
  RETRACT: 0x12,
  ACK: 0x13,
  CREDIT: 0x14,
  QUERY: 0x20,
  RESULT: 0x21,
  SUBSCRIBE: 0x30,
  UNSUBSCRIBE: 0x31,
  SNAPSHOT: 0x32,
  SNAPSHOT_END: 0x33,
  NOTIFY: 0x34,
  SYNC: 0x40,
  SYNCED: 0x41,
  STATS: 0x42,
  STATS_REPLY: 0x43,
  PING: 0x44,
  PONG: 0x45,
} as const;

export type FrameTypeName = keyof typeof FrameType;

const typeNames = new Map<number, FrameTypeName>(
  Object.entries(FrameType).map(([name, code]) => [code, name as FrameTypeName]),
);

export function frameTypeName(type: number): string {
  return typeNames.get(type) ?? `0x${type.toString(16).padStart(2, '0')}`;
}

export const PROTOCOL_VERSION = 1n;
export const QUERY_INCLUDE_CLAIMS = 1;
export const SUBSCRIBE_BOOTSTRAP = 1;
export const SUBSCRIBE_INCLUDE_PREV = 2;
export const KIND_UPSERT = 1;
export const KIND_DELETE = 2;

export type ChangeKind = 'upsert' | 'delete';

/** One entity of a SNAPSHOT: its state at the snapshot's window (an empty record on delete). */
export class SnapshotEntry {
  readonly type = 'snapshot' as const;
  constructor(
    readonly kind: ChangeKind,
    readonly id: Id,
    readonly record: Values,
  ) {}
}

/** One change of a NOTIFY. */
export class Change {
  readonly type = 'change' as const;
  constructor(
    readonly schema: Schema,
    /** The window the NOTIFY frame carrying this change names. */
    readonly window: bigint,
    readonly kind: ChangeKind,
    readonly id: Id,
    /** The fields whose presence or value changed. */
    readonly changedMask: bigint,
    /** The largest op ts applied to the entity in the window. */
    readonly ts: bigint,
    /** The projected fields at the end of the window (empty on delete). */
    readonly record: Values,
    /** With include_prev: the projected fields at the start of the window, or null when the entity did not exist. Without: undefined. */
    readonly prev: Values | null | undefined,
  ) {}

  /** The names of the changed fields, in field order. */
  get changed(): readonly string[] {
    return this.schema.namesOf(this.changedMask);
  }
}

export interface HelloFrame {
  type: 'HELLO';
  version: bigint;
  sourceName: Id;
  authToken: Id;
  leaseMs: bigint;
}
export interface WelcomeFrame {
  type: 'WELCOME';
  version: bigint;
  serverName: string;
  lastAppliedSeq: bigint;
  windowUs: bigint;
  partitions: bigint;
  credit: bigint;
  schemas: Schema[];
}
export interface ErrorFrame {
  type: 'ERROR';
  seqOrReq: bigint;
  code: bigint;
  message: string;
}
export interface WriteFrame {
  type: 'ASSERT' | 'PATCH';
  seq: bigint;
  ts: bigint;
  schemaId: bigint;
  id: Id;
  record: Values;
}
export interface RetractFrame {
  type: 'RETRACT';
  seq: bigint;
  ts: bigint;
  schemaId: bigint;
  id: Id;
}
export interface AckFrame {
  type: 'ACK';
  seq: bigint;
}
export interface CreditFrame {
  type: 'CREDIT';
  credit: bigint;
}
export interface QueryFrame {
  type: 'QUERY';
  req: bigint;
  schemaId: bigint;
  id: Id;
  flags: number;
}
export interface Claim {
  source: Id;
  tsMax: bigint;
  record: Values;
}
export interface ResultFrame {
  type: 'RESULT';
  req: bigint;
  found: boolean;
  /** When found. */
  record?: Values;
  /** When found and claims were asked for. */
  claims?: Claim[];
}
export interface SubscribeFrame {
  type: 'SUBSCRIBE';
  sub: bigint;
  schemaId: bigint;
  idPrefix: Id;
  fieldMask: bigint;
  flags: number;
  resumeWindow: bigint;
  intervalMs: bigint;
}
export interface SnapshotFrame {
  type: 'SNAPSHOT';
  sub: bigint;
  entries: SnapshotEntry[];
}
export interface SnapshotEndFrame {
  type: 'SNAPSHOT_END';
  sub: bigint;
  total: bigint;
  window: bigint;
  reset: boolean;
}
export interface NotifyFrame {
  type: 'NOTIFY';
  sub: bigint;
  window: bigint;
  changes: Change[];
}
export interface ReqFrame {
  type: 'UNSUBSCRIBE' | 'SYNC' | 'SYNCED' | 'STATS' | 'PING' | 'PONG';
  /** The sub for UNSUBSCRIBE. */
  req: bigint;
}
export interface StatsReplyFrame {
  type: 'STATS_REPLY';
  req: bigint;
  stats: { name: string; value: bigint }[];
}

export type Frame =
  | HelloFrame
  | WelcomeFrame
  | ErrorFrame
  | WriteFrame
  | RetractFrame
  | AckFrame
  | CreditFrame
  | QueryFrame
  | ResultFrame
  | SubscribeFrame
  | SnapshotFrame
  | SnapshotEndFrame
  | NotifyFrame
  | ReqFrame
  | StatsReplyFrame;

/** What decoding needs beyond the frame's bytes (docs/protocol.md: records split only with their schema). */
export interface DecodeContext {
  /** Schemas by id, for ASSERT and PATCH (their schema id is in the frame). */
  schemas?: ReadonlyMap<bigint, Schema>;
  /** The schema of the subscription (SNAPSHOT, NOTIFY) or of the query (RESULT). */
  schema?: Schema;
  /** NOTIFY: the subscription asked for include_prev. */
  includePrev?: boolean;
  /** RESULT: the query asked for claims. */
  claims?: boolean;
}

// ---------------------------------------------------------------- encoders

export interface HelloFields {
  version?: bigint;
  sourceName: Id;
  authToken: Id;
  leaseMs: bigint | number;
}

export function encodeHello(enc: Encoder, m: HelloFields): void {
  const f = enc.beginFrame(FrameType.HELLO);
  enc.varint(m.version ?? PROTOCOL_VERSION, 'version');
  enc.strOrBytes(m.sourceName);
  enc.strOrBytes(m.authToken);
  enc.varint(m.leaseMs, 'lease_ms');
  enc.endFrame(f);
}

/** ASSERT or PATCH. On a bad value nothing is written and BadValueError is thrown. */
export function encodeWrite(
  enc: Encoder,
  type: number,
  seq: bigint,
  ts: bigint | number,
  schema: Schema,
  id: Id,
  record: Values,
): void {
  const f = enc.beginFrame(type);
  try {
    enc.varint(seq, 'seq');
    enc.varint(ts, 'ts');
    enc.varint(schema.id, 'schema_id');
    enc.strOrBytes(id);
    enc.record(schema, record);
  } catch (e) {
    enc.pos = f;
    throw e;
  }
  enc.endFrame(f);
}

export function encodeRetract(enc: Encoder, seq: bigint, ts: bigint | number, schemaId: bigint, id: Id): void {
  const f = enc.beginFrame(FrameType.RETRACT);
  try {
    enc.varint(seq, 'seq');
    enc.varint(ts, 'ts');
    enc.varint(schemaId, 'schema_id');
    enc.strOrBytes(id);
  } catch (e) {
    enc.pos = f;
    throw e;
  }
  enc.endFrame(f);
}

export function encodeQuery(enc: Encoder, req: bigint, schemaId: bigint, id: Id, flags: number): void {
  const f = enc.beginFrame(FrameType.QUERY);
  enc.varint(req, 'req');
  enc.varint(schemaId, 'schema_id');
  enc.strOrBytes(id);
  enc.u8(flags);
  enc.endFrame(f);
}

export interface SubscribeFields {
  sub: bigint;
  schemaId: bigint;
  idPrefix: Id;
  fieldMask: bigint;
  flags: number;
  resumeWindow: bigint;
  intervalMs: bigint | number;
}

export function encodeSubscribe(enc: Encoder, m: SubscribeFields): void {
  const f = enc.beginFrame(FrameType.SUBSCRIBE);
  enc.varint(m.sub, 'sub');
  enc.varint(m.schemaId, 'schema_id');
  enc.strOrBytes(m.idPrefix);
  enc.varint(m.fieldMask, 'field_mask');
  enc.u8(m.flags);
  enc.varint(m.resumeWindow, 'resume_window');
  enc.varint(m.intervalMs, 'interval_ms');
  enc.endFrame(f);
}

/** A frame whose payload is one varint: UNSUBSCRIBE (sub), SYNC, STATS, PING (req). */
export function encodeReq(enc: Encoder, type: number, req: bigint): void {
  const f = enc.beginFrame(type);
  enc.varint(req, 'req');
  enc.endFrame(f);
}

// ---------------------------------------------------------------- decoders

function kindOf(r: Reader, k: number): ChangeKind {
  if (k === KIND_UPSERT) return 'upsert';
  if (k === KIND_DELETE) return 'delete';
  r.pos--;
  return r.fail(`kind ${k} is neither 1 (upsert) nor 2 (delete)`);
}

function flag(r: Reader, what: string): boolean {
  const v = r.u8(what);
  if (v > 1) {
    r.pos--;
    r.fail(`${what} byte ${v} is neither 0 nor 1`);
  }
  return v === 1;
}

function needSchema(ctx: DecodeContext | undefined, type: string): Schema {
  if (ctx?.schema === undefined) throw new ProtocolError(`${type}: decoding needs the schema`);
  return ctx.schema;
}

function entityRecord(r: Reader, schema: Schema, kind: ChangeKind, what: string): Values {
  const record = r.record(schema, what);
  if (kind === 'delete' && (r.lo !== 0 || r.hi !== 0)) r.fail(`${what}: a delete with fields`);
  return record;
}

function decodeSnapshot(r: Reader, schema: Schema): SnapshotFrame {
  const sub = r.varBig('sub');
  // Each entry takes at least 3 bytes: kind, id length, mask.
  const n = r.varNum('n', (r.end - r.pos) / 3);
  const entries = new Array<SnapshotEntry>(n);
  for (let i = 0; i < n; i++) {
    const kind = kindOf(r, r.u8('kind'));
    const id = r.id('id');
    entries[i] = new SnapshotEntry(kind, id, entityRecord(r, schema, kind, 'record'));
  }
  return { type: 'SNAPSHOT', sub, entries };
}

function decodeNotify(r: Reader, schema: Schema, includePrev: boolean): NotifyFrame {
  const sub = r.varBig('sub');
  const window = r.varBig('window');
  // Each change takes at least 5 bytes: kind, id length, changed_mask, ts, mask.
  const n = r.varNum('n', (r.end - r.pos) / 5);
  const changes = new Array<Change>(n);
  const fields = schema.fields.length;
  for (let i = 0; i < n; i++) {
    const kind = kindOf(r, r.u8('kind'));
    const id = r.id('id');
    r.varint64('changed_mask');
    const lo = r.lo;
    const hi = r.hi;
    if (fields < 64 && (fields < 32 ? lo >>> fields !== 0 || hi !== 0 : hi >>> (fields - 32) !== 0)) {
      r.fail(`changed_mask has a bit beyond the ${fields} fields of schema '${schema.name}'`);
    }
    const changedMask = maskBig(lo, hi);
    const ts = r.varBig('ts');
    const record = entityRecord(r, schema, kind, 'record');
    let prev: Values | null | undefined;
    if (includePrev) prev = flag(r, 'had_prev') ? r.record(schema, 'prev') : null;
    changes[i] = new Change(schema, window, kind, id, changedMask, ts, record, prev);
  }
  return { type: 'NOTIFY', sub, window, changes };
}

function decodeResult(r: Reader, ctx: DecodeContext | undefined): ResultFrame {
  const req = r.varBig('req');
  const found = flag(r, 'found');
  if (!found) return { type: 'RESULT', req, found };
  const schema = needSchema(ctx, 'RESULT');
  const record = r.record(schema, 'record');
  if (!ctx?.claims) return { type: 'RESULT', req, found, record };
  // Each claim takes at least 3 bytes: source length, ts_max, mask.
  const n = r.varNum('n_claims', (r.end - r.pos) / 3);
  const claims: Claim[] = [];
  for (let i = 0; i < n; i++) {
    const source = r.id('source');
    const tsMax = r.varBig('ts_max');
    claims.push({ source, tsMax, record: r.record(schema, 'claim record') });
  }
  return { type: 'RESULT', req, found, record, claims };
}

function decodeWelcome(r: Reader): WelcomeFrame {
  const version = r.varBig('version');
  const serverName = r.str('server_name');
  const lastAppliedSeq = r.varBig('last_applied_seq');
  const windowUs = r.varBig('window_us');
  const partitions = r.varBig('partitions');
  const credit = r.varBig('credit');
  const n = r.varNum('n_schemas', r.end - r.pos);
  const schemas: Schema[] = [];
  for (let i = 0; i < n; i++) {
    const id = r.varBig('schema id');
    const name = r.str('schema name');
    const nFields = r.varNum('n_fields', 64);
    const fields: Field[] = [];
    for (let j = 0; j < nFields; j++) {
      const fieldName = r.str('field name');
      const t = r.u8('field type');
      const type = fieldTypes[t];
      if (type === undefined) {
        r.pos--;
        r.fail(`field '${fieldName}' of schema '${name}': unknown type ${t}`);
      }
      fields.push({ name: fieldName, type });
    }
    schemas.push(new Schema(id, name, fields));
  }
  return { type: 'WELCOME', version, serverName, lastAppliedSeq, windowUs, partitions, credit, schemas };
}

function decodeWriteOp(r: Reader, type: 'ASSERT' | 'PATCH' | 'RETRACT', ctx: DecodeContext | undefined): Frame {
  const seq = r.varBig('seq');
  const ts = r.varBig('ts');
  const schemaId = r.varBig('schema_id');
  const id = r.id('id');
  if (type === 'RETRACT') return { type, seq, ts, schemaId, id };
  const schema = ctx?.schemas?.get(schemaId);
  if (schema === undefined) throw new ProtocolError(`${type}: decoding needs schema ${schemaId}`);
  return { type, seq, ts, schemaId, id, record: r.record(schema, 'record') };
}

/**
 * Decodes the payload buf[start, end) of a frame of `type`. A payload that does not
 * parse, or leaves bytes over, is a ProtocolError with the offset within the payload.
 */
export function decodeFrame(
  type: number,
  buf: Uint8Array,
  start: number,
  end: number,
  ctx?: DecodeContext,
  reader: Reader = new Reader(),
): Frame {
  const r = reader.reset(buf, start, end);
  let frame: Frame;
  switch (type) {
    case FrameType.HELLO:
      frame = {
        type: 'HELLO',
        version: r.varBig('version'),
        sourceName: r.id('source_name'),
        authToken: r.id('auth_token'),
        leaseMs: r.varBig('lease_ms'),
      };
      break;
    case FrameType.WELCOME:
      frame = decodeWelcome(r);
      break;
    case FrameType.ERROR:
      frame = { type: 'ERROR', seqOrReq: r.varBig('seq_or_req'), code: r.varBig('code'), message: r.str('message') };
      break;
    case FrameType.ASSERT:
      frame = decodeWriteOp(r, 'ASSERT', ctx);
      break;
    case FrameType.PATCH:
      frame = decodeWriteOp(r, 'PATCH', ctx);
      break;
    case FrameType.RETRACT:
      frame = decodeWriteOp(r, 'RETRACT', ctx);
      break;
    case FrameType.ACK:
      frame = { type: 'ACK', seq: r.varBig('seq') };
      break;
    case FrameType.CREDIT:
      frame = { type: 'CREDIT', credit: r.varBig('credit') };
      break;
    case FrameType.QUERY:
      frame = {
        type: 'QUERY',
        req: r.varBig('req'),
        schemaId: r.varBig('schema_id'),
        id: r.id('id'),
        flags: r.u8('flags'),
      };
      break;
    case FrameType.RESULT:
      frame = decodeResult(r, ctx);
      break;
    case FrameType.SUBSCRIBE:
      frame = {
        type: 'SUBSCRIBE',
        sub: r.varBig('sub'),
        schemaId: r.varBig('schema_id'),
        idPrefix: r.id('id_prefix'),
        fieldMask: r.varBig('field_mask'),
        flags: r.u8('flags'),
        resumeWindow: r.varBig('resume_window'),
        intervalMs: r.varBig('interval_ms'),
      };
      break;
    case FrameType.SNAPSHOT:
      frame = decodeSnapshot(r, needSchema(ctx, 'SNAPSHOT'));
      break;
    case FrameType.SNAPSHOT_END:
      frame = {
        type: 'SNAPSHOT_END',
        sub: r.varBig('sub'),
        total: r.varBig('total'),
        window: r.varBig('window'),
        reset: flag(r, 'reset'),
      };
      break;
    case FrameType.NOTIFY:
      frame = decodeNotify(r, needSchema(ctx, 'NOTIFY'), ctx?.includePrev === true);
      break;
    case FrameType.UNSUBSCRIBE:
    case FrameType.SYNC:
    case FrameType.SYNCED:
    case FrameType.STATS:
    case FrameType.PING:
    case FrameType.PONG:
      frame = { type: typeNames.get(type) as ReqFrame['type'], req: r.varBig(type === FrameType.UNSUBSCRIBE ? 'sub' : 'req') };
      break;
    case FrameType.STATS_REPLY: {
      const req = r.varBig('req');
      const n = r.varNum('n', (r.end - r.pos) / 2);
      const stats: { name: string; value: bigint }[] = [];
      for (let i = 0; i < n; i++) stats.push({ name: r.str('stat name'), value: r.varBig('stat value') });
      frame = { type: 'STATS_REPLY', req, stats };
      break;
    }
    default:
      throw new ProtocolError(`unknown frame type ${frameTypeName(type)}`);
  }
  r.done(frameTypeName(type));
  return frame;
}
