// The gateway's JSON APIs, called with the master key the operator typed. The key
// lives in this tab's sessionStorage only: never in a URL, never in a cookie
// (`credentials: "omit"` sends none), gone when the tab closes.
const STORE = "switchboard.masterKey";

export const masterKey = {
  get: () => sessionStorage.getItem(STORE),
  set: (key) => sessionStorage.setItem(STORE, key),
  clear: () => sessionStorage.removeItem(STORE),
};

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The gateway answered ${status}.`);
    this.status = status;
    this.param = error.param || null;
  }

  get refusedKey() {
    return this.status === 401 || this.status === 403;
  }
}

// GET (or `method`) a gateway path; `query` values that are empty are left out.
export async function api(path, { method = "GET", query, body } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const key = masterKey.get();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method, headers, credentials: "omit", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Whether this gateway asks for a key at all (public: any request without one tells as much).
export async function loginRequired() {
  const response = await fetch("/dashboard/auth.json", { credentials: "omit", cache: "no-store" });
  return (await response.json()).master_key_required;
}
