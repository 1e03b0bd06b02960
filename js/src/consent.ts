/**
 * The user's consent, the same table as the collector's (telemetry_sinks/server/consent.py):
 *
 *   mode       no choice   granted    denied (or Global Privacy Control)
 *   required   required    required   required
 *   opt-out    granted     granted    denied
 *   opt-in     pending     granted    denied
 *
 * Events are emitted in the states "required" and "granted" only.  The choice is stored by the
 * collector (a first-party cookie, so that it enforces it too) and mirrored in this origin's
 * storage; the collector's record wins when it has one.  Denying purges what is queued or stored.
 */
import { showNotice, type NoticeOptions } from "./notice";
import type { ConsentChoice, ConsentMode, ConsentState, Policy } from "./types";

export function consentState(mode: ConsentMode, choice: ConsentChoice, gpc: boolean): ConsentState {
  if (mode === "required") return "required";
  if (choice === "granted") return "granted";
  if (choice === "denied" || gpc) return "denied";
  return mode === "opt-out" ? "granted" : "pending";
}

export const recording = (state: ConsentState): boolean => state === "required" || state === "granted";

export interface ConsentHost {
  readonly policy: Policy;
  /** Where a choice is posted (the collector's ``/api/consent``). */
  readonly consentUrl: string;
  readonly fetcher: typeof fetch;
  readonly storage: Storage | null;
  readonly namespace: string;
  /** Forget queued and stored events that a new choice no longer permits. */
  purgeDenied(): Promise<void>;
}

type Listener = (consent: Consent) => void;

export class Consent {
  private collectorChoice: ConsentChoice;
  private localChoice: ConsentChoice = null;
  private readonly listeners = new Set<Listener>();
  private readonly key: string;
  private readonly modes = new Map<string, ConsentMode>();

  constructor(private readonly host: ConsentHost) {
    const { policy } = host;
    this.collectorChoice = policy.consent.choice;
    for (const s of policy.schemas) this.modes.set(s.id, s.consent);
    this.key = `telemetry-sinks:${host.namespace}:consent`;
    this.localChoice = this.readLocal();
    if (typeof addEventListener === "function") {
      addEventListener("storage", (event: StorageEvent) => {
        if (event.key !== this.key) return;
        this.localChoice = this.readLocal();
        this.collectorChoice = this.localChoice; // another page of this origin just chose
        void this.changed();
      });
    }
  }

  /** The default mode (schemas without their own mode). */
  get mode(): ConsentMode {
    return this.host.policy.consent.default;
  }

  /** The person's choice: "granted", "denied" or null (none yet). */
  get choice(): ConsentChoice {
    return this.collectorChoice ?? this.localChoice;
  }

  /** Global Privacy Control: sent by the browser (``Sec-GPC: 1``) or ``navigator.globalPrivacyControl``. */
  get gpc(): boolean {
    const nav = typeof navigator !== "undefined" ? (navigator as { globalPrivacyControl?: boolean }) : {};
    return this.host.policy.consent.gpc || nav.globalPrivacyControl === true;
  }

  /** The state of the default mode. */
  get state(): ConsentState {
    return consentState(this.mode, this.choice, this.gpc);
  }

  /** The state of one schema (its own mode, else the default). */
  stateFor(schemaId: string): ConsentState {
    return consentState(this.modes.get(schemaId) ?? this.mode, this.choice, this.gpc);
  }

  /** Whether any allowed schema lets the person choose (a mode other than "required"). */
  get choosable(): boolean {
    return [...this.modes.values()].some((m) => m !== "required");
  }

  grant(): Promise<boolean> {
    return this.choose("granted");
  }

  /** Turn recording off: also purges everything queued or stored that is no longer permitted. */
  deny(): Promise<boolean> {
    return this.choose("denied");
  }

  /** Forget the choice (back to each mode's default). */
  clear(): Promise<boolean> {
    return this.choose(null);
  }

  /**
   * The first-run notice (what is recorded, a link to the collector's page, the buttons the mode
   * allows); null when the person already chose or dismissed it, unless ``force``.
   */
  showNotice(options: NoticeOptions = {}): HTMLElement | null {
    const { policy, storage, namespace } = this.host;
    return showNotice(this, policy, storage, namespace, options);
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Record ``choice`` here at once, then at the collector.  Resolves true when the collector
   * stored it (its cookie); false when it could not be reached (the choice holds in this origin).
   */
  private async choose(choice: ConsentChoice): Promise<boolean> {
    this.localChoice = choice;
    this.collectorChoice = choice;
    this.writeLocal(choice);
    await this.changed();
    try {
      const response = await this.host.fetcher(this.host.consentUrl, {
        method: "POST", credentials: "include", mode: "cors",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ choice }),
      });
      return response.ok;
    } catch {
      return false;
    }
  }

  private async changed(): Promise<void> {
    await this.host.purgeDenied();
    for (const listener of this.listeners) {
      try {
        listener(this);
      } catch (error) {
        console.error(error);
      }
    }
  }

  private readLocal(): ConsentChoice {
    try {
      const value = this.host.storage?.getItem(this.key);
      return value === "granted" || value === "denied" ? value : null;
    } catch {
      return null;
    }
  }

  private writeLocal(choice: ConsentChoice): void {
    try {
      if (choice) this.host.storage?.setItem(this.key, choice);
      else this.host.storage?.removeItem(this.key);
    } catch {
      /* storage unavailable: the collector's cookie still holds the choice */
    }
  }
}
