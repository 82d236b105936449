// Trace sessions: start one on a process (its messages, or its calls of a
// function pattern) or on a function pattern across nodes (trace_process),
// watch its events (streamed: the shell's live stream with the topic
// `trace:<id>` for as long as the session is selected; polled from the last
// cursor of get_trace_events when the stream is unavailable), its
// counters per node (kept, dropped, pauses, overhead: list_trace_sessions)
// and stop it (stop_trace_session). Reading sessions and events needs the
// sensitive token, starting and stopping the control one: the shell asks
// for it once per browser session.

import {
  h, put, nodeLabel, num, clock, moduleText, unwrap, operations, can, errorText, withToken, authed, poll,
  notice, loadStyles, setState, watch, byNode,
} from './common.js';

const K = { session: 'trace.session', process: 'trace.process', kind: 'trace.kind' };
const MAX_EVENTS_SHOWN = 500;

let view = null;

export default {
  id: 'traces',
  title: 'Traces',
  key: 't',

  mount(el, ctx) {
    loadStyles();
    const v = {
      el, ctx, dead: false, sessions: [], selected: ctx.state.get(K.session) || null,
      events: [], cursor: null, eventsFor: null, ops: null, needToken: false,
    };
    view = v;
    v.notice = h('div', { class: 'vb-notice', hidden: true });
    v.form = h('div', { class: 'vb-card vb-trace-form' });
    v.list = h('div', { class: 'vb-card vb-sessions' });
    v.detail = h('div', { class: 'vb-card vb-session' });
    put(el, h('section', { class: 'vb-view vb-traces' },
      h('div', { class: 'vb-head' }, h('h2', {}, 'Trace sessions'),
        h('div', { class: 'vb-status' }, 'Throttled: a session can never take a node down.')),
      v.notice,
      h('div', { class: 'vb-split' },
        h('div', { class: 'vb-side' }, v.form, v.list),
        v.detail)));
    renderDetail(v);
    put(v.list, h('h3', {}, 'Sessions'), h('p', { class: 'vb-dim' }, 'Loading…'));
    operations(ctx).then((ops) => {
      v.ops = ops;
      if (!v.dead) {
        renderForm(v);
        renderDetail(v);
      }
    }).catch((err) => notice(v.notice, 'error', errorText(err)));
    renderForm(v);
    v.unwatch = watch(ctx, [K.session], () => {
      const id = ctx.state.get(K.session);
      if (id && id !== v.selected) select(v, id);
    });
    v.sessionPoll = poll(() => loadSessions(v), () => (running(v) ? 1_000 : 4_000));
    // Reads nothing while the stream carries the session's events.
    v.eventPoll = poll(() => loadEvents(v), () => (streaming(v) ? 2_000 : 500));
  },

  unmount() {
    if (!view) return;
    view.dead = true;
    view.unwatch();
    view.sessionPoll.stop();
    view.eventPoll.stop();
    unfollow(view);
    view = null;
  },
};

function running(v) {
  const s = v.sessions.find((x) => x.id === v.selected);
  return s && s.status === 'running';
}

// --------------------------------------------------------------- the form

