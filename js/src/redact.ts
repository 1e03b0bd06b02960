/**
 * Removal of personal data by category, the Python policy's rules: a property is kept when all
 * of its categories are allowed, or when it is named in ``allowed_properties`` (top level, kept
 * whole); nested objects and arrays of objects are filtered by the categories of their own level.
 */
import { isObject, normalizeCategory, UNRESTRICTED } from "./util";
import type { JsonSchema } from "./types";

export interface CategoryTree {
  categories: Map<string, Set<string>>;
  children: Map<string, CategoryTree>;
  arrays: Map<string, CategoryTree>;
}

export interface Plan {
  drop: string[];
  children: [string, Plan][];
  arrays: [string, Plan][];
}

function trivial(t: CategoryTree): boolean {
  return t.categories.size === 0 && [...t.children.values(), ...t.arrays.values()].every(trivial);
}

/** Per-level categories of a schema's properties. */
export function categoryTree(node: JsonSchema): CategoryTree {
  const tree: CategoryTree = { categories: new Map(), children: new Map(), arrays: new Map() };
  const props = node.properties;
  if (!isObject(props)) return tree;
  for (const [name, sub] of Object.entries(props)) {
    if (!isObject(sub)) continue;
    const raw = Array.isArray(sub.categories) ? sub.categories : [];
    const cats = new Set(raw.filter((c): c is string => typeof c === "string").map(normalizeCategory));
    cats.delete(UNRESTRICTED);
    if (cats.size) tree.categories.set(name, cats);
    if (isObject(sub.properties)) {
      const child = categoryTree(sub);
      if (!trivial(child)) tree.children.set(name, child);
    }
    if (isObject(sub.items) && isObject((sub.items as JsonSchema).properties)) {
      const child = categoryTree(sub.items as JsonSchema);
      if (!trivial(child)) tree.arrays.set(name, child);
    }
  }
  return tree;
}

/** Values of every personal property, as texts (validation errors must not quote them). */
export function personalTexts(data: unknown, tree: CategoryTree, out: string[] = []): string[] {
  if (!isObject(data)) return out;
  const leaves = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(leaves);
    else if (isObject(value)) Object.values(value).forEach(leaves);
    else if (value !== null && value !== undefined && typeof value !== "boolean") out.push(String(value));
  };
  for (const name of tree.categories.keys()) if (name in data) leaves(data[name]);
  for (const [name, child] of tree.children) if (!tree.categories.has(name)) personalTexts(data[name], child, out);
  for (const [name, child] of tree.arrays) {
    const items = data[name];
    if (!tree.categories.has(name) && Array.isArray(items)) for (const item of items) personalTexts(item, child, out);
  }
  return out;
}

/** The plan removing what is not allowed; null when nothing would be removed. */
export function compilePlan(
  tree: CategoryTree,
  allowedCategories: ReadonlySet<string>,
  allowedProperties: ReadonlySet<string>,
  top = true,
): Plan | null {
  const keptWhole = top ? allowedProperties : new Set<string>();
  const drop: string[] = [];
  for (const [name, cats] of tree.categories) {
    if (keptWhole.has(name)) continue;
    for (const c of cats) {
      if (!allowedCategories.has(c)) {
        drop.push(name);
        break;
      }
    }
  }
  const nested = (children: Map<string, CategoryTree>): [string, Plan][] => {
    const plans: [string, Plan][] = [];
    for (const [name, child] of children) {
      if (keptWhole.has(name) || drop.includes(name)) continue;
      const plan = compilePlan(child, allowedCategories, allowedProperties, false);
      if (plan) plans.push([name, plan]);
    }
    return plans;
  };
  const plan: Plan = { drop, children: nested(tree.children), arrays: nested(tree.arrays) };
  return plan.drop.length || plan.children.length || plan.arrays.length ? plan : null;
}

/** Apply ``plan`` to ``data`` in place (``data`` is the EventLog's own copy of the event). */
export function applyPlan(data: Record<string, unknown>, plan: Plan): void {
  for (const name of plan.drop) delete data[name];
  for (const [name, child] of plan.children) {
    const value = data[name];
    if (isObject(value)) applyPlan(value, child);
  }
  for (const [name, child] of plan.arrays) {
    const items = data[name];
    if (Array.isArray(items)) for (const item of items) if (isObject(item)) applyPlan(item, child);
  }
}

/** One property of the collector's compiled plan (``EventLog.describe_redaction``): an action, or nesting. */
export interface RedactionEntry {
  action?: string;
  properties?: Record<string, RedactionEntry>;
  items?: { properties?: Record<string, RedactionEntry> };
}

/**
 * A destination's plan from the collector's: what the collector drops is dropped for every sink;
 * what it pseudonymizes or generalizes goes as it is to the collector only, which does it before
 * any of its own sinks (a page never holds the pseudonym key), and is dropped for every other sink.
 */
export function planFromDescription(props: Record<string, RedactionEntry>, collector: boolean): Plan | null {
  const plan: Plan = { drop: [], children: [], arrays: [] };
  for (const [name, entry] of Object.entries(props)) {
    if (entry.action) {
      if (entry.action === "drop" || (!collector && entry.action !== "keep")) plan.drop.push(name);
      continue;
    }
    const child = isObject(entry.properties) ? planFromDescription(entry.properties, collector) : null;
    if (child) plan.children.push([name, child]);
    const items = isObject(entry.items) && isObject(entry.items.properties)
      ? planFromDescription(entry.items.properties, collector) : null;
    if (items) plan.arrays.push([name, items]);
  }
  return plan.drop.length || plan.children.length || plan.arrays.length ? plan : null;
}

const CUT: Record<string, [number, string]> = {
  second: [19, ".000000Z"], minute: [16, ":00.000000Z"], hour: [13, ":00:00.000000Z"],
  day: [10, "T00:00:00.000000Z"], month: [8, "01T00:00:00.000000Z"], year: [5, "01-01T00:00:00.000000Z"],
};

/** A capsule time (``formatTimestamp``'s form) rounded down to ``unit`` in UTC, as the collector does. */
export function roundTimestamp(text: string, unit: string): string {
  const cut = CUT[unit];
  return cut ? text.slice(0, cut[0]) + cut[1] : text;
}
