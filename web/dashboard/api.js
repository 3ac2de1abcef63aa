// The hub's HTTP API as the dashboard uses it: the session cookie is sent by
// the browser, the CSRF token goes with every request that changes something.

let csrfToken = '';
let onUnauthenticated = () => {};

export function setCSRF(token) { csrfToken = token || ''; }
export function csrf() { return csrfToken; }
export function onLoggedOut(fn) { onUnauthenticated = fn; }

export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body, { quiet401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new APIError(0, 'network', 'The hub cannot be reached. Check the connection; the page retries on its own.');
  }
  if (resp.status === 204) return null;
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) {
    const err = new APIError(resp.status, data?.code || `http_${resp.status}`, data?.message || resp.statusText || `HTTP ${resp.status}`);
    if (resp.status === 401 && !quiet401) onUnauthenticated(err);
    throw err;
  }
  return data;
}

export const get = (path, opts) => api('GET', path, undefined, opts);

// query builds "?a=1&b=2" from the set values of params.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