function renderForm(v) {
  const { ctx } = v;
  const allowed = !v.ops || can(ctx, v.ops, 'trace_process');
  if (!allowed) {
    put(v.form, h('h3', {}, 'New session'),
      h('p', { class: 'vb-dim', 'data-readonly': 'true' },
        ctx.readOnly ? 'This node is read-only: trace sessions cannot be started from here.'
          : 'This node does not serve trace_process.'));
    return;
  }
  const prefill = ctx.state.get(K.process) || '';
  let kind = ctx.state.get(K.kind) || (prefill ? 'process' : 'process');
  const nodes = ((typeof ctx.nodes === 'function' ? ctx.nodes() : []) || [])
    .map((n) => (typeof n === 'string' ? n : n.node || n.name)).filter(Boolean);

  const input = (name, attrs = {}) => h('input', Object.assign({ type: 'text', name, spellcheck: false, autocomplete: 'off' }, attrs));
  const f = {
    process: input('process', { value: prefill, placeholder: '0.123.0@node@host' }),
    name: input('name', { placeholder: 'registered name, e.g. my_server' }),
    messages: h('select', { name: 'messages' },
      [['both', 'sent and received'], ['send', 'sent'], ['receive', 'received'], ['', 'none (calls only)']]
        .map(([value, label]) => h('option', { value }, label))),
    module: input('module', { placeholder: 'MyApp.Worker' }),
    function: input('function', { placeholder: '_ (any)', size: 10 }),
    arity: input('arity', { placeholder: '_', size: 3 }),
    ret: h('input', { type: 'checkbox', name: 'return' }),
    nodes: h('select', { name: 'nodes', multiple: true, size: Math.min(4, Math.max(2, nodes.length)), title: 'None selected: every node' },
      nodes.map((n) => h('option', { value: n }, n))),
    duration: h('input', { type: 'number', name: 'duration_s', value: 30, min: 1, max: 600 }),
    maxEvents: h('input', { type: 'number', name: 'max_events', value: 1000, min: 1, max: 1000000 }),
    rate: h('input', { type: 'number', name: 'rate', value: 200, min: 1, max: 100000 }),
  };
  const out = h('div', { class: 'vb-notice', hidden: true });
  const row = (label, ...inputs) => h('label', { class: 'vb-field vb-block' }, h('span', {}, label), ...inputs);
  const sections = {
    process: h('div', { class: 'vb-form-section' },
      row('Process', f.process),
      row('Messages', f.messages)),
    name: h('div', { class: 'vb-form-section' },
      row('Registered name', f.name),
      row('Messages', f.messages.cloneNode(true))),
    function: null,
  };
  const pattern = h('fieldset', { class: 'vb-pattern' },
    h('legend', {}, 'Function pattern'),
    h('div', { class: 'vb-row3' },
      row('Module', f.module), row('Function', f.function), row('Arity', f.arity)),
    h('label', { class: 'vb-check' }, f.ret, 'Return values and exceptions'));
  const nodeRow = row('Nodes (none selected: all)', f.nodes);
  const tabs = h('div', { class: 'vb-segmented', role: 'radiogroup', 'aria-label': 'Trace target' },
    [['process', 'Process'], ['name', 'Name'], ['function', 'Function']].map(([value, label]) => h('label', { class: 'vb-seg' },
      h('input', {
        type: 'radio', name: 'trace-kind', value, checked: kind === value,
        onchange: () => {
          kind = value;
          setState(ctx, K.kind, value === 'process' ? null : value);
          show();
        },
      }), h('span', {}, label))));
  const body = h('div', { class: 'vb-form-section' });
  const show = () => {
    put(body, sections[kind], pattern, kind !== 'process' ? nodeRow : null);
    pattern.querySelector('legend').textContent = kind === 'function' ? 'Function pattern' : 'Function pattern (optional)';
  };
  show();

  const start = h('button', { type: 'submit', class: 'vb-button vb-primary mutating', 'data-action': 'start-trace' }, 'Start tracing');
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      const spec = {
        duration_ms: Math.round((Number(f.duration.value) || 30) * 1000),
        max_events: Number(f.maxEvents.value) || 1000,
        rate: Number(f.rate.value) || 200,
      };
      const messages = (kind === 'name' ? sections.name.querySelector('select') : f.messages).value;
      if (kind === 'process') {
        if (!f.process.value.trim()) return notice(out, 'error', 'process: give a pid (as the processes view shows it)');
        spec.process = f.process.value.trim();
      }
      if (kind === 'name') {
        if (!f.name.value.trim()) return notice(out, 'error', 'name: give a registered name');
        spec.name = f.name.value.trim();
      }
      if (kind !== 'function' && messages) spec.messages = messages;
      if (f.module.value.trim()) {
        spec.module = f.module.value.trim();
        spec.function = f.function.value.trim() || '_';
        spec.arity = f.arity.value.trim() || '_';
        if (f.ret.checked) spec.return = true;
      } else if (kind === 'function') {
        return notice(out, 'error', 'module: a function pattern needs a module');
      }
      if (kind !== 'process') {
        const chosen = [...f.nodes.selectedOptions].map((o) => o.value);
        if (chosen.length) spec.nodes = chosen;
      }
      start.disabled = true;
      const result = await withToken(ctx, (token) => authed(ctx, token, 'POST', '/api/v1/trace/sessions', { body: spec }));
      start.disabled = false;
      if (!result.ok) {
        out.dataset.result = result.refused ? 'refused' : 'error';
        notice(out, 'error', errorText(result.error) + fieldErrors(result.error));
        return;
      }
      const session = unwrap(result.value);
      out.dataset.result = 'started';
      notice(out, 'ok', `Started ${session.id}.`);
      setState(ctx, K.process, null);
      upsert(v, session);
      select(v, session.id);
    },
  }, tabs, body,
  h('div', { class: 'vb-row3 vb-limits' }, row('Duration (s)', f.duration), row('Max events / node', f.maxEvents), row('Rate / s / node', f.rate)),
  h('div', { class: 'vb-actions-row' }, start), out);
  put(v.form, h('h3', {}, 'New session'), form);
}

