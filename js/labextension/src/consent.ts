/**
 * The user's choice inside JupyterLab, from the server's policy, in JupyterLab's own pattern
 * (its news announcements): a notification that stays until answered, and a setting with
 * three states ("none": not decided, "granted", "denied") that the user can change later and
 * the administrator can preset (overrides.json).  The server keeps the choice per Jupyter user
 * and enforces it; the administrator can also make it for everyone there
 * (c.JupyterLabTelemetry.locked_consent), and then JupyterLab does not ask.
 *
 *   the server has a choice            -> the setting follows it
 *   no choice, the setting is preset   -> the preset goes to the server (not a "granted" under
 *                                         Global Privacy Control)
 *   no choice, no preset               -> the notification asks (not under Global Privacy Control)
 */
import { Notification } from "@jupyterlab/apputils";
import type { ISettingRegistry } from "@jupyterlab/settingregistry";
import type { ConsentChoice, EventLog } from "../../src/index";
import type { LabPolicy } from "./connect";

export type Setting = "none" | "granted" | "denied";
const SEEN_KEY = "telemetry-sinks:jupyterlab:informed";

const toSetting = (choice: ConsentChoice): Setting => choice ?? "none";

export class ConsentPrompt {
  private notification: string | null = null;
  private readonly locked: boolean;

  constructor(
    private readonly log: EventLog,
    private readonly settings: ISettingRegistry.ISettings | null,
    private readonly openPage: () => void,
  ) {
    this.locked = (log.policy as LabPolicy).consent.locked === true;
    log.consent.onChange(() => this.mirror());
    settings?.changed.connect(() => void this.onSetting());
  }

  private get setting(): Setting {
    const value = this.settings?.composite.consent;
    return value === "granted" || value === "denied" ? value : "none";
  }

  /** Reconcile the server's choice and the setting, then ask if the policy wants an answer. */
  async start(): Promise<void> {
    const { consent } = this.log;
    if (!this.log.recordedSchemas.length) return; // nothing is recorded: nothing to ask or say
    if (this.locked) {
      this.inform(consent.choice === "granted"
        ? "Your administrator allowed JupyterLab to record how it is used here, for everyone."
        : "Your administrator turned off the recording of how JupyterLab is used here, for everyone.");
      return;
    }
    // The server's record decides: the setting is its mirror (and JupyterLab's settings belong to
    // the server, so on a server shared by several Jupyter users they may hold another's choice).
    const preset = this.settings?.user.consent === undefined ? this.setting : "none";
    if ((this.log.policy as LabPolicy).consent.choice !== null) {
      await this.mirror();
    } else if (preset !== "none" && !(consent.gpc && preset === "granted")) {
      await this.choose(preset); // the administrator's preset (overrides.json); GPC outweighs a "granted"
    } else {
      if (this.settings?.user.consent !== undefined) await this.settings.remove("consent").catch(() => undefined);
      if (!consent.choosable) {
        this.inform("JupyterLab records how it is used here, as the operator requires. Personal data is "
          + "left out unless the operator keeps it.");
      } else if (!consent.gpc) {
        this.ask();
      }
    }
  }

  private pageAction(): Notification.IAction {
    return {
      label: "What is recorded",
      caption: "Open the server's page: what is recorded, where it goes, and your choice",
      displayType: "link",
      callback: (event: Event) => {
        event.preventDefault(); // the notification stays
        this.openPage();
      },
    };
  }

  /** JupyterLab shows at most 140 characters of a notification: the page tells the rest. */
  private ask(): void {
    const optIn = this.log.policy.schemas.some((s) => s.consent === "opt-in");
    const message = optIn
      ? "May JupyterLab record how you use it here? Nothing is recorded unless you allow it. "
        + "Personal data is left out unless the operator keeps it."
      : "JupyterLab records how you use it here, unless you say no. Personal data is left out "
        + "unless the operator keeps it.";
    this.notification = Notification.emit(message, "default", {
      autoClose: false,
      actions: [
        this.pageAction(),
        { label: "Do not record", displayType: "default", callback: () => void this.choose("denied") },
        { label: "Allow", displayType: "accent", callback: () => void this.choose("granted") },
      ],
    });
  }

  /** Required recording, or the administrator's choice: said once, with the page. */
  private inform(message: string): void {
    try {
      if (localStorage.getItem(SEEN_KEY) === message) return;
    } catch { /* no storage: say it */ }
    Notification.emit(message, "info", {
      autoClose: false,
      actions: [this.pageAction(), { label: "OK", callback: () => {
        try {
          localStorage.setItem(SEEN_KEY, message);
        } catch { /* ignore */ }
      } }],
    });
  }

  private async choose(value: Setting): Promise<void> {
    if (this.notification) Notification.dismiss(this.notification);
    this.notification = null;
    const { consent } = this.log;
    const stored = await (value === "granted" ? consent.grant() : value === "denied" ? consent.deny() : consent.clear());
    if (!stored) console.warn("telemetry-sinks: the server did not store the choice; it holds in this browser");
  }

  /** The setting follows the choice (the server's, or this page's latest). */
  private async mirror(): Promise<void> {
    const choice = toSetting(this.log.consent.choice);
    if (!this.settings || this.locked || this.setting === choice) return;
    try {
      await this.settings.set("consent", choice);
    } catch (error) {
      console.warn("telemetry-sinks: the setting could not be saved:", error);
    }
  }

  /** The user changed the setting (the Settings Editor). */
  private async onSetting(): Promise<void> {
    const value = this.setting;
    if (value === toSetting(this.log.consent.choice)) return;
    if (this.locked) {
      Notification.warning("Your administrator made this choice for everyone; the setting has no effect.",
        { autoClose: 5000 });
      return;
    }
    await this.choose(value);
  }
}
