/**
 * What JupyterLab does, as events of the four JupyterLab schemas: commands run, documents
 * opened / saved / renamed / closed, notebook cells run, and the tab that became active.
 *
 * Events that happen before the policy is loaded wait (at most ``EARLY_LIMIT``), without any
 * content; then the policy decides.  Nothing read from a notebook (its metadata, its cells)
 * changes what is recorded or where it goes: that comes from the server's policy alone.  Code
 * and outputs are read only when the policy keeps them.
 */
import type { ILabShell, JupyterFrontEnd } from "@jupyterlab/application";
import type { IDocumentWidgetOpener } from "@jupyterlab/docmanager";
import type { DocumentRegistry, IDocumentWidget } from "@jupyterlab/docregistry";
import { NotebookActions, type INotebookTracker, type Notebook } from "@jupyterlab/notebook";
import type { Widget } from "@lumino/widgets";
import type { EventLog, PolicySchema } from "../../src/index";
import type { LabPolicy } from "./connect";

const BASE = "https://events.telemetry-sinks.org/jupyterlab/";
export const SCHEMAS = {
  command: `${BASE}command-executed`,
  document: `${BASE}document`,
  cell: `${BASE}cell-executed`,
  panel: `${BASE}active-panel`,
} as const;

const EARLY_LIMIT = 200;
const CONTENT_LIMIT = 16384;

type Data = Record<string, unknown>;

interface Pending {
  schema: string;
  data: Data;
  time: Date;
}

export interface Sources {
  labShell: ILabShell | null;
  opener: IDocumentWidgetOpener | null;
  notebooks: INotebookTracker | null;
}