function fieldErrors(err) {
  const list = err && err.error && err.error.details && err.error.details.errors;
  if (!Array.isArray(list) || !list.length) return '';
  return ' (' + list.map((e) => `${e.field}: ${e.message}`).join('; ') + ')';
}

// ---------------------------------------------------------------- sessions

async function loadSessions(v) {
  if (v.needToken) return;
  const result = await withToken(v.ctx, (token) => authed(v.ctx, token, 'GET', '/api/v1/trace/sessions', { query: { limit: 50 } }));
  if (v.dead) return;
  if (!result.ok) {
    v.needToken = true;
    put(v.list, h('h3', {}, 'Sessions'),
      h('div', { class: 'vb-notice vb-error', 'data-result': result.refused ? 'refused' : 'error' }, errorText(result.error)),
      h('button', {
        type: 'button', class: 'vb-button',
        onclick: () => {
          v.needToken = false;
          v.sessionPoll.now();
        },
      }, 'Try again'));
    return;
  }
  v.needToken = false;
  const data = unwrap(result.value);
  v.sessions = data.sessions || [];
  renderList(v);
  renderDetail(v);
  follow(v);
}

function upsert(v, session) {
  const i = v.sessions.findIndex((s) => s.id === session.id);
  if (i >= 0) v.sessions[i] = session;
  else v.sessions.unshift(session);
  renderList(v);
}

function select(v, id) {
  v.selected = id;
  setState(v.ctx, K.session, id);
  if (v.eventsFor !== id) {
    v.drained = null;
    v.events = [];
    v.cursor = null;
    v.eventsFor = id;
    v.missed = 0;
    v.seen = new Set();
  }
  renderList(v);
  renderDetail(v);
  follow(v);
  v.eventPoll.now();
}

// ------------------------------------------------------------------ stream

// The selected session's events through the live stream (topic
// `trace:<id>`, which needs the token the session list was read with).
// Subscribed once the session is known; the stream replays the session
// from its first event, then carries each new one. When the stream is
// unavailable (polling transport, topic refused) the events are polled.
function follow(v) {
  const id = v.selected;
  if (!id || v.needToken || !v.sessions.some((s) => s.id === id)) return;
  if (v.stream && v.stream.id === id) return;
  unfollow(v);
  if (typeof v.ctx.subscribe !== 'function') return;
  const stream = { id, state: 'connecting', reason: null };
  v.stream = stream;
  stream.off = v.ctx.subscribe(`trace:${id}`,
    (e) => {
      if (v.dead || v.stream !== stream) return;
      addEvents(v, [e]);
    },
    ({ state, reason }) => {
      if (v.dead || v.stream !== stream) return;
      stream.state = state;
      stream.reason = reason;
      if (state === 'unavailable') {
        // Poll from the session's start: what the stream already gave is
        // recognised and not shown twice.
        v.cursor = null;
        v.drained = null;
        v.eventPoll.now();
      }
      renderNote(v);
    });
  renderNote(v);
}

function unfollow(v) {
  if (!v.stream) return;
  const { off } = v.stream;
  v.stream = null;
  if (off) off();
}

function streaming(v) {
  return !!(v.stream && v.stream.id === v.selected && v.stream.state !== 'unavailable');
}

