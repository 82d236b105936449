// Processes: every process of every node as one table (process_list):
// filter, sort, page (cursor), window mode (rank by change over an
// interval); actions info (with state: sensitive), kill, send and trace
// (control) on any row. Mutating actions are hidden when the node is
// read-only or does not serve them; the token is asked once per browser
// session by the shell (ctx.token) and never put in a URL.

import {
  h, put, nodeLabel, bytes, num, clock, processLabel, moduleText, unwrap, nodeErrors, operations, can,
  errorText, withToken, authed, poll, goTo, dialog, closeDialogs, byNode, notice, loadStyles, setState, watch,
} from './common.js';

const SORTS = [
  ['memory', 'Memory'],
  ['reductions', 'Reductions'],
  ['message_queue_len', 'Queue'],
  ['heap_size', 'Heap'],
];
const WINDOW_SORTS = ['memory', 'reductions', 'message_queue_len'];
const TYPES = ['supervisor', 'gen_server', 'gen_statem', 'gen_event', 'task', 'proc_lib', 'plain'];
const WINDOWS = [[0, 'off'], [1000, '1 s'], [5000, '5 s'], [10000, '10 s'], [30000, '30 s']];
const LIMITS = [25, 50, 100, 200];

// URL state keys (survive reload and mode switch).
const K = {
  node: 'procs.node', app: 'procs.app', type: 'procs.type', name: 'procs.name',
  minMem: 'procs.min_memory', minQueue: 'procs.min_queue', sort: 'procs.sort',
  window: 'procs.window', limit: 'procs.limit',
};

let view = null;

function read(ctx) {
  const g = (k, d = '') => {
    const v = ctx.state.get(k);
    return v === undefined || v === null ? d : String(v);
  };
  return {
    node: g(K.node), application: g(K.app), type: g(K.type), name: g(K.name),
    min_memory: g(K.minMem), min_queue: g(K.minQueue), sort_by: g(K.sort, 'memory'),
    window_ms: Number(g(K.window, '0')) || 0, limit: Number(g(K.limit, '50')) || 50,
  };
}

function query(f, cursor) {
  const q = { sort_by: f.sort_by, limit: f.limit };
  for (const key of ['node', 'application', 'type', 'name']) if (f[key]) q[key] = f[key];
  if (/^\d+$/.test(f.min_memory)) q.min_memory = f.min_memory;
  if (/^\d+$/.test(f.min_queue)) q.min_queue = f.min_queue;
  if (f.window_ms > 0) q.window_ms = f.window_ms;
  else if (cursor) q.cursor = cursor;
  return q;
}

export default {
  id: 'processes',
  title: 'Processes',
  key: 'p',

  mount(el, ctx) {
    loadStyles();
    const v = { el, ctx, cursors: [null], page: 0, seq: 0, rows: [], ops: null, poller: null, dead: false };
    view = v;
    put(el, build(v));
    // A filter changed from outside (back button, a followed link): redraw and reload from page 1.
    v.unwatch = watch(ctx, Object.values(K), () => {
      put(el, build(v));
      v.cursors = [null];
      v.page = 0;
      load(v);
    });
    operations(ctx).then((ops) => {
      v.ops = ops;
      if (!v.dead) renderRows(v);
    }).catch(() => {});
    load(v);
  },

  unmount() {
    if (!view) return;
    view.dead = true;
    view.unwatch();
    closeDialogs();
    if (view.poller) view.poller.stop();
    view = null;
  },
};

// ------------------------------------------------------------------ layout

