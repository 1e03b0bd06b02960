/**
 * The JupyterLab extension of telemetry-sinks: JupyterLab's user-interface events through the
 * browser EventLog (js/src, bundled in), with the policy, the sinks and the consent modes of the
 * Jupyter Server extension, and the user's choice asked and kept inside JupyterLab.
 */
import { ILabShell, type JupyterFrontEnd, type JupyterFrontEndPlugin } from "@jupyterlab/application";
import { IDocumentWidgetOpener } from "@jupyterlab/docmanager";
import { INotebookTracker } from "@jupyterlab/notebook";
import { ServerConnection } from "@jupyterlab/services";
import { ISettingRegistry } from "@jupyterlab/settingregistry";
import type { EventLog } from "../../src/index";
import { connect, pageUrl } from "./connect";
import { ConsentPrompt } from "./consent";
import { Recorder } from "./recorder";

const PLUGIN_ID = "@telemetry-sinks/jupyterlab:plugin";
export const WHAT_IS_RECORDED = "telemetry-sinks:what-is-recorded";

async function start(app: JupyterFrontEnd, registry: ISettingRegistry, recorder: Recorder,
  openPage: () => void): Promise<EventLog | null> {
  let log: EventLog;
  try {
    log = await connect(ServerConnection.makeSettings());
  } catch (error) {
    recorder.detach();
    console.warn("telemetry-sinks: JupyterLab's events are not recorded: the server extension "
      + "telemetry_sinks.jupyter did not answer (is it enabled?):", (error as Error).message);
    return null;
  }
  recorder.attach(log);
  let settings: ISettingRegistry.ISettings | null = null;
  try {
    settings = await registry.load(PLUGIN_ID);
  } catch (error) {
    console.warn("telemetry-sinks: the settings could not be loaded:", error);
  }
  await app.restored;
  await new ConsentPrompt(log, settings, openPage).start();
  return log;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "Records how JupyterLab is used, as the server's policy allows and the user chose.",
  autoStart: true,
  requires: [ISettingRegistry],
  optional: [ILabShell, IDocumentWidgetOpener, INotebookTracker],
  activate: (app: JupyterFrontEnd, registry: ISettingRegistry, labShell: ILabShell | null,
    opener: IDocumentWidgetOpener | null, notebooks: INotebookTracker | null): void => {
    const page = pageUrl(ServerConnection.makeSettings());
    const openPage = (): void => void window.open(page, "_blank", "noopener");
    app.commands.addCommand(WHAT_IS_RECORDED, {
      label: "What is recorded",
      caption: "What this server records about how JupyterLab is used, and your choice",
      execute: openPage,
    });
    const recorder = new Recorder(app, { labShell, opener, notebooks });
    void start(app, registry, recorder, openPage).then((log) => {
      // For the browser console and tests: the live EventLog (stats(), consent).
      (window as unknown as { telemetrySinks?: EventLog | null }).telemetrySinks = log;
    });
  },
};

export default plugin;
