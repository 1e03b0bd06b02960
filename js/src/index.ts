/**
 * telemetry-sinks in the browser.
 *
 *   import { EventLog } from "https://collector.example.org/static/telemetry-sinks.js";
 *   const log = await EventLog.connect();
 *   log.emit({ schema_id: "https://events.example.org/ui/click", version: 1, data: { element: "run" } });
 */
export { EventLog, METADATA_VERSION, type ConnectOptions, type EmitRequest, type Endpoints } from "./eventlog";
export { Consent, consentState } from "./consent";
export { EventValidationError, UnknownSchemaError } from "./errors";
export { CollectorSink, ConsoleSink, HttpSink, type SendOptions, type SendResult, type Sink } from "./sinks";
export type { NoticeOptions } from "./notice";
export type { PersistOptions } from "./outbox";
export type { Stats } from "./channel";
export type * from "./types";
