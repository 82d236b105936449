// Process distribution heat map: one row per node, one column per
// application, each cell shaded by its process count or memory
// (process_distribution). A click on a cell opens the processes view
// filtered to that node and application.

import { h, put, nodeLabel, byNode, bytes, num, clock, unwrap, nodeErrors, errorText, poll, goTo, notice, loadStyles, setState, watch } from './common.js';

const K = { measure: 'heat.measure', shown: 'heat.all' };
const TOP_APPS = 12;

let view = null;

export default {
  id: 'heatmap',
  title: 'Distribution',
  key: 'd',

  mount(el, ctx) {
    loadStyles();
    const v = { el, ctx, data: null, dead: false };
    view = v;
    v.status = h('div', { class: 'vb-status', 'aria-live': 'polite' });
    v.notice = h('div', { class: 'vb-notice', hidden: true });
    v.grid = h('div', { class: 'vb-heat-wrap' });
    v.legend = h('div', { class: 'vb-legend' });
    const measure = ctx.state.get(K.measure) === 'memory' ? 'memory' : 'count';
    const radio = (value, label) => h('label', { class: 'vb-seg' },
      h('input', {
        type: 'radio', name: 'heat-measure', value, checked: measure === value,
        onchange: () => {
          setState(ctx, K.measure, value === 'count' ? null : value);
          render(v);
        },
      }), h('span', {}, label));
    put(el, h('section', { class: 'vb-view vb-heatmap' },
      h('div', { class: 'vb-head' }, h('h2', {}, 'Process distribution'), v.status),
      h('div', { class: 'vb-toolbar' },
        h('div', { class: 'vb-segmented', role: 'radiogroup', 'aria-label': 'Measure' },
          radio('count', 'Process count'), radio('memory', 'Memory')),
        h('button', { type: 'button', class: 'vb-button', 'data-action': 'refresh', onclick: () => v.poller.now() }, 'Refresh'),
        h('span', { class: 'vb-hint' }, 'Click a cell to list its processes.')),
      v.notice, v.grid, v.legend));
    v.unwatch = watch(ctx, [K.measure, K.shown], () => {
      const now = ctx.state.get(K.measure) === 'memory' ? 'memory' : 'count';
      for (const input of el.querySelectorAll('input[name=heat-measure]')) input.checked = input.value === now;
      render(v);
    });
    v.poller = poll(() => load(v), 10_000, (err) => notice(v.notice, 'error', errorText(err)));
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
    const answer = await v.ctx.api('GET', '/api/v1/cluster/processes/distribution');
    if (v.dead) return;
    v.data = unwrap(answer);
    v.errors = nodeErrors(answer);
    v.at = Date.now();
    notice(v.notice, 'info', '');
    if (v.errors.length) {
      notice(v.notice, 'warn', 'Partial: ' + v.errors.map((e) => `${e.node}: ${e.reason || e.status}`).join('; '));
    }
    render(v);
  } finally {
    v.status.classList.remove('vb-busy');
  }
}

function render(v) {
  const data = v.data;
  if (!data) return;
  const measure = v.ctx.state.get(K.measure) === 'memory' ? 'memory' : 'count';
  const showAll = v.ctx.state.get(K.shown) === '1';
  const value = (c) => (c ? c[measure] || 0 : 0);
  const fmt = measure === 'memory' ? bytes : (n) => num(n);

  const nodes = (data.nodes || []).slice().sort(byNode);
  const cells = new Map();
  const appTotal = new Map();
  for (const c of data.cells || []) {
    cells.set(`${c.node}\u0000${c.application}`, c);
    appTotal.set(c.application, (appTotal.get(c.application) || 0) + value(c));
  }
  const allApps = (data.applications || [...appTotal.keys()])
    .slice().sort((a, b) => (appTotal.get(b) || 0) - (appTotal.get(a) || 0) || a.localeCompare(b));
  const apps = showAll ? allApps : allApps.slice(0, TOP_APPS);
  const max = Math.max(1, ...(data.cells || []).map(value));
  const perNode = new Map((data.per_node || []).map((p) => [p.node, p]));

  v.status.textContent = `${nodes.length} node${nodes.length === 1 ? '' : 's'} · ${allApps.length} applications · at ${clock(v.at)}`;

  if (!nodes.length) {
    put(v.grid, h('p', { class: 'vb-empty' }, 'No node answered.'));
    put(v.legend, );
    return;
  }

  const head = h('tr', {},
    h('th', { class: 'vb-corner', scope: 'col' }, 'Node \\ application'),
    apps.map((app) => h('th', { class: 'vb-app', scope: 'col', title: app },
      h('span', {}, app === 'undefined' ? '(none)' : app))),
    h('th', { class: 'vb-num vb-total', scope: 'col' }, 'Total'));

  const rows = nodes.map((node) => {
    const total = perNode.get(node);
    return h('tr', {},
      h('th', { class: 'vb-node', scope: 'row', title: node }, nodeLabel(node, nodes, 30)),
      apps.map((app) => {
        const c = cells.get(`${node}\u0000${app}`);
        const n = value(c);
        const t = n ? Math.sqrt(n / max) : 0;
        const label = `${node} · ${app === 'undefined' ? 'no application' : app}: ${c ? `${num(c.count)} processes, ${bytes(c.memory)}` : 'none'}`;
        return h('td', {
          class: `vb-cell ${n ? '' : 'vb-zero'}`,
          title: label,
          'aria-label': label,
          tabindex: c ? 0 : -1,
          dataset: { node, app },
          style: n ? { background: shade(t), color: t > 0.55 ? '#fff' : 'inherit' } : null,
          onclick: c ? () => open(v, node, app) : null,
          onkeydown: c ? (e) => { if (e.key === 'Enter') open(v, node, app); } : null,
        }, n ? fmt(n) : '·');
      }),
      h('td', { class: 'vb-num vb-total' }, total ? fmt(measure === 'memory' ? total.memory : total.process_count) : '–'));
  });

  put(v.grid, h('table', { class: 'vb-heat', id: 'heatmap-table' }, h('thead', {}, head), h('tbody', {}, rows)));

  const hidden = allApps.length - apps.length;
  put(v.legend, 
    h('span', {}, fmt(0)),
    h('span', { class: 'vb-ramp', 'aria-hidden': 'true' }),
    h('span', {}, fmt(max)),
    h('span', { class: 'vb-dim' }, 'square-root scale'),
    allApps.length > TOP_APPS
      ? h('button', {
        type: 'button', class: 'vb-link',
        onclick: () => {
          setState(v.ctx, K.shown, showAll ? null : '1');
          render(v);
        },
      }, showAll ? `Show the top ${TOP_APPS} applications` : `Show ${hidden} more application${hidden === 1 ? '' : 's'}`)
      : null);
}

// From a pale blue to a deep blue; t in 0..1.
function shade(t) {
  const l = 94 - t * 58;
  const s = 55 + t * 25;
  return `hsl(214 ${s.toFixed(0)}% ${l.toFixed(0)}%)`;
}

function open(v, node, app) {
  goTo(v.ctx, 'processes', {
    'procs.node': node,
    'procs.app': app,
    'procs.type': null,
    'procs.name': null,
    'procs.min_memory': null,
    'procs.min_queue': null,
    'procs.window': null,
  });
}
