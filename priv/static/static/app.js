// The dashboard shell: tabs, URL state, the token prompt, error display,
// keyboard shortcuts, the mode banner and switch, and the live stream the
// views subscribe to. Views are ES modules registered by the static list
// below: `export default { id, title, key, mount(el, ctx), unmount() }`.

import { makeApi, storeToken, storedToken, ApiError } from './lib/api.js';
import { state } from './lib/state.js';
import { LiveStream } from './lib/stream.js';
import { h } from './lib/dom.js';

import overview from './views/overview.js';
import processes from './views/processes.js';
import heatmap from './views/heatmap.js';
import alerts from './views/alerts.js';
import latency from './views/latency.js';
import traces from './views/traces.js';
import timeline from './views/timeline.js';
import exportView from './views/export.js';
import nodeDetail from './views/node.js';
import inventory from './views/inventory.js';

const VIEWS = [overview, processes, heatmap, alerts, latency, traces, timeline, exportView, inventory];

const shell = {
  operations: [],
  readOnly: false,
  mode: 'multi_node',
  selfNode: null,
  topology: null,
  topologyAt: 0,
  handlers: new Map(),
  current: null,
  currentEl: null,
  drawerOpen: false,
  live: null,
  viewSubs: new Set(), // the current view's stream topics, dropped when it unmounts
};

// ---------------------------------------------------------------- token

let tokenWaiters = null;

