// Operation latency: p50 and p99 of every operation, merged across the
// cluster and per node (operation_metrics: HDR histograms merged in the
// core). The matrix has one row per operation and one column per node;
// choosing a node shows that node's full figures.

import { h, put, nodeLabel, byNode, micros, num, clock, unwrap, nodeErrors, errorText, poll, notice, loadStyles, setState, watch } from './common.js';

const K = { node: 'latency.node', sort: 'latency.sort' };
const SORTS = { name: 'Operation', count: 'Calls', p50_us: 'p50', p99_us: 'p99' };

let view = null;

export default {
  id: 'latency',
  title: 'Latency',
  key: 'l',

  mount(el, ctx) {
    loadStyles();
    const v = { el, ctx, data: null, dead: false };
    view = v;
    v.status = h('div', { class: 'vb-status', 'aria-live': 'polite' });
    v.notice = h('div', { class: 'vb-notice', hidden: true });
    v.nodeSelect = h('select', {
      'data-control': 'node',
      onchange: (e) => {
        setState(ctx, K.node, e.target.value || null);
        render(v);
      },
    });
    v.body = h('div', { class: 'vb-table-wrap vb-latency-wrap' });
    put(el, h('section', { class: 'vb-view vb-latency' },
      h('div', { class: 'vb-head' }, h('h2', {}, 'Operation latency'), v.status),
      h('div', { class: 'vb-toolbar' },
        h('label', { class: 'vb-field' }, h('span', {}, 'Show'), v.nodeSelect),
        h('button', { type: 'button', class: 'vb-button', 'data-action': 'refresh', onclick: () => v.poller.now() }, 'Refresh'),
        h('span', { class: 'vb-hint' }, 'Server-side time of each operation on the node that ran it; p50 · p99.')),
      v.notice, v.body));
    v.unwatch = watch(ctx, [K.node, K.sort], () => render(v));
    v.poller = poll(() => load(v), 5_000, (err) => notice(v.notice, 'error', errorText(err)));
  },

  unmount() {
    if (!view) return;
    view.dead = true;
    view.unwatch();
    view.poller.stop();
    view = null;
  },
};

async function load(v) {
  v.status.classList.add('vb-busy');
  try {
    const answer = await v.ctx.api('GET', '/api/v1/metrics/operations');
    if (v.dead) return;
    v.data = unwrap(answer);
    v.at = Date.now();
    const errs = nodeErrors(answer);
    notice(v.notice, 'info', '');
    if (errs.length) notice(v.notice, 'warn', 'Partial: ' + errs.map((e) => `${e.node}: ${e.reason || e.status}`).join('; '));
    render(v);
  } finally {
    v.status.classList.remove('vb-busy');
  }
}

function sortRows(v, rows) {
  const sort = v.ctx.state.get(K.sort) || 'name';
  return rows.slice().sort((a, b) => (sort === 'name'
    ? a.name.localeCompare(b.name)
    : (b[sort] || 0) - (a[sort] || 0) || a.name.localeCompare(b.name)));
}

function sortHeader(v, key, extra = {}) {
  const active = (v.ctx.state.get(K.sort) || 'name') === key;
  return h('th', Object.assign({ scope: 'col', class: `vb-sortable ${key === 'name' ? '' : 'vb-num'} ${active ? 'vb-active' : ''}` }, extra),
    h('button', {
      type: 'button', 'data-sort': key,
      onclick: () => {
        setState(v.ctx, K.sort, key === 'name' ? null : key);
        render(v);
      },
    }, SORTS[key], active ? (key === 'name' ? ' ▴' : ' ▾') : ''));
}

