// Helpers shared by the processes, heat map, alerts, latency and trace
// views: DOM building, number formats, the operations list (what this node
// serves and whether it is read-only), token-guarded calls, polling that
// stops with its view, and a small dialog. No third-party code.

/** Builds an element: h('td', {class: 'x', onclick: fn}, 'text', child). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'style' && typeof value === 'object') {
      Object.assign(el.style, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Replaces an element's children (nulls and arrays allowed, as in h). */
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// ---------------------------------------------------------------- formats

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  let value = Math.abs(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = unit === 0 ? String(value) : value.toFixed(value < 10 ? 1 : 0);
  return (n < 0 ? '-' : '') + text + ' ' + UNITS[unit];
}

export function num(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits });
}

/** Microseconds as µs, ms or s. */
export function micros(us) {
  if (us === null || us === undefined) return '–';
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 1 : 0)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

export function clock(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  return d.toLocaleTimeString('en-GB', { hour12: false }) +
    '.' + String(d.getMilliseconds()).padStart(3, '0');
}

export function ago(ms) {
  if (!ms) return '–';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
}

/**
 * A node's name for a narrow column: the part before `@` (the host too
 * when another node of `all` has the same name), middle-elided past `max`
 * characters so the distinguishing end stays visible. Show the full name
 * in a title.
 */
export function nodeLabel(node, all = [], max = 24) {
  const text = String(node || '');
  const at = text.indexOf('@');
  let name = at > 0 ? text.slice(0, at) : text;
  if (at > 0 && all.some((n) => n !== text && String(n).startsWith(name + '@'))) name = text;
  if (name.length <= max) return name;
  const tail = Math.ceil((max - 1) * 0.6);
  return name.slice(0, max - 1 - tail) + '…' + name.slice(-tail);
}

/** Compares node names with their numbers in numeric order (sim_2 before sim_10). */
export function byNode(a, b) {
  return String(a).localeCompare(String(b), 'en', { numeric: true });
}

/** The text shown for a process: its name, else its initial call. */
export function processLabel(row) {
  const name = row.registered_name;
  if (name && name !== 'undefined' && name !== '[]') return name.replace(/^Elixir\./, '');
  return (row.initial_call || '').replace(/^Elixir\./, '') || row.pid;
}

export function moduleText(text) {
  return String(text || '').replace(/Elixir\./g, '');
}

// ------------------------------------------------------------------- API

/** The data of an answer, whether the client hands back the envelope or its data. */
export function unwrap(answer) {
  if (answer && typeof answer === 'object' && 'data' in answer && 'metadata' in answer) {
    return answer.data;
  }
  return answer;
}

/** The per-node errors of an answer (data.node_errors or the envelope's). */
export function nodeErrors(answer) {
  const data = unwrap(answer);
  return (data && data.node_errors) || (answer && answer.metadata && answer.metadata.node_errors) || [];
}

let opsCache = null;
let opsAt = 0;

/**
 * The operations this node serves, by name ({name, scope, available, ...}),
 * cached 10 s. In read-only mode control operations are not listed, so a
 * view shows an action only when its operation is here and available.
 */
export async function operations(ctx) {
  if (opsCache && Date.now() - opsAt < 10_000) return opsCache;
  // The shell read the list at start; ask the node only when it has none.
  let list = Array.isArray(ctx.operations) && ctx.operations.length ? ctx.operations : null;
  if (!list) {
    const data = unwrap(await ctx.api('GET', '/api/v1/operations'));
    list = (data && data.operations) || [];
  }
  const map = new Map();
  for (const op of list) map.set(op.name, op);
  opsCache = map;
  opsAt = Date.now();
  return map;
}

/** Whether an operation can be run here (listed, available, and not a control one when read-only). */
export function can(ctx, ops, name) {
  const op = ops && ops.get(name);
  if (!op || !op.available) return false;
  if (ctx.readOnly && (op.scope === 'control' || op.mutating)) return false;
  return true;
}

/** The message of an error, with the envelope's remediation when there is one. */
export function errorText(err) {
  if (!err) return 'unknown error';
  const envelope = err.error || {};
  const message = envelope.message || err.message || String(err);
  const remediation = Array.isArray(envelope.remediation)
    ? envelope.remediation.join(' ')
    : envelope.remediation || '';
  return remediation ? `${message} — ${remediation}` : message;
}

/**
 * Runs `call(token)` for an operation that needs the admin token: the shell
 * asks for it once per browser session (sessionStorage). Returns
 * {ok: true, value} or {ok: false, error}; a refusal (401/403) is reported,
 * never thrown.
 */