function askToken(why) {
  const existing = storedToken();
  if (existing) return Promise.resolve(existing);
  if (tokenWaiters) return new Promise((resolve) => tokenWaiters.push(resolve));
  tokenWaiters = [];
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  document.getElementById('token-why').textContent =
    why || 'This action needs the node\u2019s admin token.';
  input.value = '';
  return new Promise((resolve) => {
    tokenWaiters.push(resolve);
    dialog.addEventListener(
      'close',
      () => {
        const token = dialog.returnValue === 'ok' ? input.value.trim() : '';
        if (token) storeToken(token);
        const waiters = tokenWaiters;
        tokenWaiters = null;
        for (const w of waiters) w(token || null);
      },
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
}

const api = makeApi(askToken);

// ---------------------------------------------------------------- errors

function showError(err) {
  const box = document.getElementById('errors');
  const e = err instanceof ApiError
    ? err.error
    : { code: 'error', message: (err && err.message) || String(err), remediation: [] };
  if (!(err instanceof ApiError)) console.warn(err);
  const remediation = Array.isArray(e.remediation) ? e.remediation : [e.remediation].filter(Boolean);
  const item = h('div', { class: 'error', role: 'alert' },
    h('button', { class: 'close', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '×'),
    h('div', { class: 'error-title' },
      h('span', { class: 'error-code' }, e.code || 'error'),
      err && err.status ? h('span', { class: 'error-status' }, `HTTP ${err.status}`) : null),
    h('div', { class: 'error-message' }, e.message),
    remediation.length
      ? h('ul', { class: 'remediation' }, remediation.map((r) => h('li', {}, r)))
      : null);
  // Only the last few stay on screen.
  while (box.children.length >= 3) box.firstChild.remove();
  box.appendChild(item);
  setTimeout(() => item.remove(), 20000);
}

// ---------------------------------------------------------------- events

function onEvent(type, fn) {
  if (!shell.handlers.has(type)) shell.handlers.set(type, new Set());
  shell.handlers.get(type).add(fn);
  return () => shell.handlers.get(type).delete(fn);
}

function emit(type, data) {
  for (const fn of shell.handlers.get(type) || []) {
    try {
      fn(data);
    } catch (err) {
      console.warn(`${type} handler failed`, err);
    }
  }
}

// ---------------------------------------------------------------- topology

let refreshTimer = null;
let refreshing = null;

async function refreshTopology() {
  if (refreshing) {
    refreshing.again = true;
    return refreshing.promise;
  }
  refreshing = { again: false };
  refreshing.promise = (async () => {
    try {
      do {
        refreshing.again = false;
        const topology = await api('GET', '/api/v1/cluster/topology');
        shell.topology = topology;
        shell.topologyAt = Date.now();
        setMode(topology.mode);
        emit('topology', topology);
      } while (refreshing.again);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 0)) showError(err);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing.promise;
}

function scheduleTopology() {
  if (refreshTimer) return;
  // Events come in bursts (a split is several); one refresh per burst.
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshTopology();
  }, 30);
}

// ---------------------------------------------------------------- mode

function setMode(mode) {
  if (!mode) return;
  shell.mode = mode;
  document.body.dataset.mode = mode;
  const pill = document.getElementById('mode');
  pill.textContent = { multi_node: 'multi-node', local_cluster: 'local cluster', simulated: 'simulated' }[mode] || mode;
  pill.className = `mode-pill mode-${mode}`;
  document.getElementById('sim-banner').hidden = mode !== 'simulated';
  document.getElementById('mode-switch').value = mode;
}

async function switchMode(mode) {
  const select = document.getElementById('mode-switch');
  select.disabled = true;
  try {
    const body = { mode };
    if (mode !== 'multi_node') body.nodes = Number(state.get('sim_nodes') || 3);
    const result = await api('POST', '/api/v1/cluster/mode', { body });
    setMode(result.mode);
    await refreshTopology();
  } catch (err) {
    showError(err);
    setMode(shell.mode);
  } finally {
    select.disabled = false;
  }
}

// ---------------------------------------------------------------- views

// A view's extra stream topic (e.g. `trace:<session id>`): events of that
// topic go to onEvent, the topic's state (`live`, `connecting`,
// `unavailable` with a reason: read by polling then) to onStatus. Returns
// the unsubscribe function; whatever the view still holds is dropped when it
// unmounts.
function subscribeTopic(subs, topic, onEvent, onStatus = () => {}) {
  if (!shell.live) {
    onStatus({ state: 'unavailable', reason: 'no live stream' });
    return () => {};
  }
  const off = shell.live.subscribe(topic, onEvent, onStatus);
  let done = false;
  const unsubscribe = () => {
    if (done) return;
    done = true;
    if (subs) subs.delete(unsubscribe);
    off();
  };
  if (subs) subs.add(unsubscribe);
  return unsubscribe;
}

function ctxFor(subs = null) {
  return {
    api,
    onEvent,
    subscribe: (topic, onEvent, onStatus) => subscribeTopic(subs, topic, onEvent, onStatus),
    state,
    token: () => askToken(),
    showError,
    get readOnly() {
      return shell.readOnly;
    },
    get mode() {
      return shell.mode;
    },
    get operations() {
      return shell.operations;
    },
    nodes: () => (shell.topology ? shell.topology.nodes.map((n) => n.node) : []),
    topology: () => shell.topology,
    refreshTopology,
    select: (node) => selectNode(node),
    selfNode: () => shell.selfNode,
    hasOperation: (name) => shell.operations.some((o) => o.name === name && o.available),
  };
}

function renderTabs() {
  const nav = document.getElementById('tabs');
  nav.replaceChildren(...VIEWS.map((v, i) =>
    h('button', {
      class: 'tab',
      role: 'tab',
      id: `tab-${v.id}`,
      dataset: { view: v.id },
      title: `${v.title} (${v.key || i + 1})`,
      onclick: () => state.set('tab', v.id),
    }, v.title)));
}

async function showView(id) {
  const view = VIEWS.find((v) => v.id === id) || VIEWS[0];
  if (shell.current === view) return;
  if (shell.current && shell.current.unmount) {
    try {
      shell.current.unmount();
    } catch (err) {
      console.warn(err);
    }
  }
  for (const unsubscribe of [...shell.viewSubs]) unsubscribe();
  for (const b of document.querySelectorAll('.tab')) {
    const on = b.dataset.view === view.id;
    b.classList.toggle('active', on);
    b.setAttribute('aria-selected', on ? 'true' : 'false');
  }
  const main = document.getElementById('view');
  const el = h('section', { class: `view-${view.id}`, id: `view-${view.id}` });
  main.replaceChildren(el);
  shell.current = view;
  shell.currentEl = el;
  document.title = `${view.title} · ClusterScope`;
  try {
    await view.mount(el, ctxFor(shell.viewSubs));
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------- node drawer

function selectNode(node) {
  state.set('node', node || null);
}

async function syncDrawer() {
  const node = state.get('node');
  const drawer = document.getElementById('drawer');
  if (!node) {
    if (shell.drawerOpen && nodeDetail.unmount) nodeDetail.unmount();
    shell.drawerOpen = false;
    drawer.hidden = true;
    drawer.replaceChildren();
    document.body.classList.remove('drawer-open');
    return;
  }
  if (shell.drawerOpen && drawer.dataset.node === node) return;
  if (shell.drawerOpen && nodeDetail.unmount) nodeDetail.unmount();
  drawer.dataset.node = node;
  drawer.hidden = false;
  document.body.classList.add('drawer-open');
  shell.drawerOpen = true;
  try {
    await nodeDetail.mount(drawer, ctxFor());
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------- shortcuts

const SHORTCUTS = [
  ...VIEWS.map((v, i) => [String(i + 1), `Open ${v.title}`, () => state.set('tab', v.id)]),
  ['?', 'Show these shortcuts', () => toggleHelp()],
  ['Escape', 'Close the node detail or a dialog', () => selectNode(null)],
  ['r', 'Refresh the topology now', () => refreshTopology()],
  ['/', 'Focus the current view\u2019s filter', () => {
    const f = document.querySelector('#view input[type=search], #view input.filter');
    if (f) f.focus();
  }],
  ['[', 'Select the previous node', () => stepNode(-1)],
  [']', 'Select the next node', () => stepNode(1)],
  ['m', 'Focus the mode switch', () => {
    const sel = document.getElementById('mode-switch');
    if (!document.getElementById('mode-switch-wrap').hidden) sel.focus();
  }],
];

function stepNode(delta) {
  const nodes = ctxFor().nodes();
  if (!nodes.length) return;
  const i = nodes.indexOf(state.get('node'));
  const next = nodes[(i + delta + nodes.length) % nodes.length];
  selectNode(next);
}

function toggleHelp() {
  const dialog = document.getElementById('help-dialog');
  if (dialog.open) {
    dialog.close();
    return;
  }
  const table = document.getElementById('help-table');
  table.replaceChildren(...SHORTCUTS.map(([key, what]) =>
    h('tr', {}, h('td', {}, h('kbd', {}, key === ' ' ? 'Space' : key)), h('td', {}, what))));
  dialog.showModal();
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const target = e.target;
  const typing = target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
  if (typing) {
    if (e.key === 'Escape') target.blur();
    return;
  }
  if (document.querySelector('dialog[open]') && e.key !== '?') return;
  const shortcut = SHORTCUTS.find(([key]) => key === e.key);
  if (shortcut) {
    e.preventDefault();
    shortcut[2]();
  }
}

// ---------------------------------------------------------------- live

function renderLive(status) {
  const el = document.getElementById('live');
  const label = status.transport === 'sse' ? 'live' : 'polling';
  el.textContent = status.connected ? `● ${label}` : `○ reconnecting`;
  el.className = `live ${status.connected ? 'on' : 'off'}`;
  el.title = status.connected
    ? (status.transport === 'sse' ? 'Server-Sent Events from /api/v1/stream' : 'Polling the events cursor every 500 ms (this endpoint has no /api/v1/stream)')
    : `Reconnecting: ${status.detail || ''}`;
  el.dataset.transport = status.transport;
  el.dataset.connected = String(status.connected);
}

// ---------------------------------------------------------------- start

async function start() {
  renderTabs();
  document.addEventListener('keydown', onKey);
  document.getElementById('help-button').addEventListener('click', toggleHelp);
  document.getElementById('mode-switch').addEventListener('change', (e) => switchMode(e.target.value));
  state.onChange((now, before) => {
    if (now.tab !== before.tab) showView(now.tab);
    if (now.node !== before.node) syncDrawer();
  });

  try {
    const ops = await api('GET', '/api/v1/operations');
    shell.operations = ops.operations;
  } catch (err) {
    showError(err);
  }
  // In read_only the control operations are neither served nor listed.
  shell.readOnly = !shell.operations.some((o) => o.mutating);
  document.body.classList.toggle('read-only', shell.readOnly);
  document.getElementById('mode-switch-wrap').hidden =
    !shell.operations.some((o) => o.name === 'set_mode' && o.available);

  await refreshTopology();
  if (shell.topology) {
    shell.selfNode = shell.topology.node;
    document.getElementById('node').textContent = shell.topology.node;
  }

  const live = new LiveStream({ topics: ['cluster', 'alerts'], transport: state.get('transport') || 'auto' });
  window.__clusterScopeLive = live; // for tests and the latency bench
  shell.live = live;
  live.on('status', renderLive);
  live.on('cluster', (event) => {
    emit('cluster', event);
    if (event.type === 'mode' && event.details && event.details.to) setMode(event.details.to);
    scheduleTopology();
  });
  live.on('alert', (a) => emit('alert', a));
  live.on('trace', (t) => emit('trace', t));
  live.on('heartbeat', (b) => emit('heartbeat', b));
  // Everything up to now is in the topology just read; the stream delivers
  // what comes after (the timeline reads the history itself).
  let since = 0;
  try {
    since = await lastEventId();
  } catch (err) {
    showError(err);
  }
  live.start(since);

  await showView(state.get('tab'));
  await syncDrawer();
  document.body.dataset.ready = 'true';
}

// The id of the newest cluster event (the history keeps the last 1,000).
async function lastEventId() {
  let since = 0;
  for (let i = 0; i < 20; i++) {
    const page = await api('GET', '/api/v1/cluster/events', { query: { since, limit: 1000 } });
    if (!page.events.length) return since;
    since = page.last_id;
    if (page.events.length < 1000) return since;
  }
  return since;
}

start();
