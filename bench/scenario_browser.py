"""8. The browser EventLog in Debian's headless chromium: what ``emit()`` costs the page, how fast
events reach a collector, and the module's size.

``emit()`` (validation, consent, redaction, capsule, JSON, queueing; delivery held back so that only
the page's own work is timed) is set beside its floor, ``JSON.stringify`` of the same capsule.
Delivery (batches of 10, one request in flight, as the module sends by default) is set beside raw
``fetch`` posting the same batches to the same collector one after the other.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import REPO, ScenarioResult, Settings, Table, Target, fmt_num, median, progress, spread

EMIT_JS = """async ([n, event]) => {
  const TS = await import("/static/telemetry-sinks.js");
  const log = await TS.EventLog.connect({ collector: location.origin, batchSize: 1e9, flushInterval: 3.6e6,
    maxQueueEvents: 1e9, maxQueueBytes: 1e12 });
  for (let i = 0; i < 2000; i++) log.emit(event);
  let t = performance.now();
  for (let i = 0; i < n; i++) log.emit(event);
  const ours = (performance.now() - t) / n;
  const fields = { __timestamp__: "", __schema__: event.schema_id, __schema_version__: 1,
    __metadata_version__: 1 };
  t = performance.now();
  let total = 0;
  for (let i = 0; i < n; i++) total += JSON.stringify({ ...fields, __timestamp__: new Date().toISOString(),
    ...event.data, __event_id__: "x-" + i }).length;
  const floor = (performance.now() - t) / n;
  await log.close(1);
  return { ours, floor, total };
}"""

DELIVER_JS = """async ([n, event]) => {
  const TS = await import("/static/telemetry-sinks.js");
  const log = await TS.EventLog.connect({ collector: location.origin, flushInterval: 0 });
  let t = performance.now();
  for (let i = 0; i < n; i++) log.emit(event);
  const ok = await log.flush(120000);
  const ours = (performance.now() - t) / 1000;
  const one = () => JSON.stringify({ __schema__: event.schema_id, __schema_version__: 1,
    __timestamp__: new Date().toISOString(), app: "raw", status: "success" });
  const body = "[" + Array.from({ length: 10 }, one).join(",") + "]";
  t = performance.now();
  for (let i = 0; i < n / 10; i++) {
    await fetch("/api/events", { method: "POST", body, headers: { "Content-Type": "application/json" },
      credentials: "include" });
  }
  const raw = (performance.now() - t) / 1000;
  await log.close(1);
  return { ok, ours, raw };
}"""


def _sizes(workdir: Path) -> dict[str, int]:
    core = workdir / "core.js"
    subprocess.run(["node", "js/build.mjs", "--core", str(core)], cwd=REPO, check=True, timeout=120)
    shipped = REPO / "telemetry_sinks" / "server" / "static" / "telemetry-sinks.js"
    return {name: len(gzip.compress(path.read_bytes(), 9, mtime=0)) for name, path in
            (("core", core), ("module", shipped))}


def run(settings: Settings) -> ScenarioResult:
    from playwright.sync_api import sync_playwright
    from traitlets.config import Config

    from telemetry_sinks.config import EXAMPLE_EVENTS, default_config
    from telemetry_sinks.server import Collector

    result = ScenarioResult("browser", "8. The browser EventLog (headless chromium)")
    n_emit = settings.pick(20_000, 5_000)
    n_deliver = settings.pick(2_000, 500)
    event = json.loads(EXAMPLE_EVENTS.read_text().splitlines()[0])  # app-launch, personal data removed
    config: Config = default_config(settings.workdir / "browser-events")
    config.Collector.port = 0
    config.Collector.client_rate_limit = 0.0
    collector = Collector(config=config)
    port = collector.start()
    sys.path.insert(0, str(REPO / "tests" / "browser"))
    from browser_env import CHROMIUM_ARGS, chromium_path  # the tests' browser set-up

    emits: list[dict[str, Any]] = []
    delivers: list[dict[str, Any]] = []
    try:
        with sync_playwright() as p, progress(2 * settings.reps, "browser", "runs", settings.progress) as bar:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            for _rep in range(settings.reps):
                for target, script, n in ((emits, EMIT_JS, n_emit), (delivers, DELIVER_JS, n_deliver)):
                    context = browser.new_context()
                    page = context.new_page()
                    page.goto(f"http://127.0.0.1:{port}/demo")
                    target.append(page.evaluate(script, [n, event]))
                    context.close()
                    bar.update(1)
            browser.close()
    finally:
        collector.stop()
    sizes = _sizes(settings.workdir)

    ours = [r["ours"] * 1000 for r in emits]
    floor = [r["floor"] * 1000 for r in emits]
    table = Table(f"emit() in the page ({n_emit:,} events of BinderHub-sized app-launch with redaction; "
                  f"median of {settings.reps}, min-max in brackets)", ["what", "µs per event", "vs floor"])
    table.add("EventLog.emit (validate, consent, redact, capsule, JSON, queue)",
              f"{fmt_num(median(ours))} ({spread(ours)})", f"{median(ours) / median(floor):.1f}x")
    table.add("floor: JSON.stringify of the same capsule", f"{fmt_num(median(floor))} ({spread(floor)})",
              "1x")
    ev_ours = [n_deliver / r["ours"] for r in delivers]
    ev_raw = [n_deliver / r["raw"] for r in delivers]
    table2 = Table(f"Delivery to the collector ({n_deliver:,} events, batches of 10, events/s)",
                   ["what", "events/s", "vs raw"])
    table2.add("EventLog: emit + flush() until acknowledged",
               f"{fmt_num(median(ev_ours))} ({spread(ev_ours)})", f"{median(ev_ours) / median(ev_raw):.2f}")
    table2.add("raw fetch of the same batches, one after the other", f"{fmt_num(median(ev_raw))} "
               f"({spread(ev_raw)})", "1")
    table3 = Table("Module size (minified, gzip -9)", ["bundle", "bytes", "budget"])
    table3.add("core (without the validator)", f"{sizes['core']:,}", "10,240")
    table3.add("all (telemetry-sinks.js)", f"{sizes['module']:,}", "30,720")
    result.tables += [table, table2, table3]
    result.targets.append(Target("browser: module size, core / all (min+gzip)",
                                 f"{sizes['core']:,} / {sizes['module']:,} bytes", "<= 10 KB / 30 KB",
                                 sizes["core"] <= 10240 and sizes["module"] <= 30720))
    result.targets.append(Target("browser: emit() cost in the page", f"{fmt_num(median(ours))} µs per event",
                                 "report", None))
    if not all(r["ok"] for r in delivers):
        result.notes.append("some delivery runs did not finish within 120 s")
    result.data = {"emit_us": ours, "floor_us": floor, "deliver_eps": ev_ours, "raw_eps": ev_raw,
                   "sizes": sizes}
    return result
