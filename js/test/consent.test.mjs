// Consent: the modes, GPC, grant/deny, purge on withdrawal, persistence across reloads.
import assert from "node:assert/strict";
import { test } from "node:test";
import { COLLECTOR, LAUNCH, MemoryStorage, SAVE, captureWarnings, collector, policy, sleep, ts } from "./helpers.mjs";

const SAVE_SCHEMA = { $id: SAVE, version: 1, type: "object", required: ["action"],
  properties: { action: { enum: ["save", "autosave"] } } };

function twoModes(consent = {}, modes = { launch: "opt-out", save: "opt-in" }) {
  const doc = policy({ consent });
  doc.schemas[0].consent = modes.launch;
  doc.schemas.push({ id: SAVE, version: 1, title: "File saved", consent: modes.save, state: "pending",
    sample_rate: 1, allowed_categories: ["unrestricted"], allowed_properties: [], schema: SAVE_SCHEMA });
  doc.not_recorded = [];
  return doc;
}

const launch = { schema_id: LAUNCH, data: { app: "a", status: "success" } };
const save = { schema_id: SAVE, data: { action: "save" } };

async function connect(doc, options = {}, answers = null) {
  const c = collector(doc, answers);
  const log = await ts.EventLog.connect({ collector: COLLECTOR, fetch: c.fetch, storage: new MemoryStorage(), ...options });
  return { log, c };
}

test("the consent table: opt-out records without a choice, opt-in waits, required always records", () => {
  const table = [["required", null, true, "required"], ["opt-out", null, false, "granted"], ["opt-out", null, true, "denied"],
    ["opt-out", "denied", false, "denied"], ["opt-out", "granted", true, "granted"], ["opt-in", null, false, "pending"],
    ["opt-in", null, true, "denied"], ["opt-in", "granted", false, "granted"], ["required", "denied", false, "required"]];
  for (const [mode, choice, gpc, state] of table) assert.equal(ts.consentState(mode, choice, gpc), state, `${mode} ${choice} ${gpc}`);
});

test("opt-in records nothing until granted; deny stops opt-out too and purges the queue", async () => {
  const { log, c } = await connect(twoModes(), { flushInterval: 60_000 });
  assert.equal(log.consent.stateFor(SAVE), "pending");
  assert.equal(log.emit(save), null);
  assert.ok(log.emit(launch));
  assert.equal(await log.consent.grant(), true);
  const consentPost = c.requests.find((r) => r.path === "/api/consent");
  assert.deepEqual(JSON.parse(consentPost.body), { choice: "granted" });
  assert.equal(consentPost.init.credentials, "include");
  assert.ok(log.emit(save));
  await log.consent.deny();
  assert.equal(log.consent.state, "denied");
  assert.equal(log.emit(launch), null);
  assert.equal(log.emit(save), null);
  assert.equal(await log.flush(300), true, "nothing left to send: the queued events were purged");
  assert.equal(c.posts().length, 0);
  await log.close(10);
});

test("required schemas are recorded whatever the choice; GPC counts as a denial unless granted", async () => {
  const { log } = await connect(twoModes({ gpc: true }, { launch: "required", save: "opt-out" }));
  assert.equal(log.consent.stateFor(LAUNCH), "required");
  assert.equal(log.consent.stateFor(SAVE), "denied");
  assert.ok(log.emit(launch));
  assert.equal(log.emit(save), null);
  await log.consent.grant();
  assert.ok(log.emit(save), "an explicit grant overrides GPC");
});

test("the collector's stored choice wins; this origin's mirror is used when it has none", async () => {
  const storage = new MemoryStorage();
  const first = await connect(twoModes(), { storage });
  await first.log.consent.deny();
  const again = await connect(twoModes(), { storage });
  assert.equal(again.log.consent.choice, "denied", "mirror used: the collector has no cookie (cross-site)");
  const collectorSays = await connect(twoModes({ choice: "granted" }), { storage });
  assert.equal(collectorSays.log.consent.choice, "granted");
});

test("persistence: events queued while the collector is down are sent after a reload", async () => {
  const storage = new MemoryStorage();
  const down = await connect(policy(), { storage, persist: true }, () => ["network"]);
  for (let n = 0; n < 3; n++) down.log.emit({ schema_id: LAUNCH, data: { app: `a${n}`, status: "success", username: "ada-lovelace" } });
  const keys = [...storage.map.keys()].filter((k) => k.includes(":q:"));
  assert.equal(keys.length, 1);
  const stored = storage.getItem(keys[0]);
  assert.ok(stored.includes("a2") && !stored.includes("ada-lovelace"), "only redacted events are stored");
  await down.log.close(10);
  // The page is gone: its heartbeat stops (no Web Locks in Node); make it old, as time would.
  const item = JSON.parse(stored);
  storage.setItem(keys[0], JSON.stringify({ ...item, t: 0 }));
  const up = await connect(policy(), { storage, persist: true });
  assert.equal(await up.log.flush(2000), true);
  assert.deepEqual(up.c.sent().map((e) => e.app), ["a0", "a1", "a2"]);
  assert.equal(new Set(up.c.sent().map((e) => e.__event_id__)).size, 3);
  await up.log.close(10);
  assert.equal([...storage.map.keys()].filter((k) => k.includes(":q:")).length, 0, "nothing left once delivered");
});

test("persistence caps: count and age", async () => {
  const warnings = captureWarnings();
  try {
    const storage = new MemoryStorage();
    const down = await connect(policy(), { storage, persist: { maxEvents: 4 }, retryInitialBackoff: 60_000 }, () => ["network"]);
    for (let n = 0; n < 6; n++) down.log.emit({ schema_id: LAUNCH, data: { app: `a${n}`, status: "success" } });
    const key = [...storage.map.keys()].find((k) => k.includes(":q:"));
    assert.deepEqual(JSON.parse(storage.getItem(key)).items.map((x) => JSON.parse(x.j).app), ["a2", "a3", "a4", "a5"]);
    await down.log.close(10);
    const item = JSON.parse(storage.getItem(key));
    item.t = 0;
    item.items[0].e = 0; // emitted in 1970: older than maxAge
    storage.setItem(key, JSON.stringify(item));
    const up = await connect(policy(), { storage, persist: { maxAge: 86_400_000 } });
    assert.equal(await up.log.flush(2000), true);
    assert.deepEqual(up.c.sent().map((e) => e.app), ["a3", "a4", "a5"]);
    assert.ok(warnings.seen.some((w) => w.includes("older than")));
    await up.log.close(10);
  } finally {
    warnings.restore();
  }
});

test("withdrawing consent purges what is stored for reloads too", async () => {
  const storage = new MemoryStorage();
  const { log } = await connect(policy(), { storage, persist: true, retryInitialBackoff: 60_000 }, () => ["network"]);
  log.emit(launch);
  assert.ok([...storage.map.keys()].some((k) => k.includes(":q:")));
  await log.consent.deny();
  await sleep(5);
  assert.ok(![...storage.map.keys()].some((k) => k.includes(":q:")), "purged");
  await log.close(10);
});