function eventKey(e) {
  return `${e.node}|${e.ts_us}|${e.pid}|${e.kind}|${what(e)}`;
}

// Appends events not seen yet (a stream reconnect may repeat the events of
// one read; a switch to polling re-reads the session from its start).
function addEvents(v, events) {
  if (!v.seen) v.seen = new Set();
  let added = 0;
  for (const e of events) {
    const key = eventKey(e);
    if (v.seen.has(key)) continue;
    v.seen.add(key);
    v.events.push(e);
    added += 1;
  }
  if (!added) return;
  if (v.events.length > MAX_EVENTS_SHOWN) {
    v.events.splice(0, v.events.length - MAX_EVENTS_SHOWN);
    if (v.seen.size > 4 * MAX_EVENTS_SHOWN) v.seen = new Set(v.events.map(eventKey));
  }
  // One redraw per burst: the stream sends a read's events back to back.
  if (!v.renderPending) {
    v.renderPending = true;
    setTimeout(() => {
      v.renderPending = false;
      if (!v.dead) renderEvents(v);
    }, 50);
  }
}

function describe(s) {
  const parts = [];
  if (s.target) parts.push(s.target);
  if (s.pattern) parts.push(moduleText(s.pattern));
  if (s.messages && s.messages.length) parts.push(`messages: ${s.messages.join(' + ')}`);
  return parts.join(' · ') || s.id;
}

function totals(s) {
  const t = { kept: 0, seen: 0, dropped: 0, pauses: 0, overhead: 0, rate: 0 };
  for (const st of Object.values(s.per_node || {})) {
    t.kept += st.kept || 0;
    t.seen += st.seen || 0;
    t.dropped += dropped(st);
    t.pauses += st.pauses || 0;
    t.overhead = Math.max(t.overhead, st.overhead_avg || 0);
  }
  return t;
}

function dropped(st) {
  return (st.dropped_rate || 0) + (st.dropped_key || 0) + (st.dropped_limit || 0) + (st.dropped_unread || 0) + (st.too_large || 0);
}

function renderList(v) {
  const items = v.sessions.map((s) => {
    const t = totals(s);
    return h('li', {},
      h('button', {
        type: 'button', class: `vb-session-item ${s.id === v.selected ? 'vb-active' : ''}`, 'data-session': s.id,
        onclick: () => select(v, s.id),
      },
      h('span', { class: `vb-pill vb-st-${s.status}` }, s.status),
      h('span', { class: 'vb-session-what', title: describe(s) }, describe(s)),
      h('span', { class: 'vb-dim' }, `${clock(s.created_at_ms)} · ${num(t.kept)} kept`)));
  });
  put(v.list, h('h3', {}, 'Sessions'),
    items.length ? h('ul', { class: 'vb-session-list' }, items) : h('p', { class: 'vb-dim' }, 'No session yet.'));
}

// ------------------------------------------------------------------ detail

