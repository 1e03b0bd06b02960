/**
 * The collector's demo page (GET /demo): connects to the collector that served it, shows the
 * consent state, and emits the bundled example events on demand.  Every capsule that leaves the
 * page is shown by a small page sink: an example of the sink interface.
 */
import { EventLog, type EmitRequest, type Envelope, type SendResult, type Sink } from "./index";

const $ = (id: string): HTMLElement => document.getElementById(id) as HTMLElement;

function line(text: string, error = false): void {
  const row = document.createElement("div");
  row.textContent = text;
  if (error) row.className = "error";
  $("log").append(row);
}

/** Shows each capsule exactly as the other sinks send it. */
class PageSink implements Sink {
  readonly name = "demo-page";
  async send(batch: readonly Envelope[]): Promise<SendResult> {
    for (const e of batch) line(e.json);
    return { ok: true };
  }
}

function button(label: string, onClick: () => unknown): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", () => void onClick());
  return b;
}

async function main(): Promise<void> {
  const examples = JSON.parse($("examples").textContent || "[]") as EmitRequest[];
  let log: EventLog;
  try {
    log = await EventLog.connect({ collector: location.origin, sinks: [new PageSink()], notice: true });
  } catch (error) {
    $("status").textContent = String((error as Error).message);
    return;
  }
  const showState = (): void => {
    const ids = log.recordedSchemas.map((s) => `${s.id}: ${log.consent.stateFor(s.id)}`);
    $("status").textContent = `Connected. Consent (${log.consent.mode} by default): ${log.consent.state}. `
      + `Per kind of event: ${ids.join("; ") || "none recorded"}.`;
  };
  showState();
  log.consent.onChange(showState);
  $("consent").append(
    button("Allow recording", () => log.consent.grant()),
    button("Turn recording off", () => log.consent.deny()),
  );
  const emit = (event: EmitRequest, n: number): void => {
    try {
      const capsule = log.emit(event);
      line(capsule ? `example ${n}: emitted` : `example ${n}: not recorded (policy, consent or sampling)`);
    } catch (error) {
      line(`example ${n}: ${(error as Error).message}`, true);
    }
  };
  examples.forEach((event, index) => {
    $("examples-buttons").append(button(`Emit example ${index + 1}`, () => emit(event, index + 1)));
  });
  $("examples-buttons").append(button("Emit all", () => examples.forEach((e, i) => emit(e, i + 1))));
  $("flush").addEventListener("click", async () => {
    line((await log.flush()) ? "flush: the collector acknowledged everything" : "flush: not yet acknowledged");
  });
  (window as unknown as { telemetryLog: EventLog }).telemetryLog = log;
}

void main();
