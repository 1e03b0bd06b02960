// emit(): validation, default deny, redaction, capsules, sampling — the Python EventLog's rules.
import assert from "node:assert/strict";
import { test } from "node:test";
import { COLLECTOR, LAUNCH, LAUNCH_SCHEMA, SAVE, collector, policy, ts } from "./helpers.mjs";

const connect = (doc = policy(), options = {}) => {
  const c = collector(doc);
  return ts.EventLog.connect({ collector: COLLECTOR, fetch: c.fetch, storage: null, ...options })
    .then((log) => ({ log, c }));
};

test("an invalid event throws with schema, version, JSON path and reason, and sends nothing", async () => {
  const { log, c } = await connect();
  assert.throws(() => log.emit({ schema_id: LAUNCH, version: 1, data: { app: "lab", status: "maybe" } }), (e) => {
    assert.ok(e instanceof ts.EventValidationError);
    assert.equal(e.schemaId, LAUNCH);
    assert.equal(e.version, 1);
    assert.equal(e.path, "$.status");
    assert.match(e.reason, /success.*failure/);
    assert.equal(e.message, `Event for schema '${LAUNCH}' version 1 is invalid at $.status: ${e.reason}`);
    return true;
  });
  assert.throws(() => log.emit({ schema_id: LAUNCH, data: { app: "lab" } }), /invalid at \$: .*required property "status"/);
  assert.throws(() => log.emit({ schema_id: LAUNCH, data: { app: "lab", status: "success", files: [{ size: 1 }, { size: "x" }] } }),
    (e) => e.path === "$.files[1].size");
  assert.equal(await log.flush(500), true);
  assert.equal(c.posts().length, 0);
});

test("validation errors never quote personal values", async () => {
  const { log } = await connect();
  assert.throws(() => log.emit({ schema_id: LAUNCH, data: { app: "lab", status: "success", files: [{ path: "ab" }] } }),
    (e) => e.path === "$.files[0].path" && !e.message.includes('"ab"'));
  // A number compared in the message is scrubbed when it is personal data.
  const schemas = policy().schemas;
  schemas[0].schema = { ...LAUNCH_SCHEMA, properties: { ...LAUNCH_SCHEMA.properties,
    age: { type: "integer", maximum: 150, categories: ["user-identifiable-information"] } } };
  const { log: strict } = await connect(policy({ schemas }));
  assert.throws(() => strict.emit({ schema_id: LAUNCH, data: { app: "a", status: "success", age: 98765 } }),
    (e) => e.path === "$.age" && !e.message.includes("98765") && e.message.includes("<redacted>"));
});

test("formats are not checked, as in Python; other JSON problems are precise", async () => {
  const { log } = await connect();
  assert.ok(log.emit({ schema_id: LAUNCH, data: { app: "a", status: "success", when: "not a date" } }));
  const loop = { app: "a", status: "success" };
  loop.client = { loop };
  assert.throws(() => log.emit({ schema_id: LAUNCH, data: loop }), /invalid at \$: the event cannot be encoded as JSON/);
  assert.throws(() => log.emit({ schema_id: LAUNCH, data: { app: "a", status: "success", __event_id__: "x" } }),
    /invalid at \$.__event_id__: names starting with '__' are reserved/);
  let deep = {};
  const top = { app: "a", status: "success", client: deep };
  for (let i = 0; i < 70; i++) deep = deep.x = {};
  assert.throws(() => log.emit({ schema_id: LAUNCH, data: top }), /more than 64 levels deep/);
  assert.throws(() => log.emit({ schema_id: LAUNCH, data: [1] }), /must be a JSON object/);
});

test("default deny: a schema the policy does not record returns null; unknown ones throw", async () => {
  const { log, c } = await connect();
  assert.equal(log.emit({ schema_id: SAVE, version: 1, data: { action: "save" } }), null);
  assert.throws(() => log.emit({ schema_id: "https://nope", data: {} }), (e) =>
    e instanceof ts.UnknownSchemaError && e.message.includes("'https://nope' is not registered"));
  assert.throws(() => log.emit({ schema_id: LAUNCH, version: 7, data: {} }), /has no version 7 .* versions: 1/);
  await log.flush(200);
  assert.equal(c.posts().length, 0);
});

test("personal data is removed by category before any sink; allowed properties are kept whole", async () => {
  const { log, c } = await connect();
  const data = { app: "lab", status: "success", username: "ada-lovelace", client: { user_agent: "UA", ip: "192.0.2.1" },
    files: [{ size: 1, path: "secret.ipynb" }] };
  const before = JSON.stringify(data);
  const capsule = log.emit({ schema_id: LAUNCH, data });
  assert.equal(JSON.stringify(data), before, "the caller's event is not modified");
  assert.deepEqual(Object.keys(capsule), ["__timestamp__", "__schema__", "__schema_version__", "__metadata_version__",
    "app", "status", "client", "files"]);
  assert.deepEqual(capsule.client, { user_agent: "UA" });
  assert.deepEqual(capsule.files, [{ size: 1 }]);
  assert.equal(await log.flush(1000), true);
  const body = c.posts().map((r) => r.body).join("");
  for (const secret of ["ada-lovelace", "192.0.2.1", "secret.ipynb"]) assert.ok(!body.includes(secret), secret);

  const schemas = policy().schemas;
  schemas[0].allowed_categories = ["unrestricted", "user-identifier"];
  schemas[0].allowed_properties = ["client"];
  const { log: wider } = await connect(policy({ schemas }));
  const kept = wider.emit({ schema_id: LAUNCH, data });
  assert.equal(kept.username, "ada-lovelace");
  assert.deepEqual(kept.client, { user_agent: "UA", ip: "192.0.2.1" });
  assert.deepEqual(kept.files, [{ size: 1 }]);
});

test("capsules have the Python fields, a Z timestamp with microseconds, and one event id each", async () => {
  const { log, c } = await connect();
  const a = log.emit({ schema_id: LAUNCH, data: { app: "a", status: "success" } });
  const b = log.emit({ schema_id: LAUNCH, data: { app: "b", status: "failure" }, timestamp: "2025-01-31T12:00:00Z" });
  assert.match(a.__timestamp__, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.equal(b.__timestamp__, "2025-01-31T12:00:00.000000Z");
  assert.equal(a.__schema_version__, 1);
  assert.equal(a.__metadata_version__, 1);
  assert.equal(await log.flush(1000), true);
  const sent = c.sent();
  assert.equal(sent.length, 2);
  assert.notEqual(sent[0].__event_id__, sent[1].__event_id__);
  assert.match(sent[0].__event_id__, /^[0-9a-f]{12}-1$/);
  assert.deepEqual({ ...sent[1], __event_id__: undefined }, { ...b, __event_id__: undefined });
});

test("sampling is per session and schema: rate 0 records nothing, rate 1 everything", async () => {
  const schemas = policy().schemas;
  schemas[0].sample_rate = 0;
  const { log } = await connect(policy({ schemas }));
  assert.equal(log.emit({ schema_id: LAUNCH, data: { app: "a", status: "success" } }), null);
  assert.throws(() => log.emit({ schema_id: LAUNCH, data: { app: "a" } }), ts.EventValidationError,
    "sampled-out events are still validated");
});
