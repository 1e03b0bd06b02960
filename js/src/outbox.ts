/**
 * Optional persistence across reloads (off by default): each page keeps its unsent, already
 * redacted envelopes under its own storage key, so that pages never write each other's keys.
 * A key whose page is gone (reloaded, closed, crashed) is adopted by exactly one other page of
 * the same origin: with the Web Locks API each page holds a lock named after its key for its
 * lifetime, and adopting takes that lock with ``ifAvailable``; without it (insecure contexts), a
 * key is adopted once its heartbeat is older than ``staleMs`` (the collector drops the rare
 * duplicate by event id).  Caps on count and bytes are the queue's; the age cap applies here.
 */
import { randomHex, warn } from "./util";
import type { QueueStore } from "./channel";
import type { Envelope } from "./types";

export interface PersistOptions {
  /** Most events kept per sink (default 1000). */
  maxEvents: number;
  /** Most bytes of JSON kept per sink (default 500,000). */
  maxBytes: number;
  /** Events older than this (ms) are not sent after a reload (default 7 days). */
  maxAge: number;
}

interface Stored {
  t: number;
  items: { s: string; i: string; c: string; j: string; b: number; e: number }[];
}

const HEARTBEAT_MS = 5000;

export class Outbox implements QueueStore {
  readonly key: string;
  private readonly prefix: string;
  private readonly items = new Map<string, { sink: string; envelope: Envelope }>();
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private scanner: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly storage: Storage,
    namespace: string,
    private readonly options: PersistOptions,
    private readonly adopt: (sink: string, envelope: Envelope) => void,
    private readonly locks: LockManager | undefined = typeof navigator !== "undefined" ? navigator.locks : undefined,
    private readonly staleMs = 4 * HEARTBEAT_MS,
  ) {
    this.prefix = `telemetry-sinks:${namespace}:q:`;
    this.key = this.prefix + randomHex(8);
  }

  /** Hold this page's lock, adopt what pages that are gone left behind, and keep doing so. */
  async start(): Promise<void> {
    if (this.locks) {
      await new Promise<void>((granted) => {
        void this.locks!.request(this.key, () => {
          granted();
          return new Promise<void>(() => {}); // held for the page's lifetime
        });
      });
    } else {
      this.heartbeat = setInterval(() => this.items.size && this.write(), HEARTBEAT_MS);
    }
    await this.scan();
    this.scanner = setInterval(() => void this.scan(), HEARTBEAT_MS);
  }

  stop(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.scanner) clearInterval(this.scanner);
  }

  add(sink: string, envelope: Envelope): void {
    this.items.set(envelope.id + "\u0000" + sink, { sink, envelope });
    this.write();
  }

  remove(sink: string, envelopes: readonly Envelope[]): void {
    let changed = false;
    for (const e of envelopes) changed = this.items.delete(e.id + "\u0000" + sink) || changed;
    if (changed) this.write();
  }

  /** Forget every stored envelope that ``match``es, here and in keys left by pages that are gone. */
  async purge(match: (e: Envelope) => boolean): Promise<void> {
    for (const [k, { envelope }] of this.items) if (match(envelope)) this.items.delete(k);
    this.write();
    await this.scan(match);
  }

  /** Adopt the keys of pages that are gone (without the envelopes ``purgeOnly`` matches). */
  async scan(purgeOnly?: (e: Envelope) => boolean): Promise<void> {
    const keys: string[] = [];
    for (let i = 0; i < this.storage.length; i++) {
      const k = this.storage.key(i);
      if (k && k.startsWith(this.prefix) && k !== this.key) keys.push(k);
    }
    for (const k of keys) {
      if (this.locks) {
        await this.locks.request(k, { ifAvailable: true }, async (lock) => {
          if (lock) this.take(k, purgeOnly);
        });
      } else {
        const stored = this.read(k);
        if (!stored || Date.now() - stored.t > this.staleMs) this.take(k, purgeOnly);
      }
    }
  }

  private take(key: string, purgeOnly?: (e: Envelope) => boolean): void {
    const stored = this.read(key);
    this.storage.removeItem(key);
    if (!stored) return;
    const oldest = Date.now() - this.options.maxAge;
    const kept = stored.items.filter((x) => x.e >= oldest);
    if (kept.length < stored.items.length) {
      warn(`${stored.items.length - kept.length} stored event(s) older than ${this.options.maxAge} ms dropped`);
    }
    for (const x of kept) {
      const envelope: Envelope = { id: x.i, schema: x.c, json: x.j, bytes: x.b, time: x.e };
      if (!purgeOnly || !purgeOnly(envelope)) this.adopt(x.s, envelope);
    }
  }

  private read(key: string): Stored | null {
    try {
      const value = JSON.parse(this.storage.getItem(key) || "null");
      return value && Array.isArray(value.items) ? (value as Stored) : null;
    } catch {
      return null;
    }
  }

  private write(): void {
    if (!this.items.size) {
      this.storage.removeItem(this.key);
      return;
    }
    const items = [...this.items.values()].map(({ sink, envelope: e }) => (
      { s: sink, i: e.id, c: e.schema, j: e.json, b: e.bytes, e: e.time }));
    try {
      this.storage.setItem(this.key, JSON.stringify({ t: Date.now(), items } satisfies Stored));
    } catch (error) {
      // Quota full (other data of the site): keep the newest half on disk, all of it in memory.
      warn(`storage is full (${(error as Error).name}); keeping the newer half of the events on disk`);
      try {
        this.storage.setItem(this.key, JSON.stringify({ t: Date.now(), items: items.slice(items.length >> 1) }));
      } catch {
        this.storage.removeItem(this.key);
      }
    }
  }
}
