// The agent's HTTP API as the page uses it: bearer token from sessionStorage, JSON calls,
// the server-sent event stream read with fetch() (EventSource cannot send a header), and
// the resumable bundle upload (the same protocol as `sealift-agent import`).

const TOKEN_KEY = 'sealift.token';
const UPLOAD_KEY = 'sealift.upload';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => { sessionStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(UPLOAD_KEY); },
};

/** An API error: HTTP status plus the body's stable `code` and `message`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code ? body.code : `http_${status}`;
    this.body = body || {};
  }
}

function headers(extra) {
  const h = new Headers(extra || {});
  const t = token.get();
  if (t) h.set('Authorization', `Bearer ${t}`);
  return h;
}

/** Calls the API; resolves with the parsed JSON (or null), rejects with ApiError. */
export async function call(method, path, body, opts = {}) {
  const init = { method, headers: headers(opts.headers), cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body instanceof Blob) {
    init.body = body;
    init.headers.set('Content-Type', 'application/octet-stream');
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers.set('Content-Type', 'application/json');
  }
  if (opts.signal) init.signal = opts.signal;
  const resp = await fetch(path, init);
  const text = await resp.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = { message: text }; }
  }
  if (!resp.ok) throw new ApiError(resp.status, json);
  return json;
}

export const get = (path, opts) => call('GET', path, undefined, opts);
export const post = (path, body, opts) => call('POST', path, body === undefined ? {} : body, opts);
export const put = (path, body, opts) => call('PUT', path, body, opts);
export const del = (path, opts) => call('DELETE', path, undefined, opts);

/**
 * Follows `GET /api/v1/events` until `signal` aborts, reconnecting after a break.
 * `onEvent(name, data)` gets each event with its JSON data; `onState(connected)` the link.
 */
export function followEvents(onEvent, onState, signal) {
  let delay = 1000;
  const run = async () => {
    while (!signal.aborted) {
      try {
        const resp = await fetch('/api/v1/events', {
          headers: headers({ Accept: 'text/event-stream' }), cache: 'no-store', credentials: 'omit', signal,
        });
        if (resp.status === 401) { onState(false, 'unauthorized'); return; }
        if (resp.status === 404) { onState(false, 'absent'); return; } // no release engine
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        onState(true);
        delay = 1000;
        await readStream(resp.body, onEvent, signal);
      } catch (e) {
        if (signal.aborted) return;
      }
      onState(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  run();
}

async function readStream(body, onEvent, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let name = 'message';
  let data = [];
  const abort = () => reader.cancel().catch(() => {});
  signal.addEventListener('abort', abort, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) {
            let parsed = null;
            try { parsed = JSON.parse(data.join('\n')); } catch { parsed = data.join('\n'); }
            onEvent(name, parsed);
          }
          name = 'message';
          data = [];
        } else if (line.startsWith(':')) {
          // a heartbeat comment
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') name = val;
          else if (field === 'data') data.push(val);
        }
      }
    }
  } finally {
    signal.removeEventListener('abort', abort);
  }
}

/** Bytes per PUT after the head entry. */
const PART = 4 << 20;
const ATTEMPTS = 5;

/** Where the head entry (header, content, padding) ends, from the file's first tar header. */
async function headEnd(file) {
  const block = new Uint8Array(await file.slice(0, 512).arrayBuffer());
  if (block.length < 512) return Math.min(PART, file.size);
  const field = new TextDecoder().decode(block.slice(124, 136)).replace(/[\0 ]+$/g, '').trim();
  const n = /^[0-7]+$/.test(field) ? parseInt(field, 8) : NaN;
  if (!Number.isFinite(n) || n > (4 << 20)) return Math.min(PART, file.size);
  const padding = (512 - (n % 512)) % 512;
  return Math.min(512 + n + padding, file.size);
}

function fileKey(file) {
  return `${file.name}|${file.size}|${file.lastModified}`;
}

/**
 * Uploads `file` part by part and commits. The head entry goes first alone; when the agent
 * already holds that identity intact, the rest is not sent. A broken part is resumed from
 * the agent's offset; an upload of the same file interrupted earlier in this tab resumes.
 * `onProgress(sent, total, note)`; resolves with the import summary, rejects with ApiError.
 */
export async function uploadBundle(file, onProgress) {
  const size = file.size;
  const end = await headEnd(file);
  let id = null;
  let offset = 0;
  let note;
  const saved = JSON.parse(sessionStorage.getItem(UPLOAD_KEY) || 'null');
  if (saved && saved.key === fileKey(file)) {
    try {
      const st = await get(`/api/v1/uploads/${encodeURIComponent(saved.id)}`);
      id = saved.id;
      offset = st.offset;
      note = `resuming an earlier upload at ${offset} bytes`;
    } catch {
      sessionStorage.removeItem(UPLOAD_KEY);
    }
  }
  if (!id) {
    const created = await post('/api/v1/uploads', { size });
    id = created.id;
    sessionStorage.setItem(UPLOAD_KEY, JSON.stringify({ key: fileKey(file), id }));
  }
  onProgress(offset, size, note);
  let failures = 0;
  while (offset < size) {
    const len = offset < end ? end - offset : Math.min(PART, size - offset);
    try {
      const st = await put(`/api/v1/uploads/${encodeURIComponent(id)}?offset=${offset}`, file.slice(offset, offset + len));
      offset = st.offset;
      failures = 0;
      onProgress(offset, size);
      if (st.stored && offset < size) {
        onProgress(size, size, `the agent already holds this bundle (${st.identity}): the rest is not sent`);
        break;
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && e.body.expectedOffset !== undefined) {
        offset = e.body.expectedOffset;
        continue;
      }
      if (e instanceof ApiError && e.status < 500) {
        sessionStorage.removeItem(UPLOAD_KEY);
        throw e;
      }
      failures += 1;
      if (failures > ATTEMPTS) throw e;
      onProgress(offset, size, `upload interrupted (${e.message}); resuming`);
      await new Promise((r) => setTimeout(r, 250 * failures));
      try { offset = (await get(`/api/v1/uploads/${encodeURIComponent(id)}`)).offset; } catch { /* try again */ }
    }
  }
  onProgress(size, size, 'verifying and staging the images…');
  try {
    return await post(`/api/v1/uploads/${encodeURIComponent(id)}/commit`, undefined);
  } finally {
    sessionStorage.removeItem(UPLOAD_KEY);
  }
}
