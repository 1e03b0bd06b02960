/**
 * Validation against the schemas the collector publishes, with @cfworker/json-schema
 * (an interpreter: no eval or new Function, so it runs under a strict Content-Security-Policy).
 * Formats are not checked, as in the Python EventLog.
 */
import { Validator, type OutputUnit, type SchemaDraft } from "@cfworker/json-schema";
import { isObject } from "./util";
import type { JsonSchema } from "./types";

export interface Violation {
  /** Keys and indexes from the event's top to the offending value. */
  parts: (string | number)[];
  reason: string;
}

export type Check = (instance: unknown) => Violation | null;

function draftOf(schema: JsonSchema): SchemaDraft {
  const uri = typeof schema.$schema === "string" ? schema.$schema : "";
  if (uri.includes("draft-04")) return "4";
  if (uri.includes("2019-09")) return "2019-09";
  if (uri.includes("2020-12")) return "2020-12";
  return "7";
}

/** A copy of ``node`` without ``format`` keywords (string-valued: a property named "format" stays). */
function withoutFormats(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutFormats);
  if (!isObject(node)) return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === "format" && typeof value === "string") continue;
    out[key] = withoutFormats(value);
  }
  return out;
}

function decode(location: string, instance: unknown): (string | number)[] {
  const parts: (string | number)[] = [];
  let here: unknown = instance;
  for (const raw of location.replace(/^#\/?/, "").split("/")) {
    if (raw === "") continue;
    const token = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
    if (Array.isArray(here) && /^\d+$/.test(token)) {
      parts.push(Number(token));
      here = here[Number(token)];
    } else {
      parts.push(token);
      here = isObject(here) ? here[token] : undefined;
    }
  }
  return parts;
}

const GENERIC = /^(properties|items|prefixItems|additionalProperties|allOf|\$ref|unevaluatedProperties)$/;

/** The most precise error: the deepest instance location, a leaf keyword rather than a container. */
function best(errors: OutputUnit[]): OutputUnit {
  let pick = errors[0];
  for (const e of errors) {
    const deeper = e.instanceLocation.length > pick.instanceLocation.length;
    const sameButLeaf = e.instanceLocation.length === pick.instanceLocation.length
      && GENERIC.test(pick.keyword) && !GENERIC.test(e.keyword);
    if (deeper || sameButLeaf) pick = e;
  }
  return pick;
}

export function compile(schema: JsonSchema): Check {
  const validator = new Validator(withoutFormats(schema) as never, draftOf(schema), true);
  return (instance) => {
    const result = validator.validate(instance);
    if (result.valid) return null;
    const e = best(result.errors);
    return { parts: decode(e.instanceLocation, instance), reason: e.error };
  };
}
