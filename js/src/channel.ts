/**
 * One sink's delivery: a bounded queue, batches by count and time, one batch in flight at a time
 * (events arrive in order), retries with exponential backoff and jitter honouring Retry-After,
 * 413 answers split the batch, other refusals drop it with a console warning naming the reason.
 * When the page goes away, everything not in flight leaves at once in keepalive requests.
 */
import { KEEPALIVE_LIMIT, type Sink } from "./sinks";
import { warn } from "./util";
import type { Envelope } from "./types";

export interface DeliveryOptions {
  batchSize: number;
  flushInterval: number;
  maxQueueEvents: number;
  maxQueueBytes: number;
  retryInitialBackoff: number;
  retryMaxBackoff: number;
}

export interface Stats {
  queued: number;
  sent: number;
  rejected: number;
  dropped: number;
  retried: number;
}

/** Where a channel keeps its queue across reloads (see outbox.ts); optional. */
export interface QueueStore {
  add(sink: string, envelope: Envelope): void;
  remove(sink: string, envelopes: readonly Envelope[]): void;
}

interface Waiter {
  pending: Set<Envelope>;
  acked: boolean;
  resolve: (acked: boolean) => void;
}

export class Channel {
  readonly sink: Sink;
  readonly stats: Stats = { queued: 0, sent: 0, rejected: 0, dropped: 0, retried: 0 };
  private queue: Envelope[] = [];
  private bytes = 0;
  private readonly inflight = new Set<Envelope>();
  private pumping = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private notBefore = 0;
  private batchLimit: number;
  /** Whether batches smaller than the batch size may go now (flushInterval passed, flush, retry). */
  private partialOk = false;
  private waiters: Waiter[] = [];

  constructor(sink: Sink, private readonly options: DeliveryOptions, private readonly store?: QueueStore) {
    this.sink = sink;
    this.batchLimit = options.batchSize;
  }

  get size(): number {
    return this.queue.length;
  }

  /** Queue ``envelope`` (dropping the oldest over the caps); persist it when a store is set. */
  push(envelope: Envelope, persist = true): void {
    this.queue.push(envelope);
    this.bytes += envelope.bytes;
    if (persist) this.store?.add(this.sink.name, envelope);
    const { maxQueueEvents, maxQueueBytes } = this.options;
    while (this.queue.length > maxQueueEvents || (this.bytes > maxQueueBytes && this.queue.length > 1)) {
      const oldest = this.queue.find((e) => !this.inflight.has(e));
      if (!oldest) break;
      this.settle([oldest], false);
      this.stats.dropped++;
      warn(`sink ${this.sink.name}: queue full (${maxQueueEvents} events, ${maxQueueBytes} bytes); `
        + "the oldest event was dropped");
    }
    this.stats.queued = this.queue.length;
    if (this.queue.length - this.inflight.size >= this.batchLimit) this.kick(0, false);
    else this.kick(this.options.flushInterval, true);
  }

  /** Remove queued events that ``match`` (consent withdrawn); they are never sent. */
  purge(match: (e: Envelope) => boolean): void {
    const gone = this.queue.filter((e) => match(e) && !this.inflight.has(e));
    if (gone.length) this.settle(gone, false);
  }