function randomId(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function primitive(value: unknown): boolean {
  return typeof value === "string" || typeof value === "number" || typeof value === "boolean";
}

/**
 * Whether the policy of ``spec`` keeps property ``name`` in some form: the server's compiled plan
 * does not drop it (what it pseudonymizes or generalizes, the server does), else its categories
 * are allowed or it is named.
 */
export function keeps(spec: PolicySchema | undefined, name: string): boolean {
  if (!spec) return false;
  const planned = spec.redaction?.properties;
  if (planned) return planned[name]?.action !== "drop";
  const prop = (spec.schema.properties as Record<string, { categories?: string[] }> | undefined)?.[name];
  const categories = (prop?.categories ?? []).map((c) => c.slice(c.lastIndexOf("/") + 1))
    .filter((c) => c !== "unrestricted");
  return spec.allowed_properties.includes(name)
    || categories.every((c) => spec.allowed_categories.includes(c));
}

/** ``text`` cut to ``limit`` UTF-16 units, and whether it was cut. */
function cut(text: string, limit: number): [string, boolean] {
  return text.length > limit ? [text.slice(0, limit), true] : [text, false];
}

export class Recorder {
  private log: EventLog | null = null;
  private early: Pending[] | null = [];
  private readonly specs = new Map<string, PolicySchema>();
  private readonly ids = new WeakMap<DocumentRegistry.Context, string>();
  private readonly paths = new WeakMap<DocumentRegistry.Context, string>();
  private readonly watched = new WeakSet<DocumentRegistry.Context>();
  private readonly scheduled = new WeakMap<object, number>();
  private ignored: RegExp | null = null;
  private failures = 0;

  constructor(private readonly app: JupyterFrontEnd, private readonly sources: Sources) {
    app.commands.commandExecuted.connect(this.onCommand, this);
    sources.opener?.opened.connect((_, widget) => this.onOpened(widget));
    sources.labShell?.currentChanged.connect((_, { newValue }) => newValue && this.onActive(newValue));
    NotebookActions.executionScheduled.connect((_, { cell }) => this.scheduled.set(cell.model, performance.now()));
    NotebookActions.executed.connect((_, args) => void this.onExecuted(args));
  }

  /** The policy is loaded: send what waited, then every event as it happens. */
  attach(log: EventLog): void {
    for (const spec of log.policy.schemas) this.specs.set(spec.id, spec);
    const patterns = (log.policy as LabPolicy).commands?.ignored ?? [];
    const glob = (p: string): string => p.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
    this.ignored = patterns.length ? new RegExp(`^(?:${patterns.map(glob).join("|")})$`) : null;
    this.log = log;
    const early = this.early ?? [];
    this.early = null;
    for (const { schema, data, time } of early) this.send(schema, data, time);
  }

  /** No policy (the server extension is missing or failed): nothing is kept. */
  detach(): void {
    this.early = null;
    this.specs.clear();
  }

  private recorded(schema: string): boolean {
    return this.early !== null || this.specs.has(schema);
  }

  private send(schema: string, data: Data, time = new Date()): void {
    if (this.early) {
      if (this.early.length < EARLY_LIMIT) this.early.push({ schema, data, time });
      return;
    }
    if (!this.log || !this.specs.has(schema)) return;
    if (schema === SCHEMAS.command) {
      if (this.ignored?.test(String(data.command))) return;
      data = { ...data, args: this.listedArgs(data.args as Data) };
    }
    try {
      this.log.emit({ schema_id: schema, data, timestamp: time });
    } catch (error) {
      if (this.failures++ < 5) console.warn("telemetry-sinks: an event was not recorded:", error);
    }
  }

  /** The arguments the command schema lists (primitive values only); never any other. */
  private listedArgs(args: Data | undefined): Data {
    const spec = this.specs.get(SCHEMAS.command);
    const props = (spec?.schema.properties as { args?: { properties?: Data } } | undefined)?.args?.properties;
    const out: Data = {};
    for (const name of Object.keys(props ?? {})) {
      if (args && primitive(args[name])) out[name] = args[name];
    }
    return out;
  }

  // ------------------------------------------------------------------ commands

  private onCommand(_: unknown, { id, args, result }: { id: string; args: unknown; result: Promise<unknown> }): void {
    if (!this.recorded(SCHEMAS.command)) return;
    const start = performance.now();
    const time = new Date();
    // A copy of the primitive arguments: the policy (when it comes) picks the listed ones.
    const given: Data = {};
    for (const [name, value] of Object.entries((args ?? {}) as Data)) if (primitive(value)) given[name] = value;
    const done = (status: string): void => this.send(SCHEMAS.command, {
      command: id.slice(0, 200), status, duration_ms: Math.round(performance.now() - start), args: given,
    }, time);
    result.then(() => done("ok"), () => done("error"));
  }

  // ------------------------------------------------------------------ documents

  private documentId(context: DocumentRegistry.Context): string {
    let id = this.ids.get(context);
    if (!id) this.ids.set(context, (id = randomId()));
    return id;
  }

  private fileType(path: string): string | undefined {
    return this.app.docRegistry.getFileTypesForPath(path)[0]?.name;
  }

  private documentData(action: string, context: DocumentRegistry.Context): Data {
    const data: Data = { action, document_id: this.documentId(context), path: context.path };
    const type = this.fileType(context.path);
    if (type) data.file_type = type;
    return data;
  }

  private onOpened(widget: IDocumentWidget): void {
    const { context } = widget;
    if (!this.recorded(SCHEMAS.document)) return;
    this.send(SCHEMAS.document, this.documentData("opened", context));
    widget.disposed.connect(() => this.send(SCHEMAS.document, this.documentData("closed", context)));
    if (this.watched.has(context)) return;
    this.watched.add(context);
    this.paths.set(context, context.path);
    context.saveState.connect((_, state) => {
      if (state === "completed") this.send(SCHEMAS.document, this.documentData("saved", context));
    });
    context.pathChanged.connect((_, path) => {
      const before = this.paths.get(context);
      this.paths.set(context, path);
      if (before === path) return;
      this.send(SCHEMAS.document, { ...this.documentData("renamed", context), ...(before ? { old_path: before } : {}) });
    });
  }

  // ------------------------------------------------------------------ the active tab

  private onActive(widget: Widget): void {
    if (!this.recorded(SCHEMAS.panel)) return;
    const context = (widget as unknown as Partial<IDocumentWidget>).context;
    const content = (widget as { content?: Widget }).content;
    const has = (name: string): boolean => widget.hasClass(name) || !!content?.hasClass(name);
    const kind = has("jp-NotebookPanel") ? "notebook"
      : has("jp-FileEditor") ? "editor"
        : context ? "document"
          : has("jp-ConsolePanel") ? "console"
            : has("jp-Terminal") ? "terminal"
              : has("jp-Launcher") ? "launcher"
                : has("jp-SettingEditor") || has("jp-SettingsPanel") ? "settings" : "other";
    const data: Data = { kind };
    if (context) {
      data.document_id = this.documentId(context);
      data.path = context.path;
      const type = this.fileType(context.path);
      if (type) data.file_type = type;
    }
    this.send(SCHEMAS.panel, data);
  }

  // ------------------------------------------------------------------ cells

  private async onExecuted(args: { notebook: Notebook; cell: { model: any }; success: boolean;
    error?: { errorName?: string } | null }): Promise<void> {
    const { notebook, cell, success, error } = args;
    if (!this.recorded(SCHEMAS.cell) || cell.model.type !== "code") return;
    const started = this.scheduled.get(cell.model);
    const now = performance.now();
    const time = new Date();
    const panel = this.sources.notebooks?.find((p) => p.content === notebook) ?? null;
    const kernel = panel?.sessionContext.session?.kernel ?? null;
    const area = cell.model.outputs as { length: number; get(i: number): { type: string }; toJSON(): Data[] };
    const types = new Set<string>();
    for (let i = 0; i < area.length && types.size < 100; i++) types.add(String(area.get(i).type).slice(0, 50));
    const data: Data = { status: success ? "ok" : error ? "error" : "aborted", output_types: [...types] };
    if (started !== undefined) data.duration_ms = Math.round(now - started);
    if (typeof cell.model.executionCount === "number" || cell.model.executionCount === null) {
      data.execution_count = cell.model.executionCount;
    }
    if (kernel) data.kernel_name = kernel.name;
    if (panel) {
      data.document_id = this.documentId(panel.context);
      data.path = panel.context.path;
    }
    // Content only when the policy keeps it: otherwise it is never even read.
    const spec = this.specs.get(SCHEMAS.cell);
    let truncated = false;
    if (keeps(spec, "code")) {
      const [code, cutCode] = cut(String(cell.model.sharedModel?.getSource?.() ?? ""), CONTENT_LIMIT);
      data.code = code;
      truncated ||= cutCode;
    }
    if (keeps(spec, "outputs")) {
      const outputs = area.toJSON();
      const kept: Data[] = [];
      let size = 0;
      for (const output of outputs.slice(0, 100)) {
        size += JSON.stringify(output).length;
        if (size > CONTENT_LIMIT) {
          truncated = true;
          break;
        }
        kept.push(output);
      }
      data.outputs = kept;
      truncated ||= outputs.length > 100;
    }
    if (keeps(spec, "error_name") && error?.errorName) data.error_name = String(error.errorName).slice(0, 200);
    if (truncated) data.truncated = true;
    try {
      const info = kernel ? await Promise.race([kernel.info, new Promise<null>((r) => setTimeout(() => r(null), 1000))]) : null;
      const language = (info as { language_info?: { name?: string } } | null)?.language_info?.name;
      if (language) data.language = String(language).slice(0, 100);
    } catch {
      /* no kernel info: no language */
    }
    this.send(SCHEMAS.cell, data, time);
  }
}
