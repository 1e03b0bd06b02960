// The collector's compiled plan (policy "redaction"): drop everywhere; what the collector
// pseudonymizes or generalizes goes to the collector only, as it is, and to no other sink.
import assert from "node:assert/strict";
import { test } from "node:test";
import { COLLECTOR, LAUNCH, collector, policy, ts } from "./helpers.mjs";

// As EventLog.describe_redaction describes: user-identifier pseudonymized, client.user_agent cut,
// client.ip and files[].path dropped, the capsule's time rounded to the minute.
const REDACTION = {
  schema_id: LAUNCH, version: 1,
  timestamp: { action: "generalize", generalize: "round_time", unit: "minute" },
  properties: {
    username: { action: "pseudonymize", key_id: "k1" },
    client: { properties: {
      ip: { action: "drop" },
      user_agent: { action: "generalize", generalize: "truncate", length: 7 },
    } },
    files: { items: { properties: { path: { action: "drop" } } } },
  },
};
const DATA = { app: "lab", status: "success", username: "ada-lovelace",
  client: { user_agent: "Firefox/133.0", ip: "192.0.2.1" }, files: [{ size: 1, path: "secret.ipynb" }] };

async function connected(redaction = REDACTION) {
  const schemas = policy().schemas;
  if (redaction) schemas[0].redaction = redaction;
  const c = collector(policy({ schemas }));
  const other = [];
  const mine = { name: "mine", async send(batch) { other.push(...batch.map((e) => JSON.parse(e.json))); return { ok: true }; } };
  const log = await ts.EventLog.connect({ collector: COLLECTOR, fetch: c.fetch, storage: null, sinks: [mine] });
  return { log, c, other };
}

test("the collector gets what it pseudonymizes or generalizes as it is; other sinks get none of it", async () => {
  const { log, c, other } = await connected();
  const capsule = log.emit({ schema_id: LAUNCH, data: DATA, timestamp: "2025-01-31T12:34:56.789Z" });
  assert.equal(await log.flush(1000), true);
  const [toCollector] = c.sent();
  const [toOther] = other;
  assert.equal(toCollector.__event_id__, toOther.__event_id__);
  assert.equal(toCollector.username, "ada-lovelace");  // the collector pseudonymizes it before its sinks
  assert.deepEqual(toCollector.client, { user_agent: "Firefox/133.0" });
  assert.deepEqual(toCollector.files, [{ size: 1 }]);
  assert.equal(toOther.username, undefined);
  assert.deepEqual(toOther.client, {});
  assert.deepEqual(toOther.files, [{ size: 1 }]);
  for (const sent of [toCollector, toOther]) assert.equal(sent.__timestamp__, "2025-01-31T12:34:00.000000Z");
  assert.deepEqual({ ...toCollector, __event_id__: undefined }, { ...capsule, __event_id__: undefined });
  const otherText = JSON.stringify(other);
  for (const secret of ["ada-lovelace", "Firefox", "192.0.2.1", "secret.ipynb"]) assert.ok(!otherText.includes(secret), secret);
  assert.ok(!c.posts().map((r) => r.body).join("").includes("192.0.2.1"));
});

test("the plan rules over the categories: a property without one can be dropped, one with an unallowed one kept", async () => {
  const { log, c } = await connected({ ...REDACTION, timestamp: null, properties: { app: { action: "drop" } } });
  log.emit({ schema_id: LAUNCH, data: DATA });
  assert.equal(await log.flush(1000), true);
  const [sent] = c.sent();
  assert.equal(sent.app, undefined);
  assert.equal(sent.username, "ada-lovelace");
  assert.deepEqual(sent.client, DATA.client);
});

test("without a published plan the module removes by category, as before", async () => {
  const { log, c, other } = await connected(null);
  log.emit({ schema_id: LAUNCH, data: DATA });
  assert.equal(await log.flush(1000), true);
  for (const sent of [c.sent()[0], other[0]]) {
    assert.equal(sent.username, undefined);
    assert.deepEqual(sent.client, { user_agent: "Firefox/133.0" });
  }
});
