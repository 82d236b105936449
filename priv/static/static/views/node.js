// Node detail, in a drawer beside any view: status and cause, resources,
// top processes, active alerts, build info, Horde membership. Opened by a
// click on a node (state `node`), closed with Escape or the × button.

import { h, fmtBytes, fmtTime } from '../lib/dom.js';
import { ApiError } from '../lib/api.js';

let timer = null;
let token = 0;

function section(title, body, id) {
  return h('section', { class: 'detail-section', id }, h('h3', {}, title), body);
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) =>
    [h('dt', {}, k), h('dd', {}, v === null || v === '' ? '–' : String(v))]));
}

function unavailable(err) {
  if (err === undefined) return h('p', { class: 'muted' }, 'unavailable');
  if (err instanceof ApiError) {
    const reason = (err.error.details && err.error.details.reason) || err.error.message;
    return h('p', { class: 'muted' }, reason);
  }
  return h('p', { class: 'muted' }, String(err && err.message || err));
}

function failed(result) {
  if (result.skipped) return h('p', { class: 'muted' }, `Not asked: the node is ${result.skipped} as seen from here.`);
  return unavailable(result.err);
}

async function settle(p) {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, err };
  }
}

function pct(v) {
  return v === undefined || v === null ? undefined : `${Number(v).toFixed(1)} %`;
}

function resources(res) {
  const sample = res && res.sample;
  if (!sample) {
    return h('p', { class: 'muted' }, `No resource sample yet (${(res && res.status && res.status.reason) || 'the first one comes within a second'}).`);
  }
  const v = sample.values || {};
  const sch = sample.schedulers || {};
  return kv([
    ['memory', v.memory_total_bytes !== undefined ? `${fmtBytes(v.memory_total_bytes)} (${pct(v.memory_total_pct)} of the system)` : undefined],
    ['processes', v.process_count !== undefined ? `${v.process_count} (${pct(v.process_usage_pct)} of the limit)` : undefined],
    ['scheduler utilization', pct(v.scheduler_utilization_pct)],
    ['run queue / scheduler', v.run_queue_per_scheduler],
    ['schedulers online', sch.online],
    ['reductions / s', v.reductions_per_s !== undefined ? Number(v.reductions_per_s).toLocaleString() : undefined],
    ['longest message queue', v.max_message_queue_len],
    ['atoms', pct(v.atom_usage_pct)],
    ['ports', v.port_count !== undefined ? `${v.port_count} (${pct(v.port_usage_pct)})` : undefined],
    ['sampled at', fmtTime(sample.at_ms)],
  ]);
}

function processes(list) {
  const rows = (list && list.processes) || [];
  if (!rows.length) return h('p', { class: 'muted' }, 'no processes listed');
  return h('table', { class: 'compact' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'process'), h('th', { class: 'num' }, 'memory'),
      h('th', { class: 'num', title: 'message queue length' }, 'queue'),
      h('th', { class: 'num', title: 'reductions' }, 'reds'))),
    h('tbody', {}, rows.map((p) => h('tr', {},
      h('td', { title: `${p.pid}\n${p.current_function || ''}` }, p.registered_name || p.initial_call || p.pid),
      h('td', { class: 'num' }, fmtBytes(p.memory)),
      h('td', { class: 'num' }, p.message_queue_len),
      h('td', { class: 'num', title: String(p.reductions) }, compact(p.reductions))))));
}

const COMPACT = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });

function compact(n) {
  return n === undefined || n === null ? '–' : COMPACT.format(n);
}

function alertList(alerts) {
  if (!alerts.length) return h('p', { class: 'muted ok' }, 'no active alert');
  return h('ul', { class: 'alerts' }, alerts.map((a) =>
    h('li', { class: `sev-${a.severity}` },
      h('span', { class: 'sev' }, a.severity), ' ',
      h('strong', {}, a.metric || a.name || 'alert'), ' ',
      a.message || (a.value !== undefined ? `value ${a.value}` : ''))));
}

function horde(result, node) {
  if (!result.ok && result.unavailable !== undefined) {
    return h('div', { id: 'horde-status' },
      h('p', { class: 'muted' }, 'Horde not loaded on this node.'),
      h('p', { class: 'muted small' }, result.unavailable));
  }
  if (!result.ok) {
    const e = result.err;
    if (e instanceof ApiError && (e.status === 503 || e.status === 404)) {
      return h('p', { class: 'muted', id: 'horde-status' }, 'Horde not loaded on this node.');
    }
    return unavailable(e);
  }
  const data = result.value || {};
  const groups = [...(data.registries || []), ...(data.supervisors || [])];
  const mine = groups.filter((g) => (g.members || []).some((m) => m.node === node));
  if (!groups.length) return h('p', { class: 'muted', id: 'horde-status' }, 'Horde is loaded; no registry or supervisor runs here.');
  return h('ul', { id: 'horde-status' }, groups.map((g) => {
    const m = (g.members || []).find((x) => x.node === node);
    return h('li', {}, h('strong', {}, g.name || g.registry || g.supervisor || '?'), ': ',
      m ? `member (${m.status || 'member'})` : 'not a member');
  }), mine.length ? null : h('li', { class: 'muted' }, 'this node is in none of them'));
}

