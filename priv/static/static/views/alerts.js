// Alerts: the active health alerts of every node (cluster_alerts), critical
// first. Live: each `alert` event of the shell's stream (an alert raised,
// or cleared when it carries cleared_at_ms) updates its row at once; a
// poll every 5 s reconciles with the nodes' own tables (and is all there
// is when the stream is not available).

import { h, put, nodeLabel, num, clock, ago, unwrap, nodeErrors, errorText, poll, subscribe, goTo, notice, loadStyles, setState, watch } from './common.js';

const K = { severity: 'alerts.severity' };
const RANK = { critical: 0, warning: 1 };

let view = null;

export default {
  id: 'alerts',
  title: 'Alerts',
  key: 'a',

  mount(el, ctx) {
    loadStyles();
    const v = { el, ctx, alerts: new Map(), fresh: new Set(), dead: false, live: false };
    view = v;
    v.status = h('div', { class: 'vb-status', 'aria-live': 'polite' });
    v.summary = h('div', { class: 'vb-chips' });
    v.notice = h('div', { class: 'vb-notice', hidden: true });
    v.tbody = h('tbody');
    const severity = ctx.state.get(K.severity) || '';
    put(el, h('section', { class: 'vb-view vb-alerts' },
      h('div', { class: 'vb-head' }, h('h2', {}, 'Alerts'), v.status),
      h('div', { class: 'vb-toolbar' },
        v.summary,
        h('label', { class: 'vb-field' }, h('span', {}, 'Severity'),
          h('select', {
            'data-control': 'severity',
            onchange: (e) => {
              setState(ctx, K.severity, e.target.value || null);
              render(v);
            },
          }, [['', 'all'], ['critical', 'critical'], ['warning', 'warning']].map(([value, label]) =>
            h('option', { value, selected: value === severity }, label)))),
        h('button', { type: 'button', class: 'vb-button', 'data-action': 'refresh', onclick: () => v.poller.now() }, 'Refresh')),
      v.notice,
      h('div', { class: 'vb-table-wrap' }, h('table', { class: 'vb-table', id: 'alerts-table' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Severity'), h('th', { scope: 'col' }, 'Node'), h('th', { scope: 'col' }, 'Metric'),
          h('th', { scope: 'col', class: 'vb-num' }, 'Value'), h('th', { scope: 'col', class: 'vb-num' }, 'Threshold'),
          h('th', { scope: 'col' }, 'Since'), h('th', { scope: 'col' }, 'What and what to do'))),
        v.tbody))));

    v.unwatch = watch(ctx, [K.severity], () => {
      el.querySelector('[data-control=severity]').value = ctx.state.get(K.severity) || '';
      render(v);
    });
    v.off = subscribe(ctx, 'alert', (payload) => onAlert(v, payload));
    v.poller = poll(() => load(v), 5_000, (err) => notice(v.notice, 'error', errorText(err)));
    v.ticker = setInterval(() => { if (!document.hidden) renderSince(v); }, 1_000);
  },

  unmount() {
    if (!view) return;
    view.dead = true;
    view.off();
    view.unwatch();
    view.poller.stop();
    clearInterval(view.ticker);
    view = null;
  },
};

function key(alert) {
  return `${alert.node}\u0000${alert.id}`;
}

function onAlert(v, payload) {
  if (v.dead || !payload) return;
  const alert = payload.data && payload.type ? payload.data : payload;
  if (!alert || !alert.id) return;
  v.live = true;
  if (alert.cleared_at_ms || alert.cleared) {
    v.alerts.delete(key(alert));
  } else {
    if (!v.alerts.has(key(alert))) v.fresh.add(key(alert));
    v.alerts.set(key(alert), alert);
  }
  render(v);
}

