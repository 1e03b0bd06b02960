// A collector API below another server's root (Jupyter Server's base_url): every request goes
// to the configured endpoints, and sendBeacon only to the beacon URL (or never).
import assert from "node:assert/strict";
import { test } from "node:test";
import { LAUNCH, MemoryStorage, policy, ts } from "./helpers.mjs";

const SERVER = "http://jupyter.test:8888";
const BASE = "/user/ada/api/telemetry/";

function server(doc = policy()) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    const { pathname } = new URL(url);
    requests.push({ url, path: pathname, init });
    if (pathname === `${BASE}policy`) return new Response(JSON.stringify(doc), { status: 200 });
    if (pathname === `${BASE}consent`) return new Response("{}", { status: 200 });
    if (pathname === `${BASE}events`) {
      const events = JSON.parse(init.body);
      return new Response(JSON.stringify({ results: events.map((_, index) => ({ index, status: "accepted" })) }));
    }
    return new Response('{"error": "not found"}', { status: 404 });
  };
  return { fetch, requests };
}

const endpoints = { policy: `${BASE}policy`, events: `${BASE}events`, consent: `${BASE}consent` };
const event = { schema_id: LAUNCH, data: { app: "lab", status: "success" } };

test("policy, events and consent go to the configured endpoints", async () => {
  const s = server();
  const log = await ts.EventLog.connect({ collector: SERVER, endpoints, fetch: s.fetch, storage: null });
  log.emit(event);
  assert.equal(await log.flush(2000), true);
  await log.consent.deny();
  assert.deepEqual(s.requests.map((r) => r.path), [`${BASE}policy`, `${BASE}events`, `${BASE}consent`]);
  assert.equal(s.requests[1].init.method, "POST");
  assert.deepEqual(JSON.parse(s.requests[2].init.body), { choice: "denied" });
  await log.close(100);
});

test("two servers on one origin keep their consent mirrors apart", async () => {
  const storage = new MemoryStorage();
  const ada = await ts.EventLog.connect({ collector: SERVER, endpoints, fetch: server().fetch, storage });
  await ada.consent.deny();
  const other = {
    policy: "/user/bob/api/telemetry/policy", events: "/user/bob/api/telemetry/events",
    consent: "/user/bob/api/telemetry/consent",
  };
  const bobServer = server();
  const fetchBob = (url, init) => bobServer.fetch(String(url).replace("/user/bob/", "/user/ada/"), init);
  const bob = await ts.EventLog.connect({ collector: SERVER, endpoints: other, fetch: fetchBob, storage });
  assert.equal(ada.consent.choice, "denied");
  assert.equal(bob.consent.choice, null, "ada's choice in this browser is not bob's");
  assert.notEqual(bob.emit(event), null);
  await ada.close(100);
  await bob.close(100);
});

async function refusedKeepalive(beacon) {
  const s = server();
  const fetch = async (url, init = {}) => {
    if (init.method === "POST" && new URL(url).pathname.endsWith("/events")) throw new TypeError("quota");
    return s.fetch(url, init);
  };
  const beacons = [];
  const saved = globalThis.navigator;
  Object.defineProperty(globalThis, "navigator", {
    configurable: true, value: { sendBeacon: (url) => (beacons.push(String(url)), true) },
  });
  try {
    const log = await ts.EventLog.connect({ collector: SERVER, endpoints: { ...endpoints, beacon }, fetch,
      storage: null, flushInterval: 60_000 });
    log.emit(event);
    log.drain();
    await new Promise((r) => setTimeout(r, 20));
    const stats = log.stats().sinks.collector;
    await log.close(50);
    return { beacons, stats };
  } finally {
    Object.defineProperty(globalThis, "navigator", { configurable: true, value: saved });
  }
}

test("when fetch refuses a keepalive request, the beacon goes to the beacon URL", async () => {
  const { beacons, stats } = await refusedKeepalive(`${BASE}events?_xsrf=token-1`);
  assert.deepEqual(beacons, [`${SERVER}${BASE}events?_xsrf=token-1`]);
  assert.equal(stats.sent, 1);
});

test("with beacon null no beacon is sent: the event stays queued for a retry", async () => {
  const { beacons, stats } = await refusedKeepalive(null);
  assert.deepEqual(beacons, []);
  assert.equal(stats.sent, 0);
  assert.equal(stats.retried, 1);
});
