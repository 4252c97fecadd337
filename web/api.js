// The JSON API client: one fetch wrapper that turns the server's error shape into ApiError.

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the server could not be reached)
   * @param {string} code machine-readable code from {"error": {"code"}}
   * @param {string} message human-readable message from the server
   * @param {Record<string, string>} fields per-field validation messages (400s)
   * @param {number} retryAfter seconds to wait before trying again (429s with Retry-After), else 0
   */
  constructor(status, code, message, fields = {}, retryAfter = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.fields = fields || {};
    this.retryAfter = retryAfter;
  }
}

/** Listeners told when any request comes back 401 (the session expired or was never there). */
const unauthorizedListeners = new Set();

export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

/**
 * Call the API. Returns the parsed JSON body (or null for 204).
 * `quiet401` stops the global "signed out" handling, for calls that expect it (GET /api/me at start-up).
 */
export async function api(method, path, body = undefined, { quiet401 = false, signal } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", "The server could not be reached. Check your connection and try again.");
  }
  if (response.status === 204) return null;
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const apiError = new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `The server answered ${response.status}.`,
      error.fields,
      Number.parseInt(response.headers.get("Retry-After") || "", 10) || 0,
    );
    if (response.status === 401 && !quiet401) unauthorizedListeners.forEach((fn) => fn(apiError));
    throw apiError;
  }
  return data;
}

export const get = (path, options) => api("GET", path, undefined, options);
export const post = (path, body, options) => api("POST", path, body, options);
export const patch = (path, body, options) => api("PATCH", path, body, options);
export const put = (path, body, options) => api("PUT", path, body, options);
export const del = (path, options) => api("DELETE", path, undefined, options);

/** Build "/path?a=1&b=2", skipping empty values. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}
