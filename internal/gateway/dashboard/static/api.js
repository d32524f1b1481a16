// The gateway's HTTP API as the dashboard uses it: JSON requests with the
// bearer token, problem documents as errors, and watches (server-sent
// events) read with fetch, since EventSource cannot send a token.

// Problem is a failed request: the API's RFC 9457 problem document, or one
// made up for a network failure.
export class Problem extends Error {
  constructor(status, doc) {
    super(doc.detail || doc.title || `HTTP ${status}`);
    this.status = status;
    this.type = (doc.type || '').replace('https://wasmbed.github.io/problems/', '') || 'network';
    this.title = doc.title || statusText(status);
    this.detail = doc.detail || '';
    this.errors = doc.errors || [];
    this.gateway = doc.gateway || '';
  }
}

export function statusText(status) {
  return {
    0: 'Network error', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
    409: 'Conflict', 413: 'Content Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Content',
    429: 'Too Many Requests', 500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable',
  }[status] || `HTTP ${status}`;
}

async function problemOf(res) {
  let doc = {};
  try {
    doc = await res.json();
  } catch {
    doc = {};
  }
  return new Problem(res.status, doc);
}

// Client calls the API with a bearer token.
export class Client {
  constructor(token, onUnauthenticated) {
    this.token = token;
    this.onUnauthenticated = onUnauthenticated || (() => {});
  }

  headers(extra) {
    return Object.assign({ Authorization: `Bearer ${this.token}`, Accept: 'application/json' }, extra || {});
  }

  // request sends method to path and returns the decoded JSON answer (null
  // for 204). body is sent as JSON, form as multipart. Failures throw a
  // Problem; a 401 also calls onUnauthenticated.
  async request(method, path, { body, form, signal } = {}) {
    const init = { method, headers: this.headers(), signal, cache: 'no-store' };
    if (form) {
      init.body = form;
    } else if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      throw new Problem(0, { detail: `the gateway could not be reached (${err.message})` });
    }
    if (!res.ok) {
      const p = await problemOf(res);
      if (p.status === 401) this.onUnauthenticated(p);
      throw p;
    }
    if (res.status === 204) return null;
    return res.json();
  }

  get(path, opts) { return this.request('GET', path, opts); }
  post(path, body, opts) { return this.request('POST', path, Object.assign({ body }, opts)); }

  // watch streams a list route's changes (path without ?watch=true) until
  // signal aborts. handlers: ready() once the watch is registered (list
  // then), event(type, object) per change, error(problem) when it fails.
  // A watch that ends (fell behind, the gateway restarted) is opened again
  // after a pause, and ready() is called again.
  watch(path, handlers, signal) {
    const sep = path.includes('?') ? '&' : '?';
    const url = `${path}${sep}watch=true`;
    let delay = 500;
    const run = async () => {
      while (!signal.aborted) {
        try {
          const res = await fetch(url, { headers: this.headers({ Accept: 'text/event-stream' }), signal, cache: 'no-store' });
          if (!res.ok) {
            const p = await problemOf(res);
            if (p.status === 401) this.onUnauthenticated(p);
            if (handlers.error) handlers.error(p);
            if ([400, 401, 403, 404, 501].includes(p.status)) return;
          } else {
            delay = 500;
            await readEvents(res.body, (type, data) => {
              if (type === 'READY') {
                if (handlers.ready) handlers.ready();
              } else if (type === 'ERROR') {
                // Fell behind: the stream ends and is opened again.
              } else if (handlers.event) {
                handlers.event(type, data);
              }
            });
          }
        } catch (err) {
          if (signal.aborted || err.name === 'AbortError') return;
        }
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 15000);
      }
    };
    run();
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// readEvents parses a text/event-stream body and calls emit(type, data)
// per event, data decoded as JSON.
async function readEvents(body, emit) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let type = 'message';
      const data = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') type = val;
        else if (field === 'data') data.push(val);
      }
      if (data.length === 0) continue;
      let obj = null;
      try {
        obj = JSON.parse(data.join('\n'));
      } catch {
        continue;
      }
      emit(type, obj);
    }
  }
}

// query renders URL query parameters, skipping empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// scope returns the path prefix of a namespace: all namespaces when empty.
export function scope(ns) {
  return ns ? `/api/v1/namespaces/${encodeURIComponent(ns)}` : '/api/v1';
}
