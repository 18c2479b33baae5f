/**
 * The Piccolo web console: a single page served by the Cerializer at /ui
 * (src/cerializer/routes/console.ts), talking only to that same gateway.
 * Three views behind hash routes, so the back button and bookmarks work and
 * the gateway serves one page: Keys (#/keys, #/keys/<key>), Live (#/live)
 * and Cluster (#/cluster). docs/console.md.
 */
import { html } from "htm/preact";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { signIn, signOut, signedInAs } from "./api.js";
import { ClusterView } from "./cluster.js";
import { KeysView } from "./keys.js";
import { LiveView } from "./live.js";
import { ErrorBox, bytesOfPath } from "./ui.js";

type Route = { view: "keys"; open: Uint8Array | null; creating: boolean } | { view: "live" } | { view: "cluster" };

function parse(hash: string): Route {
  const h = hash.replace(/^#\/?/, "");
  if (h === "live") return { view: "live" };
  if (h === "cluster") return { view: "cluster" };
  if (h.startsWith("keys/")) {
    const rest = h.slice("keys/".length);
    if (rest === "+new") return { view: "keys", open: null, creating: true };
    if (rest !== "") return { view: "keys", open: bytesOfPath(rest), creating: false };
  }
  return { view: "keys", open: null, creating: false };
}

const THEMES = ["auto", "light", "dark"] as const;
type Theme = (typeof THEMES)[number];

function applyTheme(t: Theme): void {
  if (t === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
}

function SignIn() {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const user = signedInAs();
  if (user !== null)
    return html`<span class="user">Signed in as <strong>${user}</strong>
      <button type="button" onClick=${async () => {
        await signOut();
        location.reload();
      }}>Sign out</button></span>`;
  if (!open)
    return html`<span class="user"><span class="muted">anonymous</span>
      <button type="button" onClick=${() => setOpen(true)}>Sign in</button></span>`;
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await signIn(name, password);
      location.reload();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return html`<form class="signin" onSubmit=${submit} aria-label="Sign in">
    <label for="si-user">User</label>
    <input id="si-user" autocomplete="username" autofocus value=${name} onInput=${(e: Event) => setName((e.target as HTMLInputElement).value)} />
    <label for="si-pass">Password</label>
    <input id="si-pass" type="password" autocomplete="current-password" value=${password}
      onInput=${(e: Event) => setPassword((e.target as HTMLInputElement).value)} />
    <button type="submit">Sign in</button>
    <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

function App() {
  const [route, setRoute] = useState<Route>(() => parse(location.hash));
  const [theme, setTheme] = useState<Theme>(() => (localStorage.getItem("piccolo.theme") as Theme | null) ?? "auto");
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  useEffect(() => {
    applyTheme(theme);
    localStorage.setItem("piccolo.theme", theme);
  }, [theme]);
  useEffect(() => {
    const names = { keys: "Keys", live: "Live", cluster: "Cluster" };
    document.title = `${names[route.view]} · Piccolo console`;
  }, [route.view]);

  const tab = (view: Route["view"], label: string, href: string) =>
    html`<a href=${href} class=${route.view === view ? "nav on" : "nav"} aria-current=${route.view === view ? "page" : undefined}>${label}</a>`;
  return html`
    <header>
      <strong class="brand">Piccolo</strong>
      <nav aria-label="Views">${tab("keys", "Keys", "#/keys")}${tab("live", "Live", "#/live")}${tab("cluster", "Cluster", "#/cluster")}</nav>
      <span class="grow"></span>
      <label for="theme" class="muted">Theme</label>
      <select id="theme" value=${theme} onChange=${(e: Event) => setTheme((e.target as HTMLSelectElement).value as Theme)}>
        ${THEMES.map((t) => html`<option value=${t}>${t}</option>`)}
      </select>
      <${SignIn} />
    </header>
    <main>
      ${
        route.view === "keys"
          ? html`<${KeysView} open=${route.open} creating=${route.creating} />`
          : route.view === "live"
            ? html`<${LiveView} />`
            : html`<${ClusterView} />`
      }
    </main>
  `;
}

const root = document.getElementById("app");
if (root !== null) {
  root.textContent = "";
  render(html`<${App} />`, root);
}
