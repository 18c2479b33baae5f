/** Small pieces every view uses. */
import { html } from "htm/preact";

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
