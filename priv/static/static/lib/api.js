// The API client: every call goes to the operations' HTTP API (/api/v1).
// Answers are the envelope {data, metadata} or {error, metadata}; a failure
// throws an ApiError carrying the envelope's message and remediation (never
// a stack trace: the server sends none, and the page shows only these).

export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.error = {
      class: (error && (error.class || error.code)) || 'error',
      code: (error && error.code) || 'error',
      message: (error && error.message) || `HTTP ${status}`,
      remediation: (error && error.remediation) || [],
      details: (error && error.details) || {},
    };
  }
}

const TOKEN_KEY = 'cluster_scope.token';

export function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch (_) {
    return null;
  }
}

export function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    /* private mode: the token lives for this page only */
  }
}

// Paths are resolved against the document's base, so the dashboard works
// mounted under a prefix (ClusterScope.Web.Plug injects <base href>):
// "/api/v1/x" becomes "<prefix>/api/v1/x", and "/api/v1/x" at the root.
export function buildUrl(path, query) {
  const url = new URL(String(path).replace(/^\//, ''), document.baseURI);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
  }
  return url.pathname + url.search;
}

// makeApi(askToken) -> api(method, path, {query, body, token})
// Mutating calls (anything but GET) carry the token, asking for it once per
// browser session; GETs carry it when one is stored, and ask for it when the
// server answers 401/403 for want of one.
export function makeApi(askToken) {
  async function call(method, path, opts = {}, retried = false) {
    const headers = { Accept: 'application/json' };
    let token = storedToken();
    if (!token && (method !== 'GET' || opts.token)) token = await askToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers };
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    let response;
    try {
      response = await fetch(buildUrl(path, opts.query), init);
    } catch (err) {
      throw new ApiError(0, {
        code: 'unreachable',
        message: `The ClusterScope endpoint did not answer (${err.message}).`,
        remediation: ['Check that the node serving this page is still running, then reload.'],
      });
    }
    let body = null;
    const type = response.headers.get('content-type') || '';
    if (type.includes('application/json')) {
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
    }
    if (response.ok) return body ? body.data : null;
    const error = body && body.error;
    if ((response.status === 401 || response.status === 403) && !retried && !token && error &&
        /token|authoriz/i.test(error.message || '')) {
      const asked = await askToken(error.message);
      if (asked) return call(method, path, opts, true);
    }
    if ((response.status === 401) && token && !retried) {
      // A stale token: forget it and ask once more.
      storeToken(null);
      const asked = await askToken('The token was refused.');
      if (asked) return call(method, path, opts, true);
    }
    throw new ApiError(response.status, error || {
      code: `http_${response.status}`,
      message: `The endpoint answered HTTP ${response.status} to ${method} ${path}.`,
      remediation: [],
    });
  }
  return call;
}
