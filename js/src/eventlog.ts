/**
 * The browser EventLog: the Python EventLog's pipeline in a page.  ``connect()`` loads the
 * collector's policy (nothing is emitted before, and page code cannot widen it); ``emit()``
 * validates against the schema, applies consent and the policy (default deny, personal data
 * removed by category before any sink sees the event), wraps the event in a capsule and queues
 * it for every sink, each with its own delivery channel.  When the collector publishes its
 * compiled plan (``redaction``), that plan rules: what it drops is dropped everywhere, and what it
 * pseudonymizes or generalizes is sent only to the collector, which does it before its sinks.
 */
import { Channel, type DeliveryOptions, type Stats } from "./channel";
import { Consent, recording } from "./consent";
import { EventValidationError, UnknownSchemaError } from "./errors";
import type { NoticeOptions } from "./notice";
import { Outbox, type PersistOptions } from "./outbox";
import {
  applyPlan, categoryTree, compilePlan, personalTexts, planFromDescription, roundTimestamp, type CategoryTree,
  type Plan,
} from "./redact";
import { CollectorSink, ConsoleSink, HttpSink, type Sink } from "./sinks";
import { fnv1a, formatTimestamp, isObject, jsonPath, normalizeCategory, randomHex, utf8Length, warn } from "./util";
import { compile, type Check } from "./validate";
import type { Capsule, Envelope, Policy, PolicySchema } from "./types";

export const METADATA_VERSION = 1;

/** Where the collector's API is, when it is not at the root of ``collector`` (e.g. inside another server). */
export interface Endpoints {
  /** ``GET`` the policy (default ``/api/policy``). */
  policy: string;
  /** ``POST`` events (default ``/api/events``). */
  events: string;
  /** ``POST`` the consent choice (default ``/api/consent``). */
  consent: string;
  /** Where ``sendBeacon`` posts events when fetch refuses (default: ``events``); null: never. */
  beacon: string | null;
}

export interface ConnectOptions extends Partial<DeliveryOptions> {
  /** The collector's URL (default: where this module was loaded from). */
  collector?: string;
  /** Its endpoints: absolute URLs, or paths resolved against ``collector``. */
  endpoints?: Partial<Endpoints>;
  /** More sinks, besides those the operator enabled (they receive the same redacted capsules). */
  sinks?: Sink[];
  /** Keep unsent events across reloads in localStorage (off by default). */
  persist?: boolean | Partial<PersistOptions>;
  /** Show the first-run notice (see ``consent.showNotice``). */
  notice?: boolean | NoticeOptions;
  /** Deepest nesting of objects and arrays an event may have (default 64, as in Python). */
  maxEventDepth?: number;
  /** Storage for persistence and the consent mirror (default: localStorage). */
  storage?: Storage | null;
  /** ``fetch`` to use (default: the global one). */
  fetch?: typeof fetch;
}

export interface EmitRequest {
  schema_id: string;
  /** Default: the newest version the policy allows. */
  version?: number;
  data: Record<string, unknown>;
  /** Default: now. */
  timestamp?: Date | string;
}

interface Compiled {
  spec: PolicySchema;
  check: Check;
  tree: CategoryTree;
  /** For the collector, and for every other sink (the same unless the collector's plan transforms). */
  plan: Plan | null;
  other: Plan | null;
}

const DELIVERY: DeliveryOptions = {
  batchSize: 10,
  flushInterval: 1000,
  maxQueueEvents: 1000,
  maxQueueBytes: 1_000_000,
  retryInitialBackoff: 1000,
  retryMaxBackoff: 30_000,
};
const PERSIST: PersistOptions = { maxEvents: 1000, maxBytes: 500_000, maxAge: 7 * 86_400_000 };

function defaultCollector(): string {
  try {
    return new URL(import.meta.url).origin;
  } catch {
    return typeof location !== "undefined" ? location.origin : "";
  }
}

function endpoints(collector: string, given: Partial<Endpoints> = {}): Endpoints {
  const at = (path: string): string => new URL(path, collector).href;
  const events = at(given.events ?? "/api/events");
  return {
    policy: at(given.policy ?? "/api/policy"),
    events,
    consent: at(given.consent ?? "/api/consent"),
    beacon: given.beacon === null ? null : given.beacon === undefined ? events : at(given.beacon),
  };
}

