// Cluster overview: the topology graph (nodes coloured by status, alert
// rings by health, partitions as separate groups with the cut links drawn),
// the classification, and a legend. Live: redrawn from each topology the
// shell reads after a cluster event; a click opens the node's detail.

import { h, s } from '../lib/dom.js';
import { fromTopology, render, STATUS_COLORS } from '../lib/topology.js';

let off = [];
let svg = null;
let alerts = new Map();
let alertTimer = null;

function worst(a, b) {
  const rank = { warning: 1, critical: 2 };
  return (rank[a] || 0) >= (rank[b] || 0) ? a : b;
}

async function loadAlerts(ctx) {
  try {
    const data = await ctx.api('GET', '/api/v1/cluster/alerts');
    const next = new Map();
    for (const a of data.alerts || []) next.set(a.node, worst(next.get(a.node), a.severity));
    alerts = next;
  } catch (_) {
    /* alerts are decoration here: the Alerts view shows their errors */
  }
}

function legend() {
  return h('div', { class: 'legend' },
    Object.entries(STATUS_COLORS).map(([status, color]) =>
      h('span', { class: 'legend-item' }, h('i', { class: 'dot', style: `background:${color}` }), status)),
    h('span', { class: 'legend-item' }, h('i', { class: 'ring warning' }), 'warning alert'),
    h('span', { class: 'legend-item' }, h('i', { class: 'ring critical' }), 'critical alert'),
    h('span', { class: 'legend-item' }, h('i', { class: 'line cut' }), 'cut link'),
    h('span', { class: 'legend-item' }, '★ this node'));
}

export default {
  id: 'overview',
  title: 'Overview',
  key: 'o',
  async mount(el, ctx) {
    const summary = h('div', { class: 'summary', id: 'topology-summary' });
    svg = s('svg', { id: 'topology', class: 'topology', role: 'img', 'aria-label': 'Cluster topology' });
    const frame = h('div', { class: 'graph-frame' }, svg);
    el.replaceChildren(
      h('div', { class: 'view-head' }, h('h2', {}, 'Cluster overview'), summary),
      frame,
      legend());

    const draw = (t) => {
      if (!t || !svg) return;
      const model = fromTopology(t, alerts);
      const c = t.classification || {};
      summary.replaceChildren(
        h('span', { class: `classification cls-${c.status}` }, c.status || 'unknown'),
        h('span', { class: 'description' }, c.description || ''),
        h('span', { class: 'count' }, `${model.nodes.size} node${model.nodes.size === 1 ? '' : 's'}`));
      render(svg, model, {
        selected: ctx.state.get('node'),
        onSelect: (n) => ctx.select(n),
        maxWidth: Math.max(600, frame.clientWidth - 60),
      });
    };
    off.push(ctx.onEvent('topology', draw));
    off.push(ctx.state.onChange((now, before) => {
      if (now.node !== before.node) draw(ctx.topology());
    }));
    off.push(ctx.onEvent('alert', async () => {
      await loadAlerts(ctx);
      draw(ctx.topology());
    }));
    await loadAlerts(ctx);
    draw(ctx.topology());
    // Alert rings also follow alerts that clear without an event.
    alertTimer = setInterval(async () => {
      await loadAlerts(ctx);
      draw(ctx.topology());
    }, 5000);
  },
  unmount() {
    for (const f of off) f();
    off = [];
    clearInterval(alertTimer);
    svg = null;
  },
};