  /** Resolves true once every event queued now is answered, false after ``timeout`` ms. */
  flush(timeout: number): Promise<boolean> {
    if (!this.queue.length) return Promise.resolve(true);
    const waiter: Waiter = { pending: new Set(this.queue), acked: true, resolve: () => {} };
    const done = new Promise<boolean>((resolve) => (waiter.resolve = resolve));
    this.waiters.push(waiter);
    this.notBefore = 0; // try now, even during a backoff
    this.kick(0, true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeout)));
    return Promise.race([done, expired]).finally(() => {
      clearTimeout(timer);
      this.waiters = this.waiters.filter((w) => w !== waiter);
    });
  }

  /** The page is going away: send everything not in flight now, in keepalive requests. */
  drain(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    let budget = KEEPALIVE_LIMIT - 1024 - [...this.inflight].reduce((n, e) => n + e.bytes + 1, 1);
    while (budget > 0) {
      const batch = this.take(Math.min(budget, this.maxBytes()), true);
      if (!batch.length) break;
      budget -= batch.reduce((n, e) => n + e.bytes + 1, 1);
      void this.sendBatch(batch, true);
    }
  }

  /** Try again now (the browser is back online). */
  wake(): void {
    this.notBefore = 0;
    this.kick(0, true);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private maxBytes(): number {
    return Math.min(this.sink.maxBatchBytes ?? 32768, KEEPALIVE_LIMIT - 1024);
  }

  private kick(delay: number, partial: boolean): void {
    if (this.pumping) return;
    const wait = Math.max(delay, this.notBefore - Date.now());
    if (this.timer !== null) {
      if (wait > 0) return; // already scheduled
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.partialOk ||= partial;
      void this.pump();
    }, wait);
  }

  /** The next batch: queued events not in flight, within the count and byte limits. */
  private take(maxBytes: number, strict = false): Envelope[] {
    const batch: Envelope[] = [];
    let bytes = 1;
    for (const e of this.queue) {
      if (this.inflight.has(e)) continue;
      if (batch.length >= this.batchLimit || ((batch.length || strict) && bytes + e.bytes + 1 > maxBytes)) break;
      batch.push(e);
      bytes += e.bytes + 1;
    }
    return batch;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        if (Date.now() < this.notBefore) break;
        const batch = this.take(this.maxBytes());
        if (!batch.length || (batch.length < this.batchLimit && !this.partialOk)) break;
        if (!(await this.sendBatch(batch, false))) break;
      }
    } finally {
      this.pumping = false;
    }
    const rest = this.queue.length - this.inflight.size;
    if (rest === 0) this.partialOk = false;
    else this.kick(rest >= this.batchLimit ? 0 : this.options.flushInterval, true);
  }

  /** Send one batch and settle what it answers; false when delivery should pause (a backoff). */
  private async sendBatch(batch: Envelope[], keepalive: boolean): Promise<boolean> {
    for (const e of batch) this.inflight.add(e);
    let result;
    try {
      result = await this.sink.send(batch, { keepalive });
    } catch (error) {
      result = { ok: false as const, retry: true, reason: String(error) };
    }
    for (const e of batch) this.inflight.delete(e);
    if (result.ok) {
      this.attempt = 0;
      this.batchLimit = Math.min(this.options.batchSize, this.batchLimit * 2);
      for (const { index, reason } of result.rejected ?? []) {
        this.stats.rejected++;
        warn(`sink ${this.sink.name} rejected an event of ${batch[index]?.schema}: ${reason}`);
      }
      this.stats.sent += batch.length - (result.rejected?.length ?? 0);
      this.settle(batch, true);
      return true;
    }
    if (result.tooLarge && batch.length > 1) {
      this.batchLimit = Math.max(1, Math.floor(batch.length / 2));
      return true;
    }
    if (!result.retry || result.tooLarge) {
      this.stats.dropped += batch.length;
      warn(`sink ${this.sink.name} refused ${batch.length} event(s), dropped: ${result.reason}`);
      this.settle(batch, true);
      return true;
    }
    this.stats.retried += batch.length;
    this.attempt++;
    const { retryInitialBackoff: initial, retryMaxBackoff: most } = this.options;
    const backoff = Math.min(most, initial * 2 ** (this.attempt - 1)) * (0.5 + Math.random() / 2);
    this.notBefore = Date.now() + Math.max(backoff, result.retryAfterMs ?? 0);
    return false;
  }

  /** Take ``done`` out of the queue (and the store); answered (``acked``) or dropped. */
  private settle(done: readonly Envelope[], acked: boolean): void {
    const gone = new Set(done);
    this.queue = this.queue.filter((e) => !gone.has(e));
    this.bytes = this.queue.reduce((n, e) => n + e.bytes, 0);
    this.stats.queued = this.queue.length;
    this.store?.remove(this.sink.name, done);
    for (const w of this.waiters) {
      for (const e of done) {
        if (w.pending.delete(e) && !acked) w.acked = false;
      }
      if (!w.pending.size) w.resolve(w.acked);
    }
  }
}