function defaultStorage(): Storage | null {
  try {
    return typeof localStorage !== "undefined" ? localStorage : null;
  } catch {
    return null; // blocked (e.g. third-party storage disabled)
  }
}

/** How deeply ``value`` nests objects and arrays (JSON data: no cycles). */
function depth(value: unknown, limit: number, level = 0): number {
  if (level > limit || typeof value !== "object" || value === null) return level;
  let most = level + 1;
  for (const v of Array.isArray(value) ? value : Object.values(value)) {
    most = Math.max(most, depth(v, limit, level + 1));
    if (most > limit) break;
  }
  return most;
}

export class EventLog {
  readonly policy: Policy;
  readonly collector: string;
  readonly consent: Consent;
  private readonly schemas = new Map<string, Map<number, Compiled>>();
  private readonly channels: Channel[] = [];
  private readonly outbox: Outbox | null;
  private readonly producer = randomHex(6);
  private readonly session: string;
  private readonly maxDepth: number;
  private readonly storage: Storage | null;
  private readonly namespace: string;
  private sequence = 0;
  private emitted = 0;
  private readonly onHide: () => void;
  private readonly onHidden: () => void;
  private readonly onOnline: () => void;

  /** Load the collector's policy (and schemas), then build the sinks it enables. */
  static async connect(options: ConnectOptions = {}): Promise<EventLog> {
    const collector = options.collector ?? defaultCollector();
    const fetcher = options.fetch ?? fetch.bind(globalThis);
    const url = endpoints(collector, options.endpoints).policy;
    let response: Response;
    try {
      response = await fetcher(url, { credentials: "include", mode: "cors", cache: "no-store" });
    } catch (error) {
      throw new Error(`telemetry-sinks: cannot load the policy from ${url} (${(error as Error).message}); `
        + "is the collector running, and is this page's origin in c.Collector.cors_allowed_origins?");
    }
    if (!response.ok) throw new Error(`telemetry-sinks: ${url} answered HTTP ${response.status}`);
    const policy = (await response.json()) as Policy;
    const log = new EventLog(policy, collector, fetcher, options);
    await log.outbox?.start();
    if (options.notice) log.consent.showNotice(options.notice === true ? {} : options.notice);
    return log;
  }

  private constructor(policy: Policy, collector: string, fetcher: typeof fetch, options: ConnectOptions) {
    this.policy = policy;
    this.collector = collector;
    this.maxDepth = options.maxEventDepth ?? 64;
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    const urls = endpoints(collector, options.endpoints);
    // One namespace per collector; an API below the origin's root (one server per user) has its own.
    this.namespace = fnv1a(new URL(collector).origin + (options.endpoints?.policy ? ` ${urls.policy}` : ""))
      .toString(36);
    this.session = this.sessionId();
    for (const spec of policy.schemas) {
      const tree = categoryTree(spec.schema);
      const described = spec.redaction?.properties;
      const plan = described ? planFromDescription(described, true)
        : compilePlan(tree, new Set(spec.allowed_categories.map(normalizeCategory)), new Set(spec.allowed_properties));
      const other = described ? planFromDescription(described, false) : plan;
      let versions = this.schemas.get(spec.id);
      if (!versions) this.schemas.set(spec.id, (versions = new Map()));
      versions.set(spec.version, { spec, check: compile(spec.schema), tree, plan, other });
    }
    const delivery: DeliveryOptions = { ...DELIVERY };
    for (const key of Object.keys(DELIVERY) as (keyof DeliveryOptions)[]) {
      if (typeof options[key] === "number") delivery[key] = options[key] as number;
    }
    let persist: PersistOptions | null = null;
    if (options.persist) {
      persist = { ...PERSIST, ...(options.persist === true ? {} : options.persist) };
      delivery.maxQueueEvents = Math.min(delivery.maxQueueEvents, persist.maxEvents);
      delivery.maxQueueBytes = Math.min(delivery.maxQueueBytes, persist.maxBytes);
      if (!this.storage) warn("persistence needs localStorage, which this page cannot use; events stay in memory");
    }
    this.outbox = persist && this.storage
      ? new Outbox(this.storage, this.namespace, persist, (sink, e) => this.channel(sink)?.push(e))
      : null;
    const sinks: Sink[] = [];
    for (const spec of policy.sinks) {
      if (spec.type === "collector") sinks.push(new CollectorSink(collector, fetcher, urls));
      else if (spec.type === "console") sinks.push(new ConsoleSink());
      else if (spec.type === "http") sinks.push(new HttpSink(spec.url, spec.format, fetcher));
    }
    sinks.push(...(options.sinks ?? []));
    for (const sink of sinks) this.channels.push(new Channel(sink, delivery, this.outbox ?? undefined));

    this.consent = new Consent({
      policy, consentUrl: urls.consent, fetcher, storage: this.storage, namespace: this.namespace,
      purgeDenied: () => this.purgeDenied(),
    });
    this.onHide = () => this.drain();
    this.onHidden = () => {
      if (typeof document === "undefined" || document.visibilityState === "hidden") this.drain();
    };
    this.onOnline = () => this.channels.forEach((c) => c.wake());
    if (typeof addEventListener === "function") {
      addEventListener("pagehide", this.onHide);
      addEventListener("visibilitychange", this.onHidden);
      addEventListener("online", this.onOnline);
    }
  }