// Demo mode (make demo): cut, freeze or heal a demo peer from here, to
// watch detection happen. Shown only when this build has the demo
// operations, the node runs the demo, and this node is one of its peers;
// hidden in read-only mode.
async function demoControls(el, ctx, node) {
  if (ctx.readOnly || !ctx.hasOperation('demo_status') || !ctx.hasOperation('demo_cut_node')) return null;
  let demo;
  try {
    demo = await ctx.api('GET', '/api/v1/demo');
  } catch (_) {
    return null;
  }
  const peer = demo && demo.active && (demo.peers || []).find((p) => p.node === node);
  if (!peer) return null;
  const fault = peer.fault || 'none';
  const act = (what) => async () => {
    try {
      await ctx.api('POST', `/api/v1/demo/nodes/${encodeURIComponent(node)}/${what}`, { body: {} });
      await load(el, ctx, node);
    } catch (err) {
      ctx.showError(err);
    }
  };
  return section('Demo faults', h('div', { class: 'demo-controls mutating' },
    h('p', { class: 'muted' }, `Current fault: ${fault}. Watch the overview and the timeline as ClusterScope detects it.`),
    h('button', { id: 'demo-cut', onclick: act('cut'), disabled: fault === 'cut' }, 'Cut its links'),
    h('button', { id: 'demo-freeze', onclick: act('freeze'), disabled: fault === 'frozen' }, 'Freeze (SIGSTOP)'),
    h('button', { id: 'demo-heal', class: 'primary', onclick: act('heal'), disabled: fault === 'none' }, 'Heal')), 'node-demo');
}

async function load(el, ctx, node) {
  const mine = ++token;
  const enc = encodeURIComponent(node);
  const hordeOp = ctx.operations.find((o) => o.name === 'horde_cluster_members');
  const info = await settle(ctx.api('GET', `/api/v1/cluster/nodes/${enc}`));
  // A node that is not up cannot be asked: say so instead of three errors.
  const status0 = info.ok ? info.value.status : 'unknown';
  const reachable = info.ok && status0 === 'up';
  const skipped = { ok: false, skipped: status0 };
  const ask = (path, opts) => (reachable ? settle(ctx.api('GET', path, opts)) : Promise.resolve(skipped));
  const [res, build, procs, alerts, hordeRes, demo] = await Promise.all([
    ask(`/api/v1/cluster/nodes/${enc}/resources`),
    ask(`/api/v1/cluster/nodes/${enc}/build`),
    ask('/api/v1/cluster/processes', { query: { node, limit: 8, sort_by: 'memory' } }),
    settle(ctx.api('GET', '/api/v1/cluster/alerts')),
    // Without Horde the operation is listed unavailable: say so, no call.
    hordeOp && hordeOp.available
      ? settle(ctx.api('GET', '/api/v1/horde/members'))
      : Promise.resolve({ ok: false, unavailable: hordeOp ? hordeOp.unavailable_reason : 'not served here' }),
    demoControls(el, ctx, node),
  ]);
  if (mine !== token) return;
  const i = info.ok ? info.value : null;
  const live = (i && i.live) || {};
  const status = i ? i.status : 'unknown';
  const body = el.querySelector('.drawer-body');
  body.replaceChildren(...[
    h('div', { class: 'node-status' },
      h('span', { class: `status-pill status-${status}` }, status),
      i && i.simulated ? h('span', { class: 'status-pill simulated' }, 'simulated') : null,
      i && i.since_ms ? h('span', { class: 'muted' }, `since ${fmtTime(i.since_ms)}`) : null),
    i && (i.down_cause || i.down_reason)
      ? h('p', { class: 'cause' }, `cause: ${i.down_cause || i.down_reason}`)
      : null,
    info.ok ? null : unavailable(info.err),
    demo,
    !Object.keys(live).length ? null : section('Live', kv([
      ['OTP', live.otp_release],
      ['processes', live.process_count !== undefined ? `${live.process_count} / ${live.process_limit}` : undefined],
      ['memory', live.memory_bytes ? fmtBytes(live.memory_bytes.total) : undefined],
      ['schedulers', live.schedulers],
      ['uptime', live.uptime_ms !== undefined ? `${Math.round(live.uptime_ms / 1000)} s` : undefined],
      ['connected to', live.connected_nodes ? live.connected_nodes.length : undefined],
    ]), 'node-live'),
    section('Resources', res.ok ? resources(res.value) : failed(res), 'node-resources'),
    section('Top processes (memory)', procs.ok ? processes(procs.value) : failed(procs), 'node-processes'),
    section('Alerts', alerts.ok ? alertList((alerts.value.alerts || []).filter((a) => a.node === node)) : unavailable(alerts.err), 'node-alerts'),
    section('Build', build.ok ? kv([
      ['ClusterScope', build.value.cluster_scope_version],
      ['Elixir', build.value.elixir_version],
      ['OTP', build.value.otp_release],
      ['native core', build.value.native && `${build.value.native.core_version} (${build.value.native.profile}, ${build.value.native.target})`],
    ]) : failed(build), 'node-build'),
    section('Horde', horde(hordeRes, node), 'node-horde'),
  ].filter(Boolean));
  el.dataset.loaded = 'true';
}

export default {
  id: 'node',
  title: 'Node',
  async mount(el, ctx) {
    const node = ctx.state.get('node');
    el.dataset.loaded = 'false';
    el.replaceChildren(
      h('div', { class: 'drawer-head' },
        h('h2', { id: 'node-title', title: node }, node),
        h('button', { class: 'close', 'aria-label': 'Close (Esc)', title: 'Close (Esc)', onclick: () => ctx.select(null) }, '×')),
      h('div', { class: 'drawer-body' }, h('p', { class: 'muted' }, 'loading…')));
    await load(el, ctx, node);
    clearInterval(timer);
    timer = setInterval(() => load(el, ctx, node).catch(() => {}), 5000);
  },
  unmount() {
    clearInterval(timer);
    token += 1;
  },
};
