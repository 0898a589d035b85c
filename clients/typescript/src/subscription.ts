// A subscription as an async iterator of typed events. The client feeds it what
// the server sends and re-subscribes it after a reconnect; the iterator's buffer is
// bounded by the client, which stops reading the connection while a subscription
// holds more than its high-water mark of unread events.

import { Change, SnapshotEntry } from './frames.js';
import type { Schema } from './schema.js';

/** The snapshot is complete: the state it describes is as of the end of `window`. */
export interface SnapshotEnd {
  readonly type: 'snapshot_end';
  /** Snapshot entries sent since the (re)subscription. */
  readonly total: bigint;
  readonly window: bigint;
  /**
   * true: the snapshot was the whole state (a bootstrap, or a resume the server
   * could not serve): drop every entity you held that was not in the snapshot
   * entries since the last 'resumed' event (or since the start). false: the entries
   * were the changes since the window resumed from.
   */
  readonly reset: boolean;
}

/**
 * The connection was lost and the subscription was sent again, resuming after
 * `window` (0n: from the start, as first asked). Snapshot entries and a
 * snapshot_end follow.
 */
export interface Resumed {
  readonly type: 'resumed';
  readonly window: bigint;
}

export type SubscriptionEvent = SnapshotEntry | SnapshotEnd | Change | Resumed;

/** What a subscription needs from its client. */
export interface SubscriptionOwner {
  /** The subscription was closed by its user. */
  unsubscribe(sub: Subscription): void;
  /** The subscription's buffer went under its low-water mark. */
  drained(): void;
}

export class Subscription implements AsyncIterableIterator<SubscriptionEvent> {
  /** The window of the last NOTIFY or SNAPSHOT_END received (0n: none yet): where a resume starts. */
  window = 0n;
  /** The sub id on the current connection, or null while not subscribed. */
  subId: bigint | null = null;
  /** The subscription was sent on some connection before (so a new one is a resume). */
  sentBefore = false;
  /** A frame of it arrived since its last SUBSCRIBE: an ERROR now ends what was accepted. */
  heard = false;

  private events: SubscriptionEvent[] = [];
  private head = 0;
  private waiter: ((r: IteratorResult<SubscriptionEvent>) => void) | null = null;
  private waiterReject: ((e: unknown) => void) | null = null;
  private error: Error | null = null;
  private done = false;

  constructor(
    private readonly owner: SubscriptionOwner,
    readonly schema: Schema | null,
    readonly schemaId: bigint,
    readonly idPrefix: string | Uint8Array,
    readonly fieldMask: bigint,
    readonly flags: number,
    readonly firstResumeWindow: bigint,
    readonly intervalMs: bigint,
    private readonly highWater: number,
  ) {}

  /** Events received and not yet read. */
  get buffered(): number {
    return this.events.length - this.head;
  }

  /** True once the subscription ended (closed, or failed: the next read throws). */
  get ended(): boolean {
    return this.done || this.error !== null;
  }

  overHighWater(): boolean {
    return this.buffered > this.highWater;
  }

  underLowWater(): boolean {
    return this.buffered <= this.highWater >> 1;
  }

  push(event: SubscriptionEvent): void {
    if (this.ended) return;
    const w = this.waiter;
    if (w !== null && this.buffered === 0) {
      this.waiter = null;
      this.waiterReject = null;
      w({ value: event, done: false });
      return;
    }
    this.events.push(event);
  }

  pushAll(events: readonly SubscriptionEvent[]): void {
    const n = events.length;
    if (n === 0 || this.ended) return;
    let i = 0;
    const w = this.waiter;
    if (w !== null && this.buffered === 0) {
      this.waiter = null;
      this.waiterReject = null;
      w({ value: events[0]!, done: false });
      i = 1;
    }
    const q = this.events;
    for (; i < n; i++) q.push(events[i]!);
  }

  /** Ends the subscription with `error` once the events before it are read. */
  fail(error: Error): void {
    if (this.ended) return;
    this.error = error;
    this.subId = null;
    const r = this.waiterReject;
    if (r !== null && this.buffered === 0) {
      this.waiter = null;
      this.waiterReject = null;
      r(error);
    }
  }

  /** Ends the subscription: the iterator finishes once buffered events are read. */
  finish(): void {
    if (this.ended) return;
    this.done = true;
    this.subId = null;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      this.waiterReject = null;
      w({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<SubscriptionEvent>> {
    if (this.head < this.events.length) {
      const value = this.events[this.head]!;
      this.events[this.head] = undefined as unknown as SubscriptionEvent;
      this.head++;
      const left = this.events.length - this.head;
      if (left === 0) {
        this.events = [];
        this.head = 0;
      } else if (this.head >= 4096 && this.head * 2 >= this.events.length) {
        this.events = this.events.slice(this.head);
        this.head = 0;
      }
      if (left === this.highWater >> 1) this.owner.drained();
      return Promise.resolve({ value, done: false });
    }
    if (this.error !== null) {
      const e = this.error;
      this.done = true;
      this.error = null;
      return Promise.reject(e);
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter !== null) return Promise.reject(new Error('next() called while a previous next() is pending'));
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.waiterReject = reject;
    });
  }

  /** Ends the subscription (UNSUBSCRIBE) and drops what was not read. */
  close(): void {
    if (this.ended) return;
    this.owner.unsubscribe(this);
    this.events = [];
    this.head = 0;
    this.finish();
    this.owner.drained();
  }

  return(): Promise<IteratorResult<SubscriptionEvent>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