function build(v) {
  const { ctx } = v;
  const f = read(ctx);
  const nodes = (typeof ctx.nodes === 'function' ? ctx.nodes() : []) || [];
  const nodeNames = nodes.map((n) => (typeof n === 'string' ? n : n.node || n.name)).filter(Boolean);
  if (f.node && !nodeNames.includes(f.node)) nodeNames.unshift(f.node);

  const set = (key, value) => {
    setState(ctx, key, value === '' || value === 0 ? null : value);
    v.cursors = [null];
    v.page = 0;
    load(v);
  };

  const field = (label, input) => h('label', { class: 'vb-field' }, h('span', {}, label), input);
  let debounce = null;
  const text = (key, attrs) => h('input', Object.assign({
    type: 'text', value: ctx.state.get(key) || '', spellcheck: false, autocomplete: 'off',
    oninput: (e) => {
      clearTimeout(debounce);
      const value = e.target.value.trim();
      debounce = setTimeout(() => set(key, value), 450);
    },
    onkeydown: (e) => {
      if (e.key === 'Enter') {
        clearTimeout(debounce);
        set(key, e.target.value.trim());
      }
    },
  }, attrs));
  const select = (key, options, current, attrs = {}) => h('select', Object.assign({
    onchange: (e) => set(key, e.target.value),
  }, attrs), options.map(([value, label]) => h('option', { value, selected: String(value) === String(current) }, label)));

  v.nodeSelect = select(K.node, [['', 'All nodes'], ...nodeNames.map((n) => [n, n])], f.node, { 'data-filter': 'node' });
  v.status = h('div', { class: 'vb-status', 'aria-live': 'polite' });
  v.notice = h('div', { class: 'vb-notice', hidden: true });
  v.tbody = h('tbody');
  v.thead = h('thead');
  v.pager = h('div', { class: 'vb-pager' });
  v.roHint = h('span', {
    class: 'vb-chip', hidden: true, 'data-readonly': 'true',
    title: 'This endpoint serves no control operation: kill, send and trace are not offered.',
  }, 'read-only: kill, send and trace hidden');
  v.auto = h('input', {
    type: 'checkbox',
    checked: !!v.poller,
    onchange: (e) => setAuto(v, e.target.checked),
  });

  const filters = h('div', { class: 'vb-toolbar', role: 'search' },
    field('Node', v.nodeSelect),
    field('Application', text(K.app, { placeholder: 'any', size: 12, 'data-filter': 'application' })),
    field('Type', select(K.type, [['', 'any'], ...TYPES.map((t) => [t, t])], f.type, { 'data-filter': 'type' })),
    field('Name', text(K.name, { placeholder: 'glob, e.g. Elixir.MyApp.*', size: 20, class: 'filter', 'data-filter': 'name' })),
    field('Min memory (B)', text(K.minMem, { placeholder: '0', size: 8, inputmode: 'numeric', 'data-filter': 'min_memory' })),
    field('Min queue', text(K.minQueue, { placeholder: '0', size: 5, inputmode: 'numeric', 'data-filter': 'min_queue' })),
    h('button', {
      type: 'button', class: 'vb-link', title: 'Clear every filter',
      onclick: () => {
        for (const k of [K.node, K.app, K.type, K.name, K.minMem, K.minQueue]) setState(ctx, k, null);
        put(v.el, build(v));
        v.cursors = [null];
        v.page = 0;
        load(v);
      },
    }, 'Clear filters'));

  const modes = h('div', { class: 'vb-toolbar vb-secondary' },
    field('Sort by', select(K.sort, SORTS, f.sort_by, { 'data-control': 'sort' })),
    field('Window', select(K.window, WINDOWS, f.window_ms, {
      'data-control': 'window',
      title: 'Rank by change over this interval (reductions per second, memory or queue growth)',
    })),
    field('Rows', select(K.limit, LIMITS.map((n) => [n, String(n)]), f.limit, { 'data-control': 'limit' })),
    h('button', { type: 'button', class: 'vb-button', 'data-action': 'refresh', onclick: () => load(v) }, 'Refresh'),
    h('label', { class: 'vb-check', title: 'Reload the page every 5 s' }, v.auto, 'Auto-refresh'));

  return h('section', { class: 'vb-view vb-processes' },
    h('div', { class: 'vb-head' }, h('h2', {}, 'Processes'), v.status, v.roHint),
    filters, modes, v.notice,
    h('div', { class: 'vb-table-wrap' }, h('table', { class: 'vb-table', id: 'process-table' }, v.thead, v.tbody)),
    v.pager);
}

// The node filter offers the nodes that answered and the topology's (a mode
// switch or a joining node changes them while the view is open).
function syncNodes(v, answered) {
  const topo = (typeof v.ctx.nodes === 'function' ? v.ctx.nodes() : []) || [];
  const chosen = v.nodeSelect.value;
  const names = [...new Set([...topo, ...answered, chosen].filter(Boolean).map(String))].sort(byNode);
  const have = [...v.nodeSelect.options].slice(1).map((o) => o.value);
  if (have.join('\u0000') === names.join('\u0000')) return;
  put(v.nodeSelect, h('option', { value: '' }, 'All nodes'),
    names.map((n) => h('option', { value: n, selected: n === chosen }, n)));
  v.nodeSelect.value = chosen;
}

