// Shared fixtures of the unit tests: the module under test, a policy, a scripted collector.
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
// The tests run against a bundle built from the sources (TELEMETRY_SINKS_MODULE), else the shipped one.
const modulePath = process.env.TELEMETRY_SINKS_MODULE || resolve(root, "telemetry_sinks/server/static/telemetry-sinks.js");
export const ts = await import(pathToFileURL(modulePath).href);

export const COLLECTOR = "http://collector.test:8585";
export const LAUNCH = "https://events.telemetry-sinks.org/example/app-launch";
export const SAVE = "https://events.telemetry-sinks.org/example/file-save";


export const LAUNCH_SCHEMA = {
  $id: LAUNCH, version: 1, title: "Application launch", type: "object", required: ["app", "status"],
  properties: {
    app: { type: "string", categories: ["unrestricted"] },
    status: { enum: ["success", "failure"] },
    duration_ms: { type: "number", minimum: 0 },
    username: { type: "string", categories: ["category.jupyter.org/user-identifier"] },
    client: { type: "object", properties: {
      user_agent: { type: "string" },
      ip: { type: "string", categories: ["user-identifiable-information"] },
    } },
    files: { type: "array", items: { type: "object", properties: {
      size: { type: "integer" },
      path: { type: "string", minLength: 3, categories: ["user-identifiable-information"] },
    } } },
    when: { type: "string", format: "date-time" },
  },
};

export function policy(overrides = {}) {
  const { consent = {}, schemas, ...rest } = overrides;
  return {
    policy_version: 1,
    page: `${COLLECTOR}/`,
    consent: { default: "opt-out", choice: null, choice_time: null, gpc: false, ...consent },
    schemas: schemas ?? [{
      id: LAUNCH, version: 1, title: "Application launch", consent: "opt-out", state: "granted",
      sample_rate: 1, allowed_categories: ["unrestricted"], allowed_properties: [], schema: LAUNCH_SCHEMA,
    }],
    not_recorded: [SAVE],
    sinks: [{ type: "collector" }],
    limits: { max_body_bytes: 1048576, max_events_per_request: 10000 },
    ...rest,
  };
}

/**
 * A scripted collector behind an injected fetch: ``answers`` is called for each POST to
 * /api/events with the parsed body and returns [status, body, headers] (default 200 accepted).
 */
export function collector(doc = policy(), answers = null) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    const path = new URL(url).pathname;
    const entry = { url, path, init, body: init.body, time: Date.now() };
    requests.push(entry);
    if (path === "/api/policy") return new Response(JSON.stringify(doc), { status: 200 });
    if (path === "/api/consent") return new Response("{}", { status: 200 });
    const events = init.body.startsWith("[") ? JSON.parse(init.body) : init.body.trim().split("\n").map(JSON.parse);
    entry.events = events;
    const [status, body, headers] = answers ? await answers(events, requests) : [200, null, {}];
    if (status === "network") throw new TypeError("Failed to fetch");
    const result = body ?? { accepted: events.length, results: events.map((_, index) => ({ index, status: "accepted" })) };
    return new Response(JSON.stringify(result), { status, headers: headers ?? {} });
  };
  const posts = () => requests.filter((r) => r.path !== "/api/policy" && r.path !== "/api/consent");
  return { fetch, requests, posts, sent: () => posts().flatMap((r) => r.events) };
}

/** A Storage in memory (localStorage's interface). */
export class MemoryStorage {
  constructor() { this.map = new Map(); }
  get length() { return this.map.size; }
  key(i) { return [...this.map.keys()][i] ?? null; }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
  clear() { this.map.clear(); }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function captureWarnings() {
  const seen = [];
  const original = console.warn;
  console.warn = (...args) => seen.push(args.join(" "));
  return { seen, restore: () => { console.warn = original; } };
}

