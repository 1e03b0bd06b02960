// Delivery: batches, retries honouring Retry-After, refusals, splitting, keepalive, sinks.
import assert from "node:assert/strict";
import { test } from "node:test";
import { COLLECTOR, LAUNCH, captureWarnings, collector, policy, sleep, ts } from "./helpers.mjs";

const event = (n, extra = {}) => ({ schema_id: LAUNCH, data: { app: `app-${n}`, status: "success", ...extra } });

async function connect(answers, options = {}, doc = policy()) {
  const c = collector(doc, answers);
  const log = await ts.EventLog.connect({ collector: COLLECTOR, fetch: c.fetch, storage: null,
    retryInitialBackoff: 50, retryMaxBackoff: 200, ...options });
  return { log, c };
}

test("events go in batches by count, and by time", async () => {
  const { log, c } = await connect(null, { batchSize: 3, flushInterval: 150 });
  for (let n = 0; n < 7; n++) log.emit(event(n));
  await sleep(30);
  assert.deepEqual(c.posts().map((r) => r.events.length), [3, 3], "two full batches at once");
  await sleep(250);
  assert.deepEqual(c.posts().map((r) => r.events.length), [3, 3, 1], "the rest after flushInterval");
  assert.deepEqual(c.sent().map((e) => e.app), [0, 1, 2, 3, 4, 5, 6].map((n) => `app-${n}`), "in order");
  for (const r of c.posts()) {
    assert.equal(r.init.keepalive, true, "small requests are keepalive");
    assert.equal(r.init.credentials, "include", "the consent cookie goes with them");
  }
});

test("503 and network errors are retried with backoff; 429 waits for Retry-After", async () => {
  let calls = 0;
  const { log, c } = await connect(() => {
    calls++;
    if (calls === 1) return [503, { error: "busy" }, {}];
    if (calls === 2) return ["network"];
    if (calls === 3) return [429, { error: "slow down" }, { "Retry-After": "1" }];
    return [200];
  });
  log.emit(event(1));
  assert.equal(await log.flush(5000), true);
  const times = c.posts().map((r) => r.time);
  assert.equal(times.length, 4);
  assert.ok(times[3] - times[2] >= 950, `Retry-After 1 s honoured (${times[3] - times[2]} ms)`);
  assert.equal(new Set(c.sent().map((e) => e.__event_id__)).size, 1, "the same event id on every try");
  assert.equal(log.stats().sinks.collector.retried, 3);
});

test("flush() resolves false while the collector is down, and delivery resumes when it is back", async () => {
  let down = true;
  const { log, c } = await connect(() => (down ? ["network"] : [200]));
  log.emit(event(1));
  assert.equal(await log.flush(300), false);
  down = false;
  assert.equal(await log.flush(3000), true);
  assert.equal(c.sent().at(-1).app, "app-1");
});

test("other 4xx answers drop the batch with a console warning naming the reason", async () => {
  const warnings = captureWarnings();
  try {
    const { log, c } = await connect(() => [403, { error: "origin not allowed" }, {}]);
    log.emit(event(1));
    await log.flush(1000);
    assert.equal(c.posts().length, 1, "not retried");
    assert.ok(warnings.seen.some((w) => w.includes("HTTP 403: origin not allowed")), warnings.seen.join("\n"));
    assert.equal(log.stats().sinks.collector.dropped, 1);
  } finally {
    warnings.restore();
  }
});

test("per-event rejections are warned about; the rest of the batch counts as delivered", async () => {
  const warnings = captureWarnings();
  try {
    const { log } = await connect((events) => [400, { rejected: 1, results: events.map((_, index) => index === 1
      ? { index, status: "rejected", error: { path: "$.app", reason: "bad", message: "bad app" } }
      : { index, status: "accepted" }) }, {}], { batchSize: 3 });
    for (let n = 0; n < 3; n++) log.emit(event(n));
    assert.equal(await log.flush(1000), true);
    assert.ok(warnings.seen.some((w) => w.includes("rejected an event of") && w.includes("bad app")));
    assert.equal(log.stats().sinks.collector.sent, 2);
    assert.equal(log.stats().sinks.collector.rejected, 1);
  } finally {
    warnings.restore();
  }
});