function setAuto(v, on) {
  if (v.poller) v.poller.stop();
  v.poller = null;
  if (on) {
    let first = true;
    v.poller = poll(() => {
      if (first) {
        first = false;
        return null;
      }
      return load(v);
    }, () => Math.max(5000, read(v.ctx).window_ms + 2000));
  }
}

// ------------------------------------------------------------------ data

async function load(v) {
  const { ctx } = v;
  const f = read(ctx);
  const seq = ++v.seq;
  const windowed = f.window_ms > 0;
  if (windowed && !WINDOW_SORTS.includes(f.sort_by)) f.sort_by = 'reductions';
  v.status.textContent = windowed ? `Measuring over ${f.window_ms / 1000} s…` : 'Loading…';
  v.status.classList.add('vb-busy');
  try {
    const answer = await ctx.api('GET', '/api/v1/cluster/processes', { query: query(f, v.cursors[v.page]) });
    if (seq !== v.seq || v.dead) return;
    const data = unwrap(answer);
    v.rows = data.processes || [];
    v.data = data;
    syncNodes(v, data.nodes || []);
    v.windowed = windowed;
    v.sort = data.sort_by || f.sort_by;
    v.next = data.next_cursor || null;
    notice(v.notice, 'info', '');
    renderHead(v);
    renderRows(v);
    renderPager(v);
    const errs = nodeErrors(answer);
    const ignored = [['min_memory', 'Min memory'], ['min_queue', 'Min queue']]
      .filter(([key]) => f[key] && !/^\d+$/.test(f[key])).map(([, label]) => label);
    const nodes = (data.nodes || []).length;
    const parts = [
      `${v.rows.length} process${v.rows.length === 1 ? '' : 'es'} on this page`,
      `${nodes} node${nodes === 1 ? '' : 's'}`,
    ];
    if (windowed && data.window) {
      parts.push(`window ${num(data.window.interval_ms)} ms, ${num(data.window.matched)} matched`);
    }
    parts.push(`at ${clock(Date.now())}`);
    v.status.textContent = parts.join(' · ');
    if (errs.length) {
      notice(v.notice, 'warn', 'Partial: ' + errs.map((e) => `${e.node}: ${e.reason || e.status}`).join('; '));
    } else if (ignored.length) {
      notice(v.notice, 'warn', `${ignored.join(' and ')}: a whole number is expected; not applied.`);
    }
  } catch (err) {
    if (seq !== v.seq || v.dead) return;
    v.status.textContent = '';
    notice(v.notice, 'error', errorText(err));
  } finally {
    if (seq === v.seq) v.status.classList.remove('vb-busy');
  }
}

function columns(v) {
  if (v.windowed) {
    return [
      ['process', 'Process · current function'], ['node', 'Node'], ['application', 'Application'], ['type', 'Type'],
      ['memory', 'Memory Δ', 'num'], ['reductions', 'Reductions/s', 'num'],
      ['message_queue_len', 'Queue Δ', 'num'], ['status', 'Status'], ['actions', ''],
    ];
  }
  return [
    ['process', 'Process · current function'], ['node', 'Node'], ['application', 'Application'], ['type', 'Type'],
    ['memory', 'Memory', 'num'], ['reductions', 'Reductions', 'num'], ['message_queue_len', 'Queue', 'num'],
    // The heap column only when ranking by it (the info dialog has it always).
    v.sort === 'heap_size' ? ['heap_size', 'Heap (words)', 'num'] : null,
    ['status', 'Status'], ['actions', ''],
  ].filter(Boolean);
}

function renderHead(v) {
  const sortable = v.windowed ? WINDOW_SORTS : SORTS.map(([s]) => s);
  put(v.thead, h('tr', {}, columns(v).map(([key, label, kind]) => {
    if (!sortable.includes(key)) return h('th', { class: `vb-col-${key} ${kind === 'num' ? 'vb-num' : ''}`, scope: 'col' }, label);
    const active = v.sort === key;
    return h('th', { class: `vb-num vb-sortable ${active ? 'vb-active' : ''}`, scope: 'col', 'aria-sort': active ? 'descending' : 'none' },
      h('button', {
        type: 'button', title: `Sort by ${label.toLowerCase()}, largest first`, 'data-sort': key,
        onclick: () => {
          setState(v.ctx, K.sort, key);
          const select = v.el.querySelector('[data-control="sort"]');
          if (select) select.value = key;
          v.cursors = [null];
          v.page = 0;
          load(v);
        },
      }, label, active ? ' ▾' : ''));
  })));
}

