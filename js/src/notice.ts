/**
 * The optional first-run notice: what is recorded (from the policy), a link to the collector's
 * page, and the buttons the mode allows.  Plain DOM (no innerHTML, styles through the CSSOM), so
 * it works under a strict Content-Security-Policy with Trusted Types; native buttons and Escape
 * make it keyboard usable; it is a labelled region announced politely to screen readers.
 */
import type { Consent } from "./consent";
import type { Policy } from "./types";

export interface NoticeOptions {
  /** Where the notice goes (default: the top of ``document.body``). */
  container?: HTMLElement;
  /** Show it even when the person already chose or dismissed it. */
  force?: boolean;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K, text?: string, style?: Partial<CSSStyleDeclaration>,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  if (style) Object.assign(node.style, style);
  return node;
}

export function showNotice(consent: Consent, policy: Policy, storage: Storage | null,
  namespace: string, options: NoticeOptions = {}): HTMLElement | null {
  if (typeof document === "undefined") return null;
  const seenKey = `telemetry-sinks:${namespace}:notice`;
  let seen = false;
  try {
    seen = storage?.getItem(seenKey) === "1";
  } catch { /* no storage: show it */ }
  if (!options.force && (seen || consent.choice !== null)) return null;

  const titles = [...new Set(policy.schemas.map((s) => s.title || s.id))];
  const box = el("div", undefined, {
    border: "1px solid #2f6fb3", background: "#eef6ff", color: "#1d232a", padding: "12px 16px",
    margin: "8px", borderRadius: "6px", font: "15px/1.45 system-ui, sans-serif",
  });
  box.setAttribute("role", "region");
  box.setAttribute("aria-label", "What this site records");
  box.setAttribute("aria-live", "polite");
  box.className = "telemetry-sinks-notice";
  box.append(el("strong", "This site records how it is used."));
  box.append(el("p", titles.length ? `It records: ${titles.join(", ")}. Personal data is removed unless `
    + "the operator allows it." : "It records nothing at the moment."));
  const mode = consent.mode;
  const text = !consent.choosable ? "This recording is required; there is no way to turn it off."
    : mode === "opt-in" ? "Nothing is recorded unless you allow it."
      : consent.gpc ? "Your browser asks not to be tracked (Global Privacy Control): nothing optional is "
        + "recorded unless you allow it." : "You can turn it off at any time.";
  const details = el("p", text + " ");
  const link = el("a", "What is recorded, in detail");
  link.href = policy.page;
  link.target = "_blank";
  link.rel = "noopener";
  details.append(link);
  box.append(details);

  const close = (): void => {
    try {
      storage?.setItem(seenKey, "1");
    } catch { /* ignore */ }
    box.remove();
  };
  const button = (label: string, action: () => unknown): HTMLButtonElement => {
    const b = el("button", label, { font: "inherit", marginRight: "8px", padding: "3px 12px" });
    b.type = "button";
    b.addEventListener("click", () => {
      void action();
      close();
    });
    return b;
  };
  const row = el("div");
  if (!consent.choosable) row.append(button("OK", () => null));
  else if (mode === "opt-in" || consent.gpc) {
    row.append(button("Allow", () => consent.grant()), button("No, thanks", () => consent.deny()));
  } else {
    row.append(button("OK", () => null), button("Turn off", () => consent.deny()));
  }
  box.append(row);
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
  const container = options.container ?? document.body;
  container.prepend(box);
  return box;
}
