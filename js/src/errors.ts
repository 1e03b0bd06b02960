/** Errors thrown to the caller of ``emit()``: each names the schema and the fix. */

/** An event does not match its schema; nothing was sent to any sink. */
export class EventValidationError extends Error {
  readonly schemaId: string;
  readonly version: number;
  /** JSON path of the offending value, e.g. ``$.client.ip``. */
  readonly path: string;
  readonly reason: string;

  constructor(schemaId: string, version: number, path: string, reason: string) {
    super(`Event for schema '${schemaId}' version ${version} is invalid at ${path}: ${reason}`);
    this.name = "EventValidationError";
    this.schemaId = schemaId;
    this.version = version;
    this.path = path;
    this.reason = reason;
  }
}

/** The event names a schema or version the collector's policy does not know. */
export class UnknownSchemaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnknownSchemaError";
  }
}
