/**
 * Sinks: where the browser EventLog sends capsules.  A sink is any object with a ``name`` and a
 * ``send(batch, options)`` that resolves with a {@link SendResult} (and never rejects); the
 * EventLog gives each sink its own queue, batching, retries and (optionally) persistence.
 */
import { warn } from "./util";
import type { Envelope } from "./types";

export interface SendOptions {
  /** The page is going away: the request must outlive it (fetch keepalive, else sendBeacon). */
  keepalive: boolean;
}

export type SendResult =
  /** Delivered; ``rejected`` lists the events the receiver refused for good (index in the batch). */
  | { ok: true; rejected?: { index: number; reason: string }[] }
  /** Not delivered: ``retry`` says whether to try again (after ``retryAfterMs`` if given). */
  | { ok: false; retry: boolean; reason: string; retryAfterMs?: number; tooLarge?: boolean };

export interface Sink {
  /** Stable name: it keys the sink's queue in storage. */
  readonly name: string;
  /** Largest request body (bytes) the sink wants; batches are cut under it. */
  readonly maxBatchBytes?: number;
  send(batch: readonly Envelope[], options: SendOptions): Promise<SendResult>;
}

/** Browsers cap the bodies of keepalive requests in flight, together, at 64 KiB. */
export const KEEPALIVE_LIMIT = 65536;

type Fetch = typeof fetch;

function retryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const when = Date.parse(value);
  return Number.isNaN(when) ? undefined : Math.max(0, when - Date.now());
}

async function readJson(response: Response): Promise<any> {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** What an HTTP answer means for a batch (the same rules as the Python HTTP sink). */
export async function classify(response: Response, count: number): Promise<SendResult> {
  const { status } = response;
  const body = await readJson(response);
  const results: any[] | null = body && Array.isArray(body.results) && body.results.length === count
    ? body.results : null;
  if ((status >= 200 && status < 300) || (status === 400 && results)) {
    const rejected = (results || [])
      .map((r, index) => ({ index, r }))
      .filter(({ r }) => r && r.status === "rejected")
      .map(({ index, r }) => ({ index, reason: String(r.error?.message ?? r.error?.reason ?? "rejected") }));
    return { ok: true, rejected };
  }
  const reason = `HTTP ${status}${body && body.error ? `: ${body.error}` : ""}`;
  if (status === 413) return { ok: false, retry: true, tooLarge: true, reason };
  const transient = status === 408 || status === 429 || status >= 500;
  return { ok: false, retry: transient, reason, retryAfterMs: retryAfter(response.headers.get("Retry-After")) };
}

/**
 * POST ``body``; with ``keepalive`` the request outlives the page (fetch keepalive, or sendBeacon
 * to ``beacon`` when fetch refuses, e.g. over the keepalive quota).  A beacon's answer is unknown:
 * it counts as sent.
 */
export async function post(
  fetcher: Fetch, url: string, body: string, type: string, batch: readonly Envelope[],
  keepalive: boolean, credentials: RequestCredentials, beacon: string | null = url,
): Promise<SendResult> {
  // Every request small enough is keepalive: one in flight when the page goes away still arrives.
  const bytes = batch.reduce((n, e) => n + e.bytes + 1, 1);
  let response: Response;
  try {
    response = await fetcher(url, {
      method: "POST", body, credentials, keepalive: bytes < KEEPALIVE_LIMIT, mode: "cors",
      headers: { "Content-Type": type },
    });
  } catch (error) {
    if (keepalive && beacon && typeof navigator !== "undefined" && navigator.sendBeacon
        && navigator.sendBeacon(beacon, new Blob([body], { type }))) {
      return { ok: true };
    }
    return { ok: false, retry: true, reason: `network error: ${(error as Error).message || error}` };
  }
  return classify(response, batch.length);
}

function lines(batch: readonly Envelope[]): string[] {
  return batch.map((e) => e.json);
}

/**
 * The collector's ``POST /api/events`` (capsules with ``__event_id__``; it drops duplicates), or
 * ``endpoints.events`` (with ``endpoints.beacon`` for sendBeacon: null never uses it).
 */
export class CollectorSink implements Sink {
  readonly name = "collector";
  readonly maxBatchBytes = 32768;
  private readonly url: string;
  private readonly beacon: string | null;
  private readonly fetcher: Fetch;

  constructor(collector: string, fetcher: Fetch = fetch.bind(globalThis),
    endpoints: { events?: string; beacon?: string | null } = {}) {
    this.url = new URL(endpoints.events ?? "/api/events", collector).href;
    this.beacon = endpoints.beacon === undefined ? this.url : endpoints.beacon;
    this.fetcher = fetcher;
  }

  send(batch: readonly Envelope[], options: SendOptions): Promise<SendResult> {
    const body = `[${lines(batch).join(",")}]`;
    return post(this.fetcher, this.url, body, "application/json", batch, options.keepalive, "include",
      this.beacon);
  }
}

/** Any URL the operator enabled: a JSON array or NDJSON of capsules, without cookies. */
export class HttpSink implements Sink {
  readonly name: string;
  readonly maxBatchBytes = 32768;
  readonly url: string;
  readonly format: "json" | "ndjson";
  private readonly fetcher: Fetch;

  constructor(url: string, format: "json" | "ndjson" = "json", fetcher: Fetch = fetch.bind(globalThis)) {
    this.url = new URL(url).href;
    this.format = format;
    this.name = `http:${this.url}`;
    this.fetcher = fetcher;
  }

  send(batch: readonly Envelope[], options: SendOptions): Promise<SendResult> {
    const ndjson = this.format === "ndjson";
    const body = ndjson ? lines(batch).join("\n") + "\n" : `[${lines(batch).join(",")}]`;
    const type = ndjson ? "application/x-ndjson" : "application/json";
    return post(this.fetcher, this.url, body, type, batch, options.keepalive, "omit");
  }
}

/** An inspector: every capsule exactly as the other sinks send it, in the browser console. */
export class ConsoleSink implements Sink {
  readonly name = "console";

  async send(batch: readonly Envelope[]): Promise<SendResult> {
    for (const e of batch) console.info("telemetry-sinks event", JSON.parse(e.json));
    return { ok: true };
  }
}

export function describeFailure(sink: Sink, reason: string): void {
  warn(`sink ${sink.name}: ${reason}`);
}