function renderRows(v) {
  if (!v.thead.firstChild) return;
  const ops = v.ops;
  const acts = {
    info: !ops || can(v.ctx, ops, 'get_process_info'),
    kill: ops && can(v.ctx, ops, 'kill_process'),
    send: ops && can(v.ctx, ops, 'send_message'),
    trace: ops && can(v.ctx, ops, 'trace_process'),
  };
  if (ops && v.roHint) {
    v.roHint.hidden = acts.kill || acts.send || acts.trace;
  }
  if (!v.rows.length) {
    put(v.tbody, h('tr', {}, h('td', { colspan: columns(v).length, class: 'vb-empty' },
      'No process matches these filters.')));
    return;
  }
  const nodes = (v.data && v.data.nodes) || [];
  // Virtual nodes (simulated mode) run no code: nothing to send to or trace there.
  const topology = typeof v.ctx.topology === 'function' ? v.ctx.topology() : null;
  const virtual = new Set(((topology && topology.nodes) || []).filter((n) => n && n.simulated).map((n) => n.node));
  put(v.tbody, ...v.rows.map((row) => {
    const real = !row.simulated && !virtual.has(row.node);
    const label = processLabel(row);
    const cells = v.windowed
      ? [
        h('td', { class: 'vb-num' }, signedBytes(row.memory_delta)),
        h('td', { class: 'vb-num' }, num(row.reductions_per_sec, 0)),
        h('td', { class: 'vb-num' }, signed(row.message_queue_len_delta)),
      ]
      : [
        h('td', { class: 'vb-num' }, bytes(row.memory)),
        h('td', { class: 'vb-num' }, num(row.reductions)),
        h('td', { class: `vb-num ${row.message_queue_len > 1000 ? 'vb-hot' : ''}` }, num(row.message_queue_len)),
        v.sort === 'heap_size' ? h('td', { class: 'vb-num' }, num(row.heap_size)) : null,
      ];
    return h('tr', { dataset: { pid: row.pid, node: row.node, app: row.application } },
      h('td', { class: 'vb-proc' },
        h('div', { class: 'vb-proc-name', title: label }, label),
        h('div', { class: 'vb-pid', title: `${row.pid}\ncurrent function: ${moduleText(row.current_function)}` },
          row.pid.split('@')[0], h('span', { class: 'vb-current' }, ' · ', moduleText(row.current_function)))),
      h('td', { class: 'vb-node', title: row.node }, nodeLabel(row.node, nodes, 26)),
      h('td', { class: 'vb-col-application' }, row.application === 'undefined' ? h('span', { class: 'vb-dim' }, 'none') : row.application),
      h('td', { class: 'vb-col-type' }, row.type),
      cells,
      h('td', { class: 'vb-col-status' }, h('span', { class: `vb-pill vb-st-${row.status}` }, row.status)),
      h('td', { class: 'vb-actions' },
        acts.info ? h('button', { type: 'button', 'data-action': 'info', title: 'Full info and state (needs the token)', onclick: () => infoDialog(v, row) }, 'Info') : null,
        acts.kill ? h('button', { type: 'button', class: 'vb-danger mutating', 'data-action': 'kill', onclick: () => killDialog(v, row) }, 'Kill') : null,
        acts.send && real ? h('button', { type: 'button', class: 'mutating', 'data-action': 'send', onclick: () => sendDialog(v, row) }, 'Send') : null,
        acts.trace && real ? h('button', {
          type: 'button', class: 'mutating', 'data-action': 'trace', title: 'Open a trace session on this process',
          onclick: () => goTo(v.ctx, 'traces', { 'trace.process': row.pid }),
        }, 'Trace') : null));
  }));
}

function signed(n) {
  if (n === undefined || n === null) return '–';
  return (n > 0 ? '+' : '') + num(n);
}

function signedBytes(n) {
  if (n === undefined || n === null) return '–';
  return (n > 0 ? '+' : '') + bytes(n);
}

function renderPager(v) {
  if (v.windowed) {
    put(v.pager, h('span', { class: 'vb-dim' }, 'Window mode ranks the top processes; no further pages.'));
    return;
  }
  const prev = h('button', {
    type: 'button', class: 'vb-button', 'data-page': 'prev', disabled: v.page === 0,
    onclick: () => {
      v.page = Math.max(0, v.page - 1);
      load(v);
    },
  }, '‹ Previous');
  const next = h('button', {
    type: 'button', class: 'vb-button', 'data-page': 'next', disabled: !v.next,
    onclick: () => {
      v.cursors[v.page + 1] = v.next;
      v.cursors.length = v.page + 2;
      v.page += 1;
      load(v);
    },
  }, 'Next ›');
  put(v.pager, prev, h('span', { class: 'vb-page' }, `Page ${v.page + 1}`), next);
}

