/** Shapes shared by the modules: the collector's policy document, capsules, envelopes. */
import type { RedactionEntry } from "./redact";

export type ConsentMode = "required" | "opt-out" | "opt-in";
export type ConsentState = "granted" | "denied" | "pending" | "required";
export type ConsentChoice = "granted" | "denied" | null;

/** A JSON Schema document (the collector's registered schema, verbatim). */
export type JsonSchema = { [keyword: string]: unknown };

/** What is recorded: the same fields as the Python EventLog's capsules. */
export interface Capsule {
  __timestamp__: string;
  __schema__: string;
  __schema_version__: number;
  __metadata_version__: number;
  [field: string]: unknown;
}

/** One allowed schema version, as ``GET /api/policy`` publishes it. */
export interface PolicySchema {
  id: string;
  version: number;
  title: string;
  consent: ConsentMode;
  state: ConsentState;
  sample_rate: number;
  allowed_categories: string[];
  allowed_properties: string[];
  schema: JsonSchema;
  /** The collector's compiled plan for this version (``EventLog.describe_redaction``), when it has one. */
  redaction?: {
    timestamp: { unit?: string } | null;
    properties: Record<string, RedactionEntry>;
  };
}

export type SinkSpec =
  | { type: "collector" }
  | { type: "console" }
  | { type: "http"; url: string; format: "json" | "ndjson" };

/** The collector's ``GET /api/policy`` document. */
export interface Policy {
  policy_version: number;
  page: string;
  consent: { default: ConsentMode; choice: ConsentChoice; choice_time: number | null; gpc: boolean };
  schemas: PolicySchema[];
  not_recorded: string[];
  sinks: SinkSpec[];
  limits: { max_body_bytes: number; max_events_per_request: number };
}

/** A capsule on its way to a sink: its event id and its JSON (with ``__event_id__``), encoded once. */
export interface Envelope {
  readonly id: string;
  readonly schema: string;
  /** ``JSON.stringify`` of the capsule plus ``__event_id__``: exactly what is sent. */
  readonly json: string;
  /** UTF-8 length of ``json``. */
  readonly bytes: number;
  /** When it was emitted (ms since the epoch). */
  readonly time: number;
}