  /** The schema ids this page may record, with their allowed versions. */
  get recordedSchemas(): { id: string; versions: number[] }[] {
    return [...this.schemas].map(([id, v]) => ({ id, versions: [...v.keys()].sort((a, b) => a - b) }));
  }

  /** The sinks events go to (the operator's, then the page's). */
  get sinks(): Sink[] {
    return this.channels.map((c) => c.sink);
  }

  /**
   * Validate, filter and queue one event; return its capsule, or null when it is not recorded
   * (schema not allowed, no consent, not in this session's sample).  Throws
   * {@link EventValidationError} for an invalid event and {@link UnknownSchemaError} for a schema
   * or version the collector does not know; nothing is sent then.
   */
  emit(request: EmitRequest): Capsule | null {
    const { schema_id: id, version, data } = request ?? ({} as EmitRequest);
    if (typeof id !== "string" || !id) throw new TypeError("emit() needs { schema_id, version?, data }");
    const compiled = this.lookup(id, version);
    if (!compiled) return null;
    const { spec } = compiled;
    if (!recording(this.consent.stateFor(id))) return null;
    const event = this.normalize(spec, data);
    const violation = compiled.check(event);
    if (violation) {
      let reason = violation.reason;
      for (const text of personalTexts(event, compiled.tree).sort((a, b) => b.length - a.length)) {
        if (text) reason = reason.split(text).join("<redacted>");
      }
      throw new EventValidationError(id, spec.version, jsonPath(violation.parts), reason);
    }
    if (spec.sample_rate < 1 && fnv1a(`${this.session}:${id}`) / 4294967296 >= spec.sample_rate) return null;
    const split = compiled.other !== compiled.plan;
    const otherEvent = split ? (JSON.parse(JSON.stringify(event)) as Record<string, unknown>) : event;
    if (compiled.plan) applyPlan(event, compiled.plan);
    if (split && compiled.other) applyPlan(otherEvent, compiled.other);
    const when = request.timestamp === undefined ? new Date() : new Date(request.timestamp);
    if (Number.isNaN(when.getTime())) throw new TypeError(`timestamp ${String(request.timestamp)} is not a date`);
    const unit = spec.redaction?.timestamp?.unit;
    const stamp = unit ? roundTimestamp(formatTimestamp(when), unit) : formatTimestamp(when);
    const eventId = `${this.producer}-${++this.sequence}`;
    const wrap = (fields: Record<string, unknown>): [Capsule, Envelope] => {
      const capsule: Capsule = {
        __timestamp__: stamp, __schema__: id, __schema_version__: spec.version,
        __metadata_version__: METADATA_VERSION, ...fields,
      };
      const json = JSON.stringify({ ...capsule, __event_id__: eventId });
      return [capsule, { id: eventId, schema: id, json, bytes: utf8Length(json), time: when.getTime() }];
    };
    const [capsule, envelope] = wrap(event);
    const others = split ? wrap(otherEvent)[1] : envelope;
    this.emitted++;
    for (const channel of this.channels) channel.push(channel.sink instanceof CollectorSink ? envelope : others);
    return capsule;
  }

