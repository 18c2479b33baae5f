/** Small pieces every view uses. */
import { html } from "htm/preact";
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

/** Navigates within the console (hash routes: #/keys, #/keys/<key>, #/live, #/cluster). */
export function go(hash: string): void {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

/** An error in words, announced to screen readers; nothing when `error` is null. */
export function ErrorBox(props: { error: string | null }) {
  if (props.error === null) return null;
  return html`<p class="error" role="alert" data-testid="error">${props.error}</p>`;
}

/** Percent-decodes a route's key back to bytes. */
export function bytesOfPath(s: string): Uint8Array {
  const out: number[] = [];
  const raw = new TextEncoder().encode(s);
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (b === 0x25 && i + 2 < raw.length && /^[0-9A-Fa-f]{2}$/.test(String.fromCharCode(raw[i + 1]!, raw[i + 2]!))) {
      out.push(Number.parseInt(String.fromCharCode(raw[i + 1]!, raw[i + 2]!), 16));
      i += 2;
    } else out.push(b);
  }
  return new Uint8Array(out);
}

/**
 * A confirmation before an action that cannot be undone: the question, the action's button and Cancel.
 * Cancel takes the focus when it opens (a stray Enter cancels rather than acts), and Escape cancels.
 */
export function Confirm(props: {
  label: string;
  action: string;
  busy?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
  children: ComponentChildren;
}) {
  const cancel = useRef<HTMLButtonElement>(null);
  useEffect(() => cancel.current?.focus(), []);
  return html`<div class="confirm" role="alertdialog" aria-label=${props.label}
    onKeyDown=${(e: KeyboardEvent) => e.key === "Escape" && props.onCancel()}>
    <p>${props.children}</p>
    <button type="button" class="danger" onClick=${props.onConfirm} disabled=${props.busy === true}>${props.action}</button>
    <button type="button" ref=${cancel} onClick=${props.onCancel}>Cancel</button>
  </div>`;
}