// --------------------------------------------------------------- actions

function pidPath(pid) {
  return `/api/v1/processes/${encodeURIComponent(pid)}`;
}

async function infoDialog(v, row) {
  const out = h('div', { class: 'vb-info' }, h('p', { class: 'vb-dim' }, 'Loading…'));
  const d = dialog(`Process ${processLabel(row)}`, out, [], { wide: true });
  d.el.dataset.dialog = 'info';
  const result = await withToken(v.ctx, (token) =>
    authed(v.ctx, token, 'GET', pidPath(row.pid), { query: { state_timeout_ms: 2000 } }));
  if (!result.ok) {
    put(out, h('div', { class: 'vb-notice vb-error', 'data-result': 'refused' }, errorText(result.error)));
    return;
  }
  const info = unwrap(result.value);
  const refs = (list) => (list && list.length
    ? h('ul', { class: 'vb-refs' }, list.slice(0, 50).map((r) => {
      const text = typeof r === 'string' ? r : r.pid || r.name || JSON.stringify(r);
      return h('li', { class: 'vb-mono', title: text }, text.split('@')[0]);
    }),
      list.length > 50 ? h('li', { class: 'vb-dim' }, `… ${list.length - 50} more`) : null)
    : h('span', { class: 'vb-dim' }, 'none'));
  const none = (x) => (x === 'undefined' || x === '[]' ? 'none' : x);
  const wide = [
    ['Pid', info.pid], ['Node', info.node],
    ['Initial call', moduleText(info.initial_call)], ['Current function', moduleText(info.current_function)],
  ].filter(([, value]) => value);
  const facts = [
    ['Registered name', moduleText(none(info.registered_name))],
    ['Application', none(info.application)], ['Type', info.type], ['Status', info.status],
    ['Memory', bytes(info.memory)], ['Reductions', num(info.reductions)],
    ['Message queue', num(info.message_queue_len)], ['Heap (words)', num(info.heap_size)],
    ['Total heap (words)', num(info.total_heap_size)], ['Priority', info.priority],
    ['Traps exits', info.trap_exit === undefined ? undefined : String(info.trap_exit)],
    ['Protection', info.protected || info.protection],
  ].filter(([, value]) => value !== undefined && value !== null && value !== '');
  put(out, 
    h('dl', { class: 'vb-facts' },
      wide.map(([k, value]) => [h('dt', {}, k), h('dd', { class: 'vb-mono vb-span' }, String(value))]),
      facts.map(([k, value]) => [h('dt', {}, k), h('dd', {}, String(value))])),
    h('div', { class: 'vb-cols' },
      h('div', {}, h('h4', {}, 'Links'), refs(info.links)),
      h('div', {}, h('h4', {}, 'Monitors'), refs(info.monitors)),
      h('div', {}, h('h4', {}, 'Monitored by'), refs(info.monitored_by)),
      h('div', {}, h('h4', {}, 'Ancestors'), refs(info.ancestors))),
    h('h4', {}, 'State'),
    info.state_text !== undefined
      ? h('pre', { class: 'vb-pre', 'data-field': 'state' }, info.state_text)
      : h('p', { class: 'vb-dim' }, info.state_error ? `Not read: ${typeof info.state_error === 'string' ? info.state_error : JSON.stringify(info.state_error)}` : 'Not an OTP process: no state to read.'));
}