  /** Resolves true when every sink answered every event emitted so far; false after ``timeout`` ms. */
  async flush(timeout = 10_000): Promise<boolean> {
    const results = await Promise.all(this.channels.map((c) => c.flush(timeout)));
    return results.every(Boolean);
  }

  /** Send everything now in keepalive requests (the page is going away). */
  drain(): void {
    for (const channel of this.channels) channel.drain();
  }

  /** Flush, then stop timers and listeners. */
  async close(timeout = 10_000): Promise<boolean> {
    const done = await this.flush(timeout);
    if (typeof removeEventListener === "function") {
      removeEventListener("pagehide", this.onHide);
      removeEventListener("visibilitychange", this.onHidden);
      removeEventListener("online", this.onOnline);
    }
    this.channels.forEach((c) => c.stop());
    this.outbox?.stop();
    return done;
  }

  stats(): { emitted: number; sinks: Record<string, Stats> } {
    const sinks: Record<string, Stats> = {};
    for (const c of this.channels) sinks[c.sink.name] = { ...c.stats };
    return { emitted: this.emitted, sinks };
  }

  private channel(name: string): Channel | undefined {
    return this.channels.find((c) => c.sink.name === name);
  }

  private lookup(id: string, version: number | undefined): Compiled | null {
    const versions = this.schemas.get(id);
    if (!versions) {
      if (this.policy.not_recorded.includes(id)) return null;
      const known = [...this.schemas.keys(), ...this.policy.not_recorded].map((s) => `'${s}'`).join(", ");
      throw new UnknownSchemaError(`Schema '${id}' is not registered with the collector (registered: `
        + `${known || "none"}); register it there (c.EventLog.schema_paths)`);
    }
    const newest = Math.max(...versions.keys());
    const compiled = versions.get(version ?? newest);
    if (!compiled) {
      throw new UnknownSchemaError(`Schema '${id}' has no version ${version} at the collector; `
        + `versions: ${[...versions.keys()].sort((a, b) => a - b).join(", ")}`);
    }
    return compiled;
  }

  /** The event as JSON data: a copy (the caller's object is never changed), checked like Python's. */
  private normalize(spec: PolicySchema, data: unknown): Record<string, unknown> {
    const fail = (path: string, reason: string): never => {
      throw new EventValidationError(spec.id, spec.version, path, reason);
    };
    if (!isObject(data)) fail("$", `an event must be a JSON object, not ${Array.isArray(data) ? "an array" : typeof data}`);
    let copy: Record<string, unknown>;
    try {
      copy = JSON.parse(JSON.stringify(data));
    } catch (error) {
      return fail("$", `the event cannot be encoded as JSON (${(error as Error).message}): `
        + "a circular reference or a BigInt");
    }
    for (const name of Object.keys(copy)) {
      if (name.startsWith("__")) fail(jsonPath([name]), "names starting with '__' are reserved for the capsule");
    }
    if (depth(copy, this.maxDepth) > this.maxDepth) {
      fail("$", `the event nests objects or arrays more than ${this.maxDepth} levels deep`);
    }
    return copy;
  }

  private async purgeDenied(): Promise<void> {
    const blocked = (e: Envelope): boolean => !recording(this.consent.stateFor(e.schema));
    for (const channel of this.channels) channel.purge(blocked);
    await this.outbox?.purge(blocked);
  }

  private sessionId(): string {
    const key = `telemetry-sinks:${this.namespace}:session`;
    try {
      let id = sessionStorage.getItem(key);
      if (!id) sessionStorage.setItem(key, (id = randomHex(8)));
      return id;
    } catch {
      return randomHex(8);
    }
  }
}
