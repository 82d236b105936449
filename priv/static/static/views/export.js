// Export: the topology as an SVG file, and a report of the current state
// (topology, partitions, alerts, build) as JSON and as Markdown. Everything
// comes from the operations' API, read when the button is pressed.

import { h, s, download } from '../lib/dom.js';
import { fromTopology, render, standaloneSvg } from '../lib/topology.js';

function stamp() {
  return new Date().toISOString().replace(/[:]/g, '-').replace(/\..*/, '');
}

async function gather(ctx) {
  const settle = async (p) => {
    try {
      return await p;
    } catch (err) {
      return { error: err.error || { message: String(err.message || err) } };
    }
  };
  const [topology, partitions, alerts, build] = await Promise.all([
    settle(ctx.api('GET', '/api/v1/cluster/topology')),
    settle(ctx.api('GET', '/api/v1/cluster/partitions')),
    settle(ctx.api('GET', '/api/v1/cluster/alerts')),
    settle(ctx.api('GET', `/api/v1/cluster/nodes/${encodeURIComponent(ctx.selfNode() || '')}/build`)),
  ]);
  return {
    generated_at: new Date().toISOString(),
    node: topology.node || ctx.selfNode(),
    mode: topology.mode || ctx.mode,
    topology,
    partitions,
    alerts,
    build,
  };
}

export function markdown(report) {
  const t = report.topology || {};
  const c = t.classification || {};
  const lines = [
    '# ClusterScope report',
    '',
    `- generated: ${report.generated_at}`,
    `- from node: \`${report.node}\``,
    `- mode: ${report.mode}${report.mode === 'simulated' ? ' (**simulated**: virtual nodes, made-up figures)' : ''}`,
    `- classification: **${c.status || 'unknown'}**: ${c.description || ''}`,
    '',
    '## Nodes',
    '',
    '| node | status | cause |',
    '| --- | --- | --- |',
    ...(t.nodes || []).map((n) => `| \`${n.node}\` | ${n.status} | ${(n.down_cause || '').replace(/\|/g, '\\|')} |`),
    '',
  ];
  if ((c.components || []).length > 1) {
    lines.push('## Partitions', '');
    c.components.forEach((g, i) => lines.push(`${i + 1}. ${g.map((n) => `\`${n}\``).join(', ')}`));
    lines.push('');
    if ((c.unreachable_pairs || []).length) {
      lines.push('Cut links:', '', ...c.unreachable_pairs.map(([a, b]) => `- \`${a}\` ✕ \`${b}\``), '');
    }
  }
  const alerts = (report.alerts && report.alerts.alerts) || [];
  lines.push('## Alerts', '');
  if (!alerts.length) lines.push('No active alert.', '');
  else {
    lines.push('| node | severity | metric | value |', '| --- | --- | --- | --- |');
    for (const a of alerts) lines.push(`| \`${a.node}\` | ${a.severity} | ${a.metric || a.name || ''} | ${a.value ?? ''} |`);
    lines.push('');
  }
  const b = report.build || {};
  if (!b.error) {
    lines.push('## Build', '', `- ClusterScope ${b.cluster_scope_version}, Elixir ${b.elixir_version}, OTP ${b.otp_release}`, '');
  }
  return lines.join('\n');
}

export default {
  id: 'export',
  title: 'Export',
  key: 'e',
  async mount(el, ctx) {
    const svg = s('svg', { id: 'export-topology', class: 'topology small', role: 'img', 'aria-label': 'Topology to export' });
    const status = h('p', { class: 'muted', id: 'export-status' });
    const svgBtn = h('button', { id: 'export-svg', class: 'primary' }, 'Download topology (SVG)');
    const jsonBtn = h('button', { id: 'export-json' }, 'Download report (JSON)');
    const mdBtn = h('button', { id: 'export-md' }, 'Download report (Markdown)');
    el.replaceChildren(
      h('div', { class: 'view-head' }, h('h2', {}, 'Export'),
        h('span', { class: 'muted' }, 'Files are made in this browser from the API; nothing is stored on the node.')),
      h('div', { class: 'export-actions' }, svgBtn, jsonBtn, mdBtn),
      status,
      h('div', { class: 'graph-frame' }, svg));

    const draw = (t) => { if (t) render(svg, fromTopology(t), { maxWidth: 1100, animate: false }); };
    draw(ctx.topology());
    const off = ctx.onEvent('topology', draw);
    this.off = off;

    svgBtn.addEventListener('click', async () => {
      const t = await ctx.api('GET', '/api/v1/cluster/topology');
      draw(t);
      download(`cluster-topology-${stamp()}.svg`, 'image/svg+xml',
        standaloneSvg(svg, `ClusterScope topology from ${t.node} (${t.mode}) at ${new Date().toISOString()}`));
      status.textContent = 'Topology SVG downloaded.';
    });
    jsonBtn.addEventListener('click', async () => {
      const report = await gather(ctx);
      download(`cluster-report-${stamp()}.json`, 'application/json', JSON.stringify(report, null, 2));
      status.textContent = 'JSON report downloaded.';
    });
    mdBtn.addEventListener('click', async () => {
      const report = await gather(ctx);
      download(`cluster-report-${stamp()}.md`, 'text/markdown', markdown(report));
      status.textContent = 'Markdown report downloaded.';
    });
  },
  unmount() {
    if (this.off) this.off();
    this.off = null;
  },
};
