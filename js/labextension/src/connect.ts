/**
 * The browser EventLog connected to the Jupyter Server extension: its endpoints under the
 * server's base URL, requested with Jupyter's own authentication (the page's token, the login
 * cookie, the XSRF header) through ServerConnection.
 */
import { URLExt } from "@jupyterlab/coreutils";
import { ServerConnection } from "@jupyterlab/services";
import { EventLog, type Endpoints, type Policy } from "../../src/index";

export const PAGE_PATH = "telemetry";

/**
 * The policy of the Jupyter Server extension: the collector's, whether the administrator made
 * the choice for everyone, and the commands not recorded (patterns with ``*``).
 */
export type LabPolicy = Policy & {
  consent: Policy["consent"] & { locked?: boolean };
  commands?: { ignored?: string[] };
};

function cookie(name: string): string | null {
  const match = document.cookie.match(`\\b${name}=([^;]*)\\b`);
  return match ? match[1] : null;
}

export function pageUrl(settings: ServerConnection.ISettings): string {
  return URLExt.join(settings.baseUrl, PAGE_PATH);
}

export function endpoints(settings: ServerConnection.ISettings): Endpoints {
  const api = (name: string): string => URLExt.join(settings.baseUrl, "api/telemetry", name);
  const events = api("events");
  // A beacon carries no headers: Jupyter takes the XSRF token from the query (as for downloads).
  const xsrf = cookie("_xsrf");
  return {
    policy: api("policy"),
    events,
    consent: api("consent"),
    beacon: xsrf ? `${events}?_xsrf=${encodeURIComponent(xsrf)}` : null,
  };
}

export async function connect(settings: ServerConnection.ISettings): Promise<EventLog> {
  const fetcher = ((input: RequestInfo | URL, init?: RequestInit) =>
    ServerConnection.makeRequest(String(input), init ?? {}, settings)) as typeof fetch;
  return EventLog.connect({
    collector: new URL(settings.baseUrl, location.href).href,
    endpoints: endpoints(settings),
    fetch: fetcher,
    persist: true,
  });
}