function renderDetail(v) {
  const s = v.sessions.find((x) => x.id === v.selected);
  if (!s) {
    put(v.detail, h('div', { class: 'vb-empty' },
      v.selected ? `Session ${v.selected} is not (or no longer) on this node.` : 'Start a session or choose one to see its events.'));
    v.detailFor = null;
    return;
  }
  if (v.detailFor !== s.id) {
    v.detailFor = s.id;
    v.counters = h('div', { class: 'vb-counters' });
    v.perNode = h('tbody');
    v.eventsBody = h('tbody');
    v.eventsNote = h('span', { class: 'vb-dim' });
    v.stopOut = h('div', { class: 'vb-notice', hidden: true });
    v.stopBtn = h('button', {
      type: 'button', class: 'vb-button vb-danger mutating', 'data-action': 'stop-trace',
      onclick: () => stop(v, s.id),
    }, 'Stop');
    v.head = h('div', { class: 'vb-session-head' });
    put(v.detail, 
      v.head, v.stopOut, v.counters,
      h('details', { class: 'vb-per-node' },
        h('summary', {}, 'Per node'),
        h('div', { class: 'vb-table-wrap' }, h('table', { class: 'vb-table vb-compact' },
          h('thead', {}, h('tr', {}, ['Node', 'Status', 'Seen', 'Kept', 'Dropped', 'Pauses', 'Rate now', 'Overhead avg', 'Stop reason']
            .map((x, i) => h('th', { scope: 'col', class: i >= 2 && i <= 7 ? 'vb-num' : null }, x)))),
          v.perNode))),
      h('div', { class: 'vb-events-head' }, h('h3', {}, 'Events'), v.eventsNote),
      h('div', { class: 'vb-table-wrap vb-events-wrap' }, h('table', { class: 'vb-table vb-compact', id: 'trace-events' },
        h('colgroup', {}, h('col', { class: 'vb-c-time' }), h('col', { class: 'vb-c-node vb-col-node' }),
          h('col', { class: 'vb-c-pid' }), h('col', { class: 'vb-c-kind' }), h('col', {})),
        h('thead', {}, h('tr', {}, ['Time', 'Node', 'Process', 'Kind', 'What'].map((x) => h('th', { scope: 'col', class: x === 'Node' ? 'vb-col-node' : null }, x)))),
        v.eventsBody)));
    renderEvents(v);
  }
  const canStop = !v.ops || can(v.ctx, v.ops, 'stop_trace_session');
  v.stopBtn.hidden = !canStop || s.status !== 'running';
  put(v.head, 
    h('div', {},
      h('h3', {}, describe(s)),
      h('div', { class: 'vb-dim' }, `${s.id} · started ${clock(s.created_at_ms)} · ${s.nodes.length} node${s.nodes.length === 1 ? '' : 's'} · limits: ${num((s.limits || {}).duration_ms / 1000)} s, ${num((s.limits || {}).max_events)} events, ${num((s.limits || {}).rate)}/s per node`)),
    h('div', { class: 'vb-session-actions' },
      h('span', { class: `vb-pill vb-st-${s.status}`, 'data-field': 'session-status' }, s.status), v.stopBtn));
  renderNote(v);
  const t = totals(s);
  const counter = (label, value, key, hint) => h('div', { class: 'vb-counter', dataset: { counter: key }, title: hint || '' },
    h('div', { class: 'vb-counter-value' }, value), h('div', { class: 'vb-counter-label' }, label));
  put(v.counters, 
    counter('Kept', num(t.kept), 'kept', 'events kept in the nodes\u2019 rings'),
    counter('Dropped', num(t.dropped), 'dropped', 'dropped by rate, per-process limit, event limit, size or unread'),
    counter('Seen', num(t.seen), 'seen'),
    counter('Pauses', num(t.pauses), 'pauses', 'times tracing was paused for being over budget'),
    counter('Overhead', `${(t.overhead * 100).toFixed(2)} %`, 'overhead', `share of one scheduler (ceiling ${((s.limits || {}).overhead_ceiling || 0) * 100} %)`));
  put(v.perNode, ...Object.entries(s.per_node || {}).sort(([a], [b]) => byNode(a, b)).map(([node, st]) => h('tr', {},
    h('td', { class: 'vb-node', title: node }, nodeLabel(node, Object.keys(s.per_node || {}))),
    h('td', {}, st.status),
    h('td', { class: 'vb-num' }, num(st.seen)),
    h('td', { class: 'vb-num' }, num(st.kept)),
    h('td', { class: 'vb-num' }, num(dropped(st))),
    h('td', { class: 'vb-num' }, num(st.pauses)),
    h('td', { class: 'vb-num' }, st.effective_rate === undefined ? '–' : `${num(st.effective_rate, 1)}/s`),
    h('td', { class: 'vb-num' }, st.overhead_avg === undefined ? '–' : `${(st.overhead_avg * 100).toFixed(2)} %`),
    h('td', {}, st.stop_reason || st.reason || ''))));
}

async function stop(v, id) {
  v.stopBtn.disabled = true;
  const result = await withToken(v.ctx, (token) => authed(v.ctx, token, 'DELETE', `/api/v1/trace/sessions/${encodeURIComponent(id)}`));
  if (v.dead) return;
  v.stopBtn.disabled = false;
  if (!result.ok) {
    v.stopOut.dataset.result = result.refused ? 'refused' : 'error';
    notice(v.stopOut, 'error', errorText(result.error));
    return;
  }
  v.stopOut.dataset.result = 'stopped';
  notice(v.stopOut, 'ok', 'Stopped on every node; its events stay readable for 10 minutes.');
  upsert(v, unwrap(result.value));
  renderDetail(v);
  v.sessionPoll.now();
}

