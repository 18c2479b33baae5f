/**
 * Keys: browse by prefix a page at a time, open a key, view it as text, JSON
 * or hex, edit it with compare-and-swap on its version, delete it, set or
 * clear its TTL, create a key.
 *
 * Paging follows the gateway's cursor (GET /v1/kv?prefix=&cursor=&limit=):
 * each page costs the same whatever the store holds, so a million keys page
 * as fast as a hundred. "Previous" goes back through the cursors already
 * seen. Writes are conditional: an edit is a PUT with If-Match on the version
 * that was shown, so a change someone else made in between is never
 * overwritten silently; the conflict is shown with the newer value.
 *
 * Search by substring has no index to use: it is a scan, so it is bounded.
 * The console pages through the keys under the prefix (in the store's order)
 * and keeps those whose name contains the text, stopping after
 * SEARCH_SCAN_KEYS keys or once it holds SEARCH_MATCHES matches, and says
 * how many keys it read; "Search on" goes on from where it stopped.
 */
import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, api, apiJson, postJson } from "./api.js";
import { asText, displayBytes, formatBytes, formatTtl, fromWire, hexDump, keyPath, toBase64 } from "./bytes.js";
import { type Timeline, Waterfall } from "./trace.js";
import { Confirm, ErrorBox, go } from "./ui.js";

/** Keys listed per page. */
const PAGE_KEYS = 50;
/** Bytes of a value shown; a longer one is shown truncated, with its size. */
export const VIEW_MAX_BYTES = 64 * 1024;
/** Largest value the console edits as text (a bigger one is viewed only). */
const EDIT_MAX_BYTES = 1024 * 1024;
/** Keys a search reads before it stops and says so (each "Search on" reads as many again). */
export const SEARCH_SCAN_KEYS = 10_000;
/** A search also stops at the end of the page on which it reached this many matches. */
const SEARCH_MATCHES = PAGE_KEYS;
/** Keys asked for per request while searching (the gateway's limit is 1,000). */
const SEARCH_BATCH = 500;

interface ListedKey {
  key: string;
  encoding: string;
}

/** A substring search: what was asked, what it found, how far it read. */
interface Found {
  prefix: string;
  needle: string;
  keys: ListedKey[];
  /** Keys read so far, matching or not. */
  scanned: number;
  /** Where to go on from; null when every key under the prefix was read. */
  cursor: string | null;
  running: boolean;
}

/** The key's name as the console shows it (displayBytes), which is what a search matches. */
function shown(k: ListedKey): string {
  return displayBytes(fromWire(k.key, k.encoding));
}

function foundSummary(f: Found): string {
  const where = f.prefix === "" ? "in the store" : `under prefix "${f.prefix}"`;
  const hits = `${f.keys.length.toLocaleString("en")} contain "${f.needle}"`;
  const read = f.scanned.toLocaleString("en");
  if (f.running) return `Searching: read ${read} keys ${where} so far, ${hits}…`;
  if (f.cursor === null) return `Searched all ${read} keys ${where}: ${hits}.`;
  return `Searched the first ${read} keys ${where} (in the store's order, not sorted): ${hits}. Search on reads up to ${SEARCH_SCAN_KEYS.toLocaleString("en")} more.`;
}