export async function withToken(ctx, call) {
  let token;
  try {
    token = await ctx.token();
  } catch (err) {
    token = null;
  }
  if (!token) {
    return {
      ok: false,
      refused: true,
      error: { message: 'Refused: this action needs the admin token, and none was given.' },
    };
  }
  try {
    return { ok: true, value: await call(token) };
  } catch (err) {
    // The shell's client forgets a token the server refuses (401) and asks
    // once more; what reaches here is the final refusal.
    return { ok: false, refused: !!err && (err.status === 401 || err.status === 403), error: err };
  }
}

/**
 * An API call that needs the token: the shell's client sends the stored
 * one as `Authorization: Bearer` (never in the URL); `token` tells it this
 * call needs one even as a GET.
 */
export function authed(ctx, token, method, path, opts = {}) {
  return ctx.api(method, path, Object.assign({}, opts, { token }));
}

// ---------------------------------------------------------------- polling

/**
 * Calls `fn` now and then every `ms` after the previous call ended, until
 * stopped; skips while the page is hidden. Errors go to `onError`.
 */
export function poll(fn, ms, onError) {
  let timer = null;
  let stopped = false;
  let running = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden && !running) {
      running = true;
      try {
        await fn();
      } catch (err) {
        if (onError && !stopped) onError(err);
      } finally {
        running = false;
      }
    }
    if (!stopped) timer = setTimeout(tick, typeof ms === 'function' ? ms() : ms);
  };
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    now() {
      clearTimeout(timer);
      tick();
    },
  };
}

/** Subscribes to a shell event type when the shell offers it; returns an unsubscribe function. */
export function subscribe(ctx, type, fn) {
  if (typeof ctx.onEvent !== 'function') return () => {};
  try {
    const off = ctx.onEvent(type, fn);
    return typeof off === 'function' ? off : () => {};
  } catch (err) {
    return () => {};
  }
}

// ------------------------------------------------------------- URL state

let muted = 0;

/** Sets a URL state key from the view itself (its own watchers ignore it). */
export function setState(ctx, key, value) {
  muted += 1;
  try {
    ctx.state.set(key, value);
  } finally {
    muted -= 1;
  }
}

/**
 * Calls `fn` when one of `keys` changes from outside the view (the back
 * button, an edited or followed URL); returns the unsubscribe function.
 */
export function watch(ctx, keys, fn) {
  if (!ctx.state || typeof ctx.state.onChange !== 'function') return () => {};
  const snapshot = () => keys.map((k) => ctx.state.get(k) ?? '').join('\u0000');
  let last = snapshot();
  const off = ctx.state.onChange(() => {
    const now = snapshot();
    if (now === last) return;
    last = now;
    if (muted === 0) fn();
  });
  return typeof off === 'function' ? off : () => {};
}

// ------------------------------------------------------------ navigation

/** Opens another view, with its state set first. */
export function goTo(ctx, view, state = {}) {
  for (const [key, value] of Object.entries(state)) ctx.state.set(key, value);
  // The shell shows the view named by the `tab` key of the URL state.
  ctx.state.set('tab', view);
}

// ----------------------------------------------------------------- dialog

/**
 * A modal dialog (native <dialog>): `body` is an element, `actions` a list
 * of buttons. Returns {el, close}. Escape closes it.
 */
const openDialogs = new Set();

/** Closes the dialogs a view opened (called when the view unmounts). */
export function closeDialogs() {
  for (const d of [...openDialogs]) d.close();
}

export function dialog(title, body, actions = [], opts = {}) {
  const close = () => {
    openDialogs.delete(handle);
    if (el.open) el.close();
    el.remove();
  };
  const el = h('dialog', { class: `vb-dialog ${opts.wide ? 'vb-wide' : ''}`, 'aria-label': title },
    h('header', {},
      h('h3', {}, title),
      h('button', { class: 'vb-close', type: 'button', title: 'Close (Esc)', 'aria-label': 'Close', onclick: close }, '×')),
    h('div', { class: 'vb-dialog-body' }, body),
    actions.length ? h('footer', {}, actions) : null);
  el.addEventListener('close', () => {
    openDialogs.delete(handle);
    el.remove();
  });
  document.body.append(el);
  el.showModal();
  const handle = { el, close };
  openDialogs.add(handle);
  return handle;
}

/** A status line inside a view or dialog: kind is info | ok | error. */
export function notice(el, kind, text) {
  el.className = `vb-notice vb-${kind}`;
  el.textContent = text;
  el.hidden = !text;
}

// ----------------------------------------------------------------- styles

/** Adds views.css once (relative to this module, so a mounted prefix works). */
export function loadStyles() {
  if (document.getElementById('vb-styles')) return;
  const link = document.createElement('link');
  link.id = 'vb-styles';
  link.rel = 'stylesheet';
  link.href = new URL('./views.css', import.meta.url).href;
  document.head.append(link);
}