test("413 splits the batch", async () => {
  const { log, c } = await connect((events) => (events.length > 2 ? [413, { error: "too large" }, {}] : [200]),
    { batchSize: 8 });
  for (let n = 0; n < 8; n++) log.emit(event(n));
  assert.equal(await log.flush(2000), true);
  assert.equal(c.sent().filter((e, i, all) => all.findIndex((x) => x.__event_id__ === e.__event_id__) === i).length, 8);
  assert.ok(c.posts().slice(1).every((r) => r.events.length <= 8));
});

test("drain() sends everything queued at once in keepalive requests under the 64 KiB limit", async () => {
  const { log, c } = await connect(null, { batchSize: 1000, flushInterval: 60_000 });
  const big = "x".repeat(1000);
  for (let n = 0; n < 100; n++) log.emit(event(n, { client: { user_agent: big } }));
  await sleep(10);
  assert.equal(c.posts().length, 0);
  log.drain();
  await sleep(10);
  const sizes = c.posts().map((r) => new TextEncoder().encode(r.body).length);
  assert.ok(sizes.length >= 2, `chunked: ${sizes}`);
  assert.ok(sizes.every((s) => s <= 32768), `each under the batch limit: ${sizes}`);
  assert.ok(sizes.reduce((a, b) => a + b, 0) <= 65536, "all together under the keepalive quota");
  assert.ok(c.posts().every((r) => r.init.keepalive === true));
});

test("the operator's HTTP sink gets NDJSON or a JSON array; the console sink shows each capsule", async () => {
  const doc = policy({ sinks: [{ type: "http", url: "https://sink.test/in", format: "ndjson" }, { type: "console" }] });
  const shown = [];
  const info = console.info;
  console.info = (...args) => shown.push(args);
  try {
    const { log, c } = await connect(null, {}, doc);
    log.emit(event(1, { username: "ada-lovelace" }));
    assert.equal(await log.flush(1000), true);
    const [post] = c.posts();
    assert.equal(post.url, "https://sink.test/in");
    assert.equal(post.init.headers["Content-Type"], "application/x-ndjson");
    assert.equal(post.init.credentials, "omit");
    assert.ok(post.body.endsWith("\n") && !post.body.includes("ada-lovelace"));
    assert.equal(shown.length, 1);
    assert.equal(shown[0][1].app, "app-1");
    assert.equal(shown[0][1].username, undefined);
    assert.deepEqual(log.sinks.map((s) => s.name), ["http:https://sink.test/in", "console"]);
  } finally {
    console.info = info;
  }
});

test("a page-defined sink receives the same redacted capsules (the sink interface)", async () => {
  const got = [];
  const mine = { name: "mine", async send(batch) { got.push(...batch.map((e) => JSON.parse(e.json))); return { ok: true }; } };
  const { log } = await connect(null, { sinks: [mine] });
  log.emit(event(1, { username: "ada-lovelace" }));
  assert.equal(await log.flush(1000), true);
  assert.equal(got.length, 1);
  assert.equal(got[0].username, undefined);
  assert.ok(got[0].__event_id__);
});

test("the in-memory queue is bounded: the oldest events are dropped with a warning", async () => {
  const warnings = captureWarnings();
  try {
    const { log } = await connect(() => ["network"], { maxQueueEvents: 5, retryInitialBackoff: 60_000 });
    for (let n = 0; n < 8; n++) log.emit(event(n));
    assert.equal(log.stats().sinks.collector.queued, 5);
    assert.equal(log.stats().sinks.collector.dropped, 3);
    assert.ok(warnings.seen.some((w) => w.includes("queue full")));
    await log.close(10);
  } finally {
    warnings.restore();
  }
});