function render(v) {
  const data = v.data;
  if (!data) return;
  const nodes = Object.keys(data.per_node || {}).sort(byNode);
  const chosen = v.ctx.state.get(K.node) || '';
  put(v.nodeSelect, 
    h('option', { value: '' }, 'All nodes: p50 · p99 per node'),
    nodes.map((n) => h('option', { value: n, selected: n === chosen }, n)));
  const skipped = (data.skipped_nodes || []).length;
  v.status.textContent = `${(data.operations || []).length} operations · ${nodes.length} node${nodes.length === 1 ? '' : 's'}` +
    (skipped ? ` · ${skipped} without ClusterScope` : '') + ` · at ${clock(v.at)}`;

  if (chosen && nodes.includes(chosen)) {
    renderNode(v, chosen, data.per_node[chosen] || []);
    return;
  }
  const ops = sortRows(v, data.operations || []);
  if (!ops.length) {
    put(v.body, h('p', { class: 'vb-empty' }, 'No operation has run yet.'));
    return;
  }
  const opsOf = new Map(nodes.map((n) => [n, new Map((data.per_node[n] || []).map((o) => [o.name, o]))]));
  const maxP99 = Math.max(1, ...ops.map((o) => o.p99_us || 0));
  put(v.body, h('table', { class: 'vb-table vb-matrix', id: 'latency-table' },
    h('thead', {},
      h('tr', {},
        h('th', { scope: 'col', rowspan: 2, class: 'vb-sticky' }, ''),
        h('th', { scope: 'colgroup', colspan: 4, class: 'vb-group' }, 'Cluster (merged)'),
        nodes.length ? h('th', { scope: 'colgroup', colspan: nodes.length, class: 'vb-group vb-per-node-group' }, 'Per node: p50 · p99') : null),
      h('tr', {},
        sortHeader(v, 'count'), sortHeader(v, 'p50_us'), sortHeader(v, 'p99_us'),
        h('th', { scope: 'col', class: 'vb-bar-col' }, 'p50 → p99'),
        nodes.map((n) => h('th', { scope: 'col', class: 'vb-node-col', title: n },
          h('button', { type: 'button', class: 'vb-link', onclick: () => { setState(v.ctx, K.node, n); render(v); } }, nodeLabel(n, nodes, 21)))))),
    h('tbody', {}, ops.map((op) => h('tr', { dataset: { op: op.name } },
      h('th', { scope: 'row', class: 'vb-sticky vb-mono' }, op.name),
      h('td', { class: 'vb-num' }, num(op.count)),
      h('td', { class: 'vb-num' }, micros(op.p50_us)),
      h('td', { class: `vb-num ${tone(op.p99_us)}` }, micros(op.p99_us)),
      h('td', { class: 'vb-bar-col' }, bar(op, maxP99)),
      nodes.map((n) => {
        const o = opsOf.get(n).get(op.name);
        return h('td', { class: 'vb-num vb-pair', dataset: { node: n }, title: o ? `${n}: ${num(o.count)} calls, p50 ${micros(o.p50_us)}, p99 ${micros(o.p99_us)}, max ${micros(o.max_us)}` : `${n}: not run there` },
          o ? [h('span', {}, micros(o.p50_us)), h('span', { class: 'vb-sep' }, ' · '), h('span', { class: tone(o.p99_us) }, micros(o.p99_us))]
            : h('span', { class: 'vb-dim' }, '–'));
      }))))));
}

function renderNode(v, node, list) {
  const ops = sortRows(v, list);
  put(v.body, 
    h('p', {}, h('button', { type: 'button', class: 'vb-link', onclick: () => { setState(v.ctx, K.node, null); render(v); } }, '‹ All nodes'),
      ' ', h('strong', {}, node)),
    ops.length
      ? h('table', { class: 'vb-table', id: 'latency-table' },
        h('thead', {}, h('tr', {}, sortHeader(v, 'name'), sortHeader(v, 'count'), sortHeader(v, 'p50_us'),
          h('th', { scope: 'col', class: 'vb-num' }, 'p90'), sortHeader(v, 'p99_us'),
          h('th', { scope: 'col', class: 'vb-num' }, 'p99.9'), h('th', { scope: 'col', class: 'vb-num' }, 'max'))),
        h('tbody', {}, ops.map((o) => h('tr', { dataset: { op: o.name } },
          h('td', { class: 'vb-mono' }, o.name), h('td', { class: 'vb-num' }, num(o.count)),
          h('td', { class: 'vb-num' }, micros(o.p50_us)), h('td', { class: 'vb-num' }, micros(o.p90_us)),
          h('td', { class: `vb-num ${tone(o.p99_us)}` }, micros(o.p99_us)), h('td', { class: 'vb-num' }, micros(o.p999_us)),
          h('td', { class: 'vb-num' }, micros(o.max_us))))))
      : h('p', { class: 'vb-empty' }, 'No operation has run on this node yet.'));
}

function tone(us) {
  if (us >= 1_000_000) return 'vb-bad';
  if (us >= 100_000) return 'vb-meh';
  return '';
}

// p50 and p99 on a log scale from 10 µs to the slowest p99.
function bar(op, maxP99) {
  const lo = Math.log10(10);
  const hi = Math.max(lo + 1, Math.log10(maxP99));
  const x = (us) => Math.min(100, Math.max(0, ((Math.log10(Math.max(10, us || 10)) - lo) / (hi - lo)) * 100));
  const a = x(op.p50_us);
  const b = Math.max(a + 1, x(op.p99_us));
  return h('div', { class: 'vb-bar', title: `p50 ${micros(op.p50_us)} → p99 ${micros(op.p99_us)} (log scale)` },
    h('span', { class: 'vb-bar-range', style: { left: `${a}%`, width: `${b - a}%` } }),
    h('span', { class: 'vb-bar-p50', style: { left: `${a}%` } }));
}