// ------------------------------------------------------------------ events

async function loadEvents(v) {
  const id = v.selected;
  const session = v.sessions.find((s) => s.id === id);
  if (!id || v.needToken || !session || streaming(v)) return;
  // A stopped session's events are all read once a read comes back empty.
  if (session.status !== 'running' && v.drained === id) return;
  const query = { limit: 200 };
  if (v.cursor) query.cursor = v.cursor;
  const result = await withToken(v.ctx, (token) =>
    authed(v.ctx, token, 'GET', `/api/v1/trace/sessions/${encodeURIComponent(id)}/events`, { query }));
  if (v.dead || v.selected !== id) return;
  if (!result.ok) {
    v.eventsNote.textContent = errorText(result.error);
    return;
  }
  const data = unwrap(result.value);
  if (data.next_cursor) v.cursor = data.next_cursor;
  v.missed = (v.missed || 0) + (data.missed || 0);
  if ((data.events || []).length) {
    addEvents(v, data.events);
  } else {
    if (session.status !== 'running') v.drained = id;
    renderNote(v);
  }
  // A full page: more are waiting, read them now.
  if ((data.events || []).length >= query.limit) setTimeout(() => v.eventPoll.now(), 0);
}

function renderNote(v) {
  // How the events arrive, for the user (the note) and tests (the data
  // attribute): `stream`, `connecting` (the stream reconnects and will
  // replay), or `poll`.
  const transport = !v.stream || v.stream.id !== v.selected || v.stream.state === 'unavailable' ? 'poll'
    : v.stream.state === 'live' ? 'stream' : 'connecting';
  v.el.dataset.eventsTransport = transport;
  if (!v.eventsNote) return;
  const s = v.sessions.find((x) => x.id === v.selected);
  const how = {
    stream: 'streamed',
    connecting: 'stream reconnecting',
    poll: v.stream && v.stream.reason ? `polled (stream: ${v.stream.reason})` : 'polled every 0.5 s',
  }[transport];
  v.eventsNote.textContent = `${num(v.events.length)} shown (newest first, last ${MAX_EVENTS_SHOWN})` +
    (v.missed ? ` · ${num(v.missed)} overwritten before they were read` : '') +
    (s && s.status === 'running' ? ` · live, ${how}` : ` · session stopped, ${how}`);
  v.eventsNote.title = transport === 'stream' ? 'Server-Sent Events, topic trace:' + v.selected : '';
}

function renderEvents(v) {
  if (!v.eventsBody) return;
  renderNote(v);
  if (!v.events.length) {
    put(v.eventsBody, h('tr', {}, h('td', { colspan: 5, class: 'vb-empty' }, 'No event yet.')));
    return;
  }
  const rows = [];
  const nodes = [...new Set(v.events.map((e) => e.node))];
  for (let i = v.events.length - 1; i >= 0; i -= 1) {
    const e = v.events[i];
    rows.push(h('tr', { dataset: { kind: e.kind } },
      h('td', { class: 'vb-mono vb-nowrap' }, clock(e.ts_us / 1000)),
      h('td', { class: 'vb-node vb-col-node', title: e.node }, nodeLabel(e.node, nodes, 20)),
      h('td', { class: 'vb-mono vb-nowrap' }, String(e.pid || '').split('@')[0]),
      h('td', {}, h('span', { class: `vb-pill vb-kind-${e.kind}` }, e.kind)),
      h('td', { class: 'vb-mono vb-what', title: what(e) }, what(e))));
  }
  put(v.eventsBody, ...rows);
}

function what(e) {
  switch (e.kind) {
    case 'call': return `${moduleText(e.mfa)} ${e.args || ''}`;
    case 'return':
    case 'exception': return `${moduleText(e.mfa)} → ${e.result || ''}`;
    case 'send':
    case 'send_to_dead': return `${e.message || ''}  → ${e.to || ''}`;
    case 'receive': return e.message || '';
    default: return e.data || JSON.stringify(e);
  }
}