async function load(v) {
  const answer = await v.ctx.api('GET', '/api/v1/cluster/alerts');
  if (v.dead) return;
  const data = unwrap(answer);
  const next = new Map();
  for (const alert of data.alerts || []) {
    const k = key(alert);
    if (!v.alerts.has(k) && v.loaded) v.fresh.add(k);
    next.set(k, alert);
  }
  // Nodes that did not answer keep what the stream last said of them.
  const silent = new Set(nodeErrors(answer).map((e) => e.node));
  for (const [k, alert] of v.alerts) if (silent.has(alert.node) && !next.has(k)) next.set(k, alert);
  v.alerts = next;
  v.loaded = true;
  v.errors = nodeErrors(answer);
  v.at = Date.now();
  notice(v.notice, 'info', '');
  if (v.errors.length) {
    notice(v.notice, 'warn', 'Not heard from: ' + v.errors.map((e) => `${e.node} (${e.status})`).join(', ') +
      '. Their alerts may be out of date.');
  }
  render(v);
}

function render(v) {
  const severity = v.ctx.state.get(K.severity) || '';
  const all = [...v.alerts.values()];
  const list = all
    .filter((a) => !severity || a.severity === severity)
    .sort((a, b) => (RANK[a.severity] ?? 2) - (RANK[b.severity] ?? 2) ||
      (b.started_at_ms || 0) - (a.started_at_ms || 0) || a.node.localeCompare(b.node));
  const critical = all.filter((a) => a.severity === 'critical').length;
  const warning = all.filter((a) => a.severity === 'warning').length;
  const nodes = new Set(all.map((a) => a.node)).size;
  const allNodes = [...new Set(all.map((a) => a.node))];
  put(v.summary, 
    h('span', { class: `vb-chip ${critical ? 'vb-critical' : ''}`, 'data-count': 'critical' }, `${critical} critical`),
    h('span', { class: `vb-chip ${warning ? 'vb-warning' : ''}`, 'data-count': 'warning' }, `${warning} warning`),
    h('span', { class: 'vb-chip' }, `${nodes} node${nodes === 1 ? '' : 's'} alerting`));
  v.status.textContent = [v.live ? 'live' : 'polling every 5 s', v.at ? `checked ${clock(v.at)}` : null]
    .filter(Boolean).join(' · ');

  if (!list.length) {
    put(v.tbody, h('tr', {}, h('td', { colspan: 7, class: 'vb-empty' },
      v.loaded ? (all.length ? 'No alert of this severity.' : 'No active alert: every node is within its thresholds.') : 'Loading…')));
    return;
  }
  put(v.tbody, ...list.map((a) => {
    const k = key(a);
    const fresh = v.fresh.has(k);
    v.fresh.delete(k);
    const remediation = Array.isArray(a.remediation) ? a.remediation : a.remediation ? [a.remediation] : [];
    return h('tr', { class: `vb-sev-${a.severity} ${fresh ? 'vb-fresh' : ''}`, dataset: { alert: a.id, node: a.node, metric: a.metric } },
      h('td', {}, h('span', { class: `vb-pill vb-${a.severity}` }, a.severity)),
      h('td', { class: 'vb-node', title: a.node },
        h('button', { type: 'button', class: 'vb-link', title: `Open ${a.node}`, onclick: () => openNode(v, a.node) }, nodeLabel(a.node, allNodes))),
      h('td', { class: 'vb-mono' }, a.metric),
      h('td', { class: 'vb-num' }, value(a.value)),
      h('td', { class: 'vb-num' }, value(a.threshold)),
      h('td', { class: 'vb-since', dataset: { since: a.started_at_ms || '' }, title: a.started_at_ms ? new Date(a.started_at_ms).toISOString() : '' }, ago(a.started_at_ms)),
      h('td', { class: 'vb-msg' },
        h('div', {}, a.message),
        remediation.length
          ? h('details', {}, h('summary', {}, 'What to do'), h('ul', {}, remediation.map((r) => h('li', {}, r))))
          : null));
  }));
}

function renderSince(v) {
  for (const td of v.tbody.querySelectorAll('td.vb-since')) {
    const ms = Number(td.dataset.since);
    if (ms) td.textContent = ago(ms);
  }
}

function value(x) {
  if (typeof x === 'number') return num(x, Number.isInteger(x) ? 0 : 2);
  if (x === null || x === undefined) return '–';
  return String(x);
}

function openNode(v, node) {
  if (typeof v.ctx.select === 'function') v.ctx.select(node);
  else goTo(v.ctx, 'node', { node });
}