function killDialog(v, row) {
  const reason = h('select', { name: 'reason' },
    ['kill', 'shutdown', 'normal'].map((r) => h('option', { value: r }, r)),
    h('option', { value: '__text' }, 'other: {:shutdown, text}'));
  const custom = h('input', { type: 'text', name: 'reason_text', placeholder: 'text', hidden: true, maxlength: 200 });
  reason.addEventListener('change', () => { custom.hidden = reason.value !== '__text'; });
  const out = h('div', { class: 'vb-notice', hidden: true });
  const go = h('button', { type: 'button', class: 'vb-button vb-danger', 'data-confirm': 'kill' }, 'Kill process');
  const body = h('div', { class: 'vb-form-section' },
    h('p', {}, 'Send an exit signal to ', h('strong', {}, processLabel(row)), ' (', h('code', {}, row.pid), ').'),
    h('label', { class: 'vb-field vb-inline' }, h('span', {}, 'Reason'), reason, custom),
    h('p', { class: 'vb-dim' }, 'The runtime\u2019s vital processes are always refused; the node decides.'),
    out);
  const cancel = h('button', { type: 'button', class: 'vb-button', onclick: () => d.close() }, 'Cancel');
  const d = dialog('Kill process', body, [cancel, go]);
  d.el.dataset.dialog = 'kill';
  go.addEventListener('click', async () => {
    go.disabled = true;
    const why = reason.value === '__text' ? custom.value.trim() || 'killed from the dashboard' : reason.value;
    const result = await withToken(v.ctx, (token) =>
      authed(v.ctx, token, 'POST', `${pidPath(row.pid)}/kill`, { body: { reason: why } }));
    go.disabled = false;
    if (!result.ok) {
      out.dataset.result = result.refused ? 'refused' : 'error';
      notice(out, 'error', errorText(result.error));
      return;
    }
    const data = unwrap(result.value);
    out.dataset.result = data.exited ? 'exited' : 'alive';
    notice(out, data.exited ? 'ok' : 'warn', data.exited
      ? `Exited${data.exit_reason ? ` (${data.exit_reason})` : ''}.`
      : 'The signal was sent but the process is still alive (it may trap exits).');
    if (data.exited) {
      go.hidden = true;
      cancel.textContent = 'Close';
      const tr = v.tbody.querySelector(`tr[data-pid="${CSS.escape(row.pid)}"]`);
      if (tr) tr.classList.add('vb-gone');
      setTimeout(() => load(v), 600);
    }
  });
}

function sendDialog(v, row) {
  const message = h('textarea', { name: 'message', rows: 5, spellcheck: false, class: 'vb-mono' },
    '{"$tuple": [{"$atom": "ping"}, 1]}');
  const mode = h('select', { name: 'mode' },
    [['send', 'send (plain message)'], ['cast', 'GenServer cast'], ['call', 'GenServer call (waits for the reply)']]
      .map(([m, label]) => h('option', { value: m }, label)));
  const timeout = h('input', { type: 'number', name: 'timeout_ms', value: 5000, min: 1, max: 60000, step: 500 });
  // The timeout only matters to a call.
  const timeoutField = h('label', { class: 'vb-field', hidden: true }, h('span', {}, 'Call timeout (ms)'), timeout);
  mode.addEventListener('change', () => { timeoutField.hidden = mode.value !== 'call'; });
  const out = h('div', { class: 'vb-notice', hidden: true });
  const reply = h('pre', { class: 'vb-pre', hidden: true });
  const go = h('button', { type: 'button', class: 'vb-button vb-primary', 'data-confirm': 'send' }, 'Deliver');
  const body = h('div', { class: 'vb-form-section' },
    h('p', {}, 'To ', h('strong', {}, processLabel(row)), ' (', h('code', {}, row.pid), ').'),
    h('label', { class: 'vb-field vb-block' }, h('span', {}, 'Message (JSON: $atom, $tuple, $pid, $charlist)'), message),
    h('div', { class: 'vb-toolbar' },
      h('label', { class: 'vb-field' }, h('span', {}, 'Mode'), mode),
      timeoutField),
    out, reply);
  const d = dialog('Send a message', body, [
    h('button', { type: 'button', class: 'vb-button', onclick: () => d.close() }, 'Close'), go], { wide: true });
  d.el.dataset.dialog = 'send';
  go.addEventListener('click', async () => {
    let parsed;
    try {
      parsed = JSON.parse(message.value);
    } catch (err) {
      notice(out, 'error', `message: not JSON (${err.message})`);
      return;
    }
    go.disabled = true;
    const result = await withToken(v.ctx, (token) => authed(v.ctx, token, 'POST', `${pidPath(row.pid)}/message`, {
      body: { message: parsed, mode: mode.value, timeout_ms: Number(timeout.value) || 5000 },
    }));
    go.disabled = false;
    reply.hidden = true;
    if (!result.ok) {
      out.dataset.result = result.refused ? 'refused' : 'error';
      notice(out, 'error', errorText(result.error));
      return;
    }
    const data = unwrap(result.value);
    out.dataset.result = 'delivered';
    notice(out, 'ok', mode.value === 'call' ? 'Called; the reply:' : 'Delivered.');
    if (data.reply_text !== undefined) {
      reply.textContent = data.reply_text;
      reply.hidden = false;
    }
  });
}
