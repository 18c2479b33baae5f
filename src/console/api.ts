/**
 * Every request the console makes goes through here: to this page's own
 * origin (the Cerializer that served it), with the signed-in user's bearer
 * token if there is one. Every failure becomes an ApiError whose message is
 * in words: the problem document's title and detail when the gateway
 * answered one, the status line otherwise, or what the network said.
 */

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** The problem document, when the gateway sent one. */
    readonly problem: Record<string, unknown> | null,
  ) {
    super(message);
  }
  get type(): string {
    return String(this.problem?.type ?? "").replace("urn:piccolo:problem:", "");
  }
}

let token: string | null = sessionStorage.getItem("piccolo.token");
let user: string | null = sessionStorage.getItem("piccolo.user");

export function signedInAs(): string | null {
  return user;
}

export function authHeaders(): Record<string, string> {
  return token === null ? {} : { authorization: `Bearer ${token}` };
}

/** fetch() against the gateway; throws ApiError for anything but 2xx/304 (and the statuses in `ok`). */
export async function api(path: string, init: RequestInit = {}, ok: number[] = []): Promise<Response> {
  let res: Response;
  try {
    // X-Requested-With: a 401 then challenges Bearer, not Basic, so the browser shows no login dialog of
    // its own over the page; the console's Sign in is the way in (decision 0305).
    res = await fetch(path, {
      ...init,
      headers: { "x-requested-with": "XMLHttpRequest", ...authHeaders(), ...(init.headers ?? {}) },
    });
  } catch (err) {
    throw new ApiError(`The gateway could not be reached (${(err as Error).message}). Is it running?`, 0, null);
  }
  if (res.ok || res.status === 304 || ok.includes(res.status)) return res;
  throw await errorOf(res);
}

export async function errorOf(res: Response): Promise<ApiError> {
  const ct = res.headers.get("content-type") ?? "";
  if (ct.includes("json")) {
    try {
      const p = (await res.json()) as Record<string, unknown>;
      const words = [p.title, p.detail].filter((x) => typeof x === "string" && x !== "").join(": ");
      return new ApiError(`${res.status} ${words || res.statusText}`, res.status, p);
    } catch {
      // Not JSON after all: fall through to the status line.
    }
  }
  const text = await res.text().catch(() => "");
  return new ApiError(`${res.status} ${res.statusText}${text ? `: ${text.slice(0, 300)}` : ""}`, res.status, null);
}

export async function apiJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await api(path, init);
  return (await res.json()) as T;
}

export async function postJson<T>(path: string, body: unknown): Promise<T> {
  return apiJson<T>(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Trades a user and password for a bearer token (POST /v1/auth/token), kept for this tab only. */
export async function signIn(name: string, password: string): Promise<void> {
  const basic = btoa(String.fromCharCode(...new TextEncoder().encode(`${name}:${password}`)));
  const res = await api("/v1/auth/token", { method: "POST", headers: { authorization: `Basic ${basic}` } });
  const t = ((await res.json()) as { token: string }).token;
  token = t;
  user = name || "default";
  sessionStorage.setItem("piccolo.token", t);
  sessionStorage.setItem("piccolo.user", user);
}

export async function signOut(): Promise<void> {
  if (token !== null) await api("/v1/auth/token", { method: "DELETE" }, [401]).catch(() => {});
  token = null;
  user = null;
  sessionStorage.removeItem("piccolo.token");
  sessionStorage.removeItem("piccolo.user");
}
