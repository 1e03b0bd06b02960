/** Small helpers with no dependencies. */

/** UTF-8 byte length of a string, without encoding it. */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** ``n`` random bytes as hex (crypto.getRandomValues works outside secure contexts too). */
export function randomHex(n: number): string {
  const bytes = new Uint8Array(n);
  if (typeof crypto !== "undefined" && crypto.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256);
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** ISO 8601 UTC with microseconds and a ``Z``, the Python EventLog's format. */
export function formatTimestamp(when: Date): string {
  const iso = when.toISOString(); // 2025-01-31T12:00:00.123Z
  return iso.slice(0, -1) + "000Z";
}

/** A JSON path such as ``$.client.ip`` or ``$.items[0]`` (the Python EventLog's notation). */
export function jsonPath(parts: readonly (string | number)[]): string {
  let out = "$";
  for (const part of parts) {
    if (typeof part === "number") out += `[${part}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) out += `.${part}`;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

/** 32-bit FNV-1a hash, for deterministic sampling. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** ``category.jupyter.org/user-identifier`` and ``user-identifier`` are the same category. */
export function normalizeCategory(label: string): string {
  const i = label.lastIndexOf("/");
  return i < 0 ? label : label.slice(i + 1);
}

export const UNRESTRICTED = "unrestricted";

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export const warn = (...args: unknown[]): void => {
  if (typeof console !== "undefined") console.warn("telemetry-sinks:", ...args);
};