export function KeysView(props: { open: Uint8Array | null; creating: boolean }) {
  const [prefixInput, setPrefixInput] = useState("");
  const [prefix, setPrefix] = useState("");
  // cursors[i]: the cursor that loads page i ("" for the first).
  const [cursors, setCursors] = useState<string[]>([""]);
  const [page, setPage] = useState(0);
  const [keys, setKeys] = useState<ListedKey[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [reload, setReload] = useState(0);
  const [needleInput, setNeedleInput] = useState("");
  const [found, setFound] = useState<Found | null>(null);
  // Each search (or List) takes a new number; a scan whose number is no longer current stops.
  const searchRun = useRef(0);

  useEffect(() => {
    let live = true;
    setLoading(true);
    setError(null);
    const cursor = cursors[page] ?? "";
    const prefixBytes = new TextEncoder().encode(prefix);
    apiJson<{ keys: ListedKey[]; cursor: string | null }>(
      `/v1/kv?prefix=${keyPath(prefixBytes)}&limit=${PAGE_KEYS}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
    )
      .then((r) => {
        if (!live) return;
        setKeys(r.keys);
        setNext(r.cursor);
      })
      .catch((e: Error) => live && setError(e.message))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [prefix, page, cursors, reload]);

  /** List (or Back to the list): the first page under the prefix in the box. */
  const search = (e: Event) => {
    e.preventDefault();
    searchRun.current++;
    setFound(null);
    setPrefix(prefixInput);
    setCursors([""]);
    setPage(0);
  };
  /** Reads on from `from` (or from the start) until a bound, keeping the keys whose name contains the needle. */
  const find = async (from: Found) => {
    const run = ++searchRun.current;
    const needle = from.needle.toLowerCase();
    const prefixBytes = keyPath(new TextEncoder().encode(from.prefix));
    let f: Found = { ...from, running: true };
    const start = { scanned: f.scanned, matches: f.keys.length };
    setFound(f);
    setError(null);
    try {
      while (
        f.cursor !== null &&
        f.scanned - start.scanned < SEARCH_SCAN_KEYS &&
        f.keys.length - start.matches < SEARCH_MATCHES
      ) {
        const limit = Math.min(SEARCH_BATCH, SEARCH_SCAN_KEYS - (f.scanned - start.scanned));
        const r = await apiJson<{ keys: ListedKey[]; cursor: string | null }>(
          `/v1/kv?prefix=${prefixBytes}&limit=${limit}${f.cursor ? `&cursor=${encodeURIComponent(f.cursor)}` : ""}`,
        );
        if (run !== searchRun.current) return;
        f = {
          ...f,
          keys: [...f.keys, ...r.keys.filter((k) => shown(k).toLowerCase().includes(needle))],
          scanned: f.scanned + r.keys.length,
          cursor: r.cursor,
        };
        setFound(f);
      }
    } catch (e) {
      if (run === searchRun.current) setError((e as Error).message);
    }
    if (run === searchRun.current) setFound({ ...f, running: false });
  };
  const startFind = (e: Event) => {
    e.preventDefault();
    if (needleInput === "") return search(e);
    void find({ prefix: prefixInput, needle: needleInput, keys: [], scanned: 0, cursor: "", running: true });
  };
  const nextPage = () => {
    if (next === null) return;
    setCursors((c) => [...c.slice(0, page + 1), next]);
    setPage(page + 1);
  };
  const openExact = () => {
    if (prefixInput !== "") go(`#/keys/${keyPath(new TextEncoder().encode(prefixInput))}`);
  };
  const refresh = () => setReload((n) => n + 1);

  return html`
    <div class="split">
      <section class="list" aria-label="Keys">
        <form class="row" onSubmit=${search} role="search" aria-label="List keys by prefix">
          <label for="prefix" class="sr">Key prefix</label>
          <input id="prefix" placeholder="prefix (empty: every key)" value=${prefixInput}
            onInput=${(e: Event) => setPrefixInput((e.target as HTMLInputElement).value)} />
          <button type="submit">List</button>
          <button type="button" onClick=${openExact} title="Open the key named exactly so">Open</button>
        </form>
        <form class="row" onSubmit=${startFind} role="search" aria-label="Find keys containing">
          <label for="needle" class="sr">Key contains</label>
          <input id="needle" placeholder="contains (under the prefix; any case)" value=${needleInput}
            onInput=${(e: Event) => setNeedleInput((e.target as HTMLInputElement).value)} />
          <button type="submit">Search</button>
        </form>
        <div class="row">
          <button type="button" class="primary" onClick=${() => go("#/keys/+new")}>New key</button>
          <span class="grow"></span>
          <button type="button" disabled=${page === 0 || found !== null} onClick=${() => setPage(page - 1)}>Previous</button>
          <span class="muted">page ${page + 1}</span>
          <button type="button" disabled=${next === null || found !== null} onClick=${nextPage}>Next</button>
        </div>
        <${ErrorBox} error=${error} />
        ${loading && keys === null ? html`<p class="muted">Loading…</p>` : null}
        ${
          found === null && keys !== null && keys.length === 0 && !loading
            ? html`<p class="muted">
                ${
                  next !== null
                    ? // The node scans a bounded stretch of its index per page, so a rare prefix can fill none.
                      "No key in this stretch of the store; Next goes on looking."
                    : prefix === ""
                      ? "The store holds no keys."
                      : "No key starts with that prefix."
                }
              </p>`
            : null
        }
        ${
          found !== null
            ? html`<p class="note" role="status" data-testid="search-summary">${foundSummary(found)}</p>
                <div class="row">
                  ${
                    found.cursor !== null && !found.running
                      ? html`<button type="button" onClick=${() => void find(found)}>Search on</button>`
                      : null
                  }
                  <button type="button" onClick=${search}>Back to the list</button>
                </div>`
            : null
        }
        <ul class="keys" data-testid="key-list">
          ${(found !== null ? found.keys : (keys ?? [])).map((k) => {
            const bytes = fromWire(k.key, k.encoding);
            const path = keyPath(bytes);
            const current = props.open !== null && keyPath(props.open) === path;
            return html`<li key=${path}>
              <a href=${`#/keys/${path}`} class=${current ? "current" : ""} aria-current=${current ? "true" : undefined}
                >${displayBytes(bytes)}</a
              >
            </li>`;
          })}
        </ul>
      </section>
      <section class="detail" aria-label="Selected key">
        ${
          props.creating
            ? html`<${NewKey} onDone=${refresh} />`
            : props.open !== null
              ? html`<${KeyDetail} key=${keyPath(props.open)} keyBytes=${props.open} onChange=${refresh} />`
              : html`<p class="muted">Pick a key on the left, or make a new one.</p>`
        }
      </section>
    </div>
  `;
}

interface Loaded {
  bytes: Uint8Array;
  version: number;
  /** Unix ms when it expires, or null. */
  expireAtMs: number | null;
}

/** A traced request's timeline and what the request was ("read", "put", "delete"), shown under the key. */
interface Traced {
  what: string;
  trace: Timeline;
}

/** The timeline in a JSON answer (`trace`, as ?trace=1 adds it; a problem document carries it too), if any. */
function traceIn(body: unknown): Timeline | null {
  const t = (body as { trace?: unknown } | null)?.trace;
  return typeof t === "object" && t !== null && Array.isArray((t as Timeline).spans) ? (t as Timeline) : null;
}

/**
 * A traced read (GET ?trace=1): the answer is the JSON envelope with the timeline beside the value; a
 * missing key is a 404 problem document that carries the timeline too.
 */
async function readKeyTraced(key: Uint8Array): Promise<{ loaded: Loaded | null; trace: Timeline | null }> {
  const res = await api(`/v1/kv/${keyPath(key)}?trace=1`, { headers: { accept: "application/json" } }, [404]);
  const body = (await res.json()) as {
    value: string;
    encoding: string;
    version: number;
    ttlMs: number | null;
  };
  if (res.status === 404) return { loaded: null, trace: traceIn(body) };
  return {
    loaded: {
      bytes: fromWire(body.value, body.encoding),
      version: body.version,
      expireAtMs: body.ttlMs === null ? null : Date.now() + body.ttlMs,
    },
    trace: traceIn(body),
  };
}

async function readKey(key: Uint8Array): Promise<Loaded | null> {
  const res = await api(`/v1/kv/${keyPath(key)}`, { headers: { accept: "application/octet-stream" } }, [404]);
  if (res.status === 404) {
    await res.arrayBuffer();
    return null;
  }
  const ttl = res.headers.get("x-piccolo-ttl-ms");
  const version = Number((res.headers.get("etag") ?? "").replace(/"/g, ""));
  return {
    bytes: new Uint8Array(await res.arrayBuffer()),
    version,
    expireAtMs: ttl === null ? null : Date.now() + Number(ttl),
  };
}

type Mode = "text" | "json" | "hex";

function defaultMode(b: Uint8Array): Mode {
  const t = asText(b.subarray(0, VIEW_MAX_BYTES));
  if (t === null) return "hex";
  if (b.length <= VIEW_MAX_BYTES) {
    try {
      JSON.parse(t);
      return /^\s*[[{]/.test(t) ? "json" : "text";
    } catch {
      return "text";
    }
  }
  return "text";
}

/** The value as shown in `mode`, at most VIEW_MAX_BYTES of it. */
function rendered(b: Uint8Array, mode: Mode): string {
  const shown = b.subarray(0, VIEW_MAX_BYTES);
  if (mode === "hex") return hexDump(shown);
  const t = new TextDecoder().decode(shown);
  if (mode === "json") {
    try {
      return JSON.stringify(JSON.parse(t), null, 2);
    } catch (e) {
      return `(not JSON: ${(e as Error).message})\n\n${t}`;
    }
  }
  return t;
}

function ValueView(props: { bytes: Uint8Array; label: string }) {
  const [mode, setMode] = useState<Mode>(() => defaultMode(props.bytes));
  const truncated = props.bytes.length > VIEW_MAX_BYTES;
  return html`<div class="value">
    <div class="row" role="group" aria-label=${`${props.label}: show as`}>
      ${(["text", "json", "hex"] as Mode[]).map(
        (m) =>
          html`<button type="button" class=${mode === m ? "tab on" : "tab"} aria-pressed=${mode === m} onClick=${() => setMode(m)}>
            ${m === "json" ? "JSON" : m === "hex" ? "Hex" : "Text"}
          </button>`,
      )}
      <span class="muted">${formatBytes(props.bytes.length)}</span>
    </div>
    ${
      truncated
        ? html`<p class="note" data-testid="truncated">
            Showing the first ${formatBytes(VIEW_MAX_BYTES)} of ${formatBytes(props.bytes.length)} (${props.bytes.length} bytes).
          </p>`
        : null
    }
    <pre class="value-text" tabindex="0" aria-label=${props.label} data-testid="value">${rendered(props.bytes, mode)}</pre>
  </div>`;
}

function KeyDetail(props: { keyBytes: Uint8Array; onChange: () => void }) {
  const key = props.keyBytes;
  const [loaded, setLoaded] = useState<Loaded | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const [conflict, setConflict] = useState<Loaded | "deleted" | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [ttlInput, setTtlInput] = useState("");
  const [busy, setBusy] = useState(false);
  // Trace: reads, saves and deletes go with ?trace=1, and the last one's timeline is drawn below.
  const [tracing, setTracing] = useState(false);
  const [traced, setTraced] = useState<Traced | null>(null);
  const editor = useRef<HTMLTextAreaElement>(null);
  const q = (params: string[]) => {
    const all = tracing ? [...params, "trace=1"] : params;
    return all.length === 0 ? "" : `?${all.join("&")}`;
  };

  const load = async (traceIt = false) => {
    setError(null);
    try {
      if (traceIt) {
        const r = await readKeyTraced(key);
        setLoaded(r.loaded);
        setTraced(r.trace === null ? null : { what: "read", trace: r.trace });
      } else setLoaded(await readKey(key));
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    void load();
  }, []);
  useEffect(() => {
    if (editing !== null) editor.current?.focus();
  }, [editing !== null]);

  const run = async (what: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      await what();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  /** PUT with If-Match on `version`; a lost race shows the conflict with the newer value. */
  const save = (version: number) =>
    run(async () => {
      const text = editing ?? "";
      // A PUT sets the TTL it is given: keep the key's expiry time as it was when shown.
      const ttl = loaded?.expireAtMs == null ? [] : [`ttl=${Math.max(1, loaded.expireAtMs - Date.now())}`];
      const res = await api(
        `/v1/kv/${keyPath(key)}${q(ttl)}`,
        {
          method: "PUT",
          headers: { "content-type": "application/octet-stream", "if-match": `"${version}"` },
          body: new TextEncoder().encode(text),
        },
        [412],
      );
      const body = (await res.json()) as { version?: number; code?: string };
      const t = traceIn(body);
      if (t !== null)
        setTraced({ what: res.status === 412 ? "refused put (412)" : `put (version ${body.version})`, trace: t });
      if (res.status === 412) {
        const now = await readKey(key);
        setConflict(now ?? "deleted");
        return;
      }
      setConflict(null);
      setEditing(null);
      await load(false);
      setNotice(`Saved: version ${body.version}.`);
      props.onChange();
    });

  const remove = () =>
    run(async () => {
      if (loaded == null) return;
      const res = await api(
        `/v1/kv/${keyPath(key)}${q([])}`,
        { method: "DELETE", headers: { "if-match": `"${loaded.version}"` } },
        [412, 404],
      );
      setConfirmDelete(false);
      // Traced: 200 {deleted, trace} for 204; a 404 or 412 problem document carries the timeline too.
      const t = res.status === 204 ? null : traceIn(await res.json().catch(() => null));
      if (t !== null) setTraced({ what: res.status === 200 ? "delete" : `refused delete (${res.status})`, trace: t });
      if (res.status === 412) {
        await load();
        setNotice(
          "Not deleted: the key changed since it was shown. Here it is as it is now; delete again if you still mean to.",
        );
        return;
      }
      setNotice(res.status === 404 ? "The key was already gone." : "Deleted.");
      setLoaded(null);
      props.onChange();
    });

  const rpc = async (body: unknown): Promise<boolean> => {
    const r = await postJson<{ error?: { code: number; message: string }; expire?: boolean }>("/v1/rpc", body);
    if (r.error !== undefined) throw new ApiError(`The node refused: ${r.error.message}`, 200, null);
    return r.expire === true;
  };
  const setTtl = () =>
    run(async () => {
      const seconds = Number(ttlInput);
      if (!(seconds > 0) || !Number.isFinite(seconds)) throw new Error("A TTL is a number of seconds above 0.");
      const existed = await rpc({ expire: { key: { base64: toBase64(key) }, ttlMs: Math.round(seconds * 1000) } });
      setTtlInput("");
      await load();
      setNotice(existed ? `TTL set: ${formatTtl(seconds * 1000)}.` : "The key no longer exists.");
    });
  const clearTtl = () =>
    run(async () => {
      const changed = await rpc({ persist: { key: { base64: toBase64(key) } } });
      await load();
      setNotice(changed ? "TTL cleared: the key no longer expires." : "The key had no TTL (or no longer exists).");
    });

  const title = html`<h2 class="keyname" data-testid="key-name">${displayBytes(key)}</h2>`;
  const traceToggle = html`<div class="row">
    <label class="toggle" title="Reload, Save and Delete ask the node for the request's timeline (?trace=1) and draw it below">
      <input type="checkbox" data-testid="trace-toggle" checked=${tracing}
        onChange=${(e: Event) => setTracing((e.target as HTMLInputElement).checked)} /> Trace requests
    </label>
    ${tracing ? html`<span class="muted">Reload, Save and Delete are traced: their timeline is drawn below.</span>` : null}
  </div>`;
  const traceView =
    traced === null
      ? null
      : html`<section class="trace" aria-label="Trace">
          <h3 data-testid="trace-title">Timeline of the ${traced.what}</h3>
          <${Waterfall} trace=${traced.trace} label=${`Timeline of the ${traced.what}`} />
          <button type="button" onClick=${() => setTraced(null)}>Close the timeline</button>
        </section>`;
  if (loaded === undefined)
    return html`${title}<${ErrorBox} error=${error} />${error === null ? html`<p class="muted">Loading…</p>` : null}`;
  if (loaded === null)
    return html`${title}
      <${ErrorBox} error=${error} />
      ${notice !== null ? html`<p class="notice" role="status" data-testid="notice">${notice}</p>` : null}
      <p class="muted">No such key (it may have been deleted or may have expired).</p>
      ${traceToggle}
      <div class="row"><button type="button" onClick=${() => void load(tracing)}>Reload</button></div>
      ${traceView}`;

  const text = asText(loaded.bytes);
  const editable = text !== null && loaded.bytes.length <= EDIT_MAX_BYTES;
  return html`
    ${title}
    <dl class="facts">
      <dt>Version</dt><dd data-testid="version">${loaded.version}</dd>
      <dt>Size</dt><dd>${formatBytes(loaded.bytes.length)}</dd>
      <dt>TTL</dt><dd data-testid="ttl">${loaded.expireAtMs === null ? "none" : formatTtl(loaded.expireAtMs - Date.now())}</dd>
    </dl>
    <${ErrorBox} error=${error} />
    ${notice !== null ? html`<p class="notice" role="status" data-testid="notice">${notice}</p>` : null}
    ${traceToggle}
    ${
      editing === null
        ? html`
          <${ValueView} key=${loaded.version} bytes=${loaded.bytes} label="Value" />
          <div class="row">
            <button type="button" disabled=${!editable || busy} onClick=${() => {
              setConflict(null);
              setEditing(text ?? "");
            }} title=${editable ? "" : "Only UTF-8 values up to 1 MiB are edited here"}>Edit</button>
            <button type="button" disabled=${busy} onClick=${() => void load(tracing)}>Reload</button>
            <button type="button" class="danger" disabled=${busy} onClick=${() => setConfirmDelete(true)}>Delete…</button>
          </div>
          ${
            confirmDelete
              ? html`<${Confirm} label="Confirm delete" action="Delete" busy=${busy} onConfirm=${remove}
                  onCancel=${() => setConfirmDelete(false)}>
                  Delete this key (version ${loaded.version})? This cannot be undone.
                <//>`
              : null
          }
          <form class="row" onSubmit=${(e: Event) => {
            e.preventDefault();
            void setTtl();
          }}>
            <label for="ttl-input">TTL (seconds)</label>
            <input id="ttl-input" inputmode="decimal" size="8" value=${ttlInput}
              onInput=${(e: Event) => setTtlInput((e.target as HTMLInputElement).value)} />
            <button type="submit" disabled=${busy}>Set TTL</button>
            <button type="button" disabled=${busy || loaded.expireAtMs === null} onClick=${clearTtl}>Clear TTL</button>
          </form>`
        : html`
          <label for="editor">Value (editing version ${loaded.version})</label>
          <textarea id="editor" ref=${editor} rows="12" value=${editing}
            onInput=${(e: Event) => setEditing((e.target as HTMLTextAreaElement).value)}></textarea>
          ${
            conflict === null
              ? html`<div class="row">
                  <button type="button" class="primary" disabled=${busy} onClick=${() => save(loaded.version)}>Save</button>
                  <button type="button" onClick=${() => setEditing(null)}>Cancel</button>
                </div>`
              : conflict === "deleted"
                ? html`<div class="conflict" role="alert" data-testid="conflict">
                    <p><strong>Not saved:</strong> the key was deleted by someone else since you opened it.</p>
                    <button type="button" onClick=${() => {
                      setConflict(null);
                      setEditing(null);
                      void load();
                    }}>Close</button>
                  </div>`
                : html`<div class="conflict" role="alert" data-testid="conflict">
                    <p>
                      <strong>Not saved: someone else changed this key.</strong> You edited version ${loaded.version};
                      it is now at version <span data-testid="conflict-version">${conflict.version}</span>, holding:
                    </p>
                    <${ValueView} bytes=${conflict.bytes} label="The newer value" />
                    <p>Your text is still in the editor above.</p>
                    <button type="button" onClick=${() => {
                      setLoaded(conflict);
                      setEditing(asText(conflict.bytes) ?? "");
                      setConflict(null);
                    }}>Take the newer value</button>
                    <button type="button" class="danger" disabled=${busy} onClick=${() => save(conflict.version)}>
                      Save mine over version ${conflict.version}
                    </button>
                  </div>`
          }`
    }
    ${traceView}
  `;
}

function NewKey(props: { onDone: () => void }) {
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [ttl, setTtl] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [exists, setExists] = useState(false);
  const [busy, setBusy] = useState(false);
  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setExists(false);
    const key = new TextEncoder().encode(name);
    if (key.length === 0) {
      setError("A key needs a name.");
      return;
    }
    const seconds = ttl === "" ? 0 : Number(ttl);
    if (!(seconds >= 0) || !Number.isFinite(seconds)) {
      setError("The TTL is a number of seconds (empty: none).");
      return;
    }
    setBusy(true);
    try {
      const res = await api(
        `/v1/kv/${keyPath(key)}${seconds > 0 ? `?ttl=${Math.round(seconds * 1000)}` : ""}`,
        {
          method: "PUT",
          headers: { "content-type": "application/octet-stream", "if-none-match": "*" },
          body: new TextEncoder().encode(value),
        },
        [412],
      );
      await res.arrayBuffer();
      if (res.status === 412) {
        setExists(true);
        return;
      }
      props.onDone();
      go(`#/keys/${keyPath(key)}`);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="new-key" onSubmit=${create} aria-label="New key">
    <h2>New key</h2>
    <label for="new-name">Key</label>
    <input id="new-name" value=${name} autofocus onInput=${(e: Event) => setName((e.target as HTMLInputElement).value)} />
    <label for="new-value">Value</label>
    <textarea id="new-value" rows="8" value=${value} onInput=${(e: Event) => setValue((e.target as HTMLTextAreaElement).value)}></textarea>
    <label for="new-ttl">TTL in seconds (empty: none)</label>
    <input id="new-ttl" inputmode="decimal" size="8" value=${ttl} onInput=${(e: Event) => setTtl((e.target as HTMLInputElement).value)} />
    <${ErrorBox} error=${error} />
    ${
      exists
        ? html`<p class="conflict" role="alert">
            A key with that name already exists: nothing was written.
            <a href=${`#/keys/${keyPath(new TextEncoder().encode(name))}`}>Open it</a>
          </p>`
        : null
    }
    <div class="row">
      <button type="submit" class="primary" disabled=${busy}>Create</button>
      <button type="button" onClick=${() => go("#/keys")}>Cancel</button>
    </div>
  </form>`;
}
