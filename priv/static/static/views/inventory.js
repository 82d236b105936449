// Node views for the whole cluster at once: applications of every node with
// their differences, code drift, ETS tables (a table's page behind the
// token), ports and sockets, OS data, and a supervision tree browser that
// expands one supervisor per click. Every figure comes from an operation's
// route: cluster_applications, code_drift, ets_tables, ets_table_page,
// cluster_ports, cluster_os, supervision_tree.

import {
  h, put, bytes, num, clock, nodeLabel, byNode, moduleText, unwrap, nodeErrors, errorText,
  withToken, authed, dialog, closeDialogs, notice, loadStyles, setState, watch,
} from './common.js';

const K = {
  sec: 'inv.sec',
  node: 'inv.node',
  diffOnly: 'inv.diff',
  etsSort: 'inv.ets_sort',
  etsName: 'inv.ets_name',
  portSort: 'inv.port_sort',
  root: 'inv.root',
};

const SECTIONS = [
  ['apps', 'Applications'],
  ['drift', 'Code drift'],
  ['ets', 'ETS tables'],
  ['ports', 'Ports & sockets'],
  ['os', 'OS'],
  ['sup', 'Supervision'],
];

const LOADERS = {
  apps: loadApps,
  drift: loadDrift,
  ets: loadEts,
  ports: loadPorts,
  os: loadOs,
  sup: loadSup,
};

let view = null;

export default {
  id: 'inventory',
  title: 'Nodes',

  mount(el, ctx) {
    loadStyles();
    loadOwnStyles();
    const v = { el, ctx, dead: false, seq: 0 };
    view = v;
    v.status = h('div', { class: 'vb-status', 'aria-live': 'polite' });
    v.notice = h('div', { class: 'vb-notice', hidden: true });
    v.body = h('div', { class: 'inv-body' });
    v.nav = h('div', { class: 'vb-segmented inv-sections', role: 'tablist', 'aria-label': 'Section' },
      SECTIONS.map(([id, label]) => h('label', { class: 'vb-seg' },
        h('input', {
          type: 'radio', name: 'inv-sec', value: id,
          onchange: () => {
            setState(ctx, K.sec, id === 'apps' ? null : id);
            show(v);
          },
        }), h('span', { dataset: { sec: id } }, label))));
    put(el, h('section', { class: 'vb-view inv-view' },
      h('div', { class: 'vb-head' }, h('h2', {}, 'Nodes'), v.status),
      h('div', { class: 'vb-toolbar' }, v.nav,
        h('button', { type: 'button', class: 'vb-button', 'data-action': 'refresh', onclick: () => show(v) }, 'Refresh')),
      v.notice, v.body));
    v.unwatch = watch(ctx, Object.values(K), () => show(v));
    show(v);
  },

  unmount() {
    if (!view) return;
    view.dead = true;
    view.unwatch();
    closeDialogs();
    view = null;
  },
};

function section(v) {
  const s = v.ctx.state.get(K.sec);
  return LOADERS[s] ? s : 'apps';
}

async function show(v) {
  const sec = section(v);
  for (const input of v.nav.querySelectorAll('input')) input.checked = input.value === sec;
  v.el.querySelector('.inv-view').dataset.section = sec;
  const seq = ++v.seq;
  notice(v.notice, 'info', '');
  v.status.textContent = 'loading…';
  v.status.classList.add('vb-busy');
  const target = h('div', { class: `inv-sec inv-${sec}`, dataset: { section: sec } });
  put(v.body, target);
  try {
    await LOADERS[sec](v, target, () => v.dead || seq !== v.seq);
    if (!v.dead && seq === v.seq) v.status.textContent = `at ${clock(Date.now())}`;
  } catch (err) {
    if (v.dead || seq !== v.seq) return;
    v.status.textContent = '';
    notice(v.notice, 'error', errorText(err));
    v.ctx.showError(err);
  } finally {
    if (seq === v.seq) v.status.classList.remove('vb-busy');
  }
}

function partial(v, answer) {
  const errors = nodeErrors(answer);
  if (errors.length) {
    notice(v.notice, 'warn', 'Partial: ' + errors.map((e) => `${e.node}: ${e.reason || e.status || e.message || 'no answer'}`).join('; '));
  }
}

function table(cls, head, rows, empty) {
  return h('div', { class: 'vb-table-wrap inv-wrap' },
    h('table', { class: `vb-table vb-compact ${cls}` },
      h('thead', {}, h('tr', {}, head.map((c) => (typeof c === 'string'
        ? h('th', { scope: 'col' }, c)
        : h('th', { scope: 'col', class: c.cls }, c.text))))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { class: 'vb-empty', colspan: head.length }, empty)))));
}

const localPid = (pid) => String(pid || '\u2013').split('@')[0];
const short = (node, all) => h('span', { class: 'vb-node', title: node }, nodeLabel(node, all, 22));

// ------------------------------------------------------------ applications

async function loadApps(v, el, stale) {
  const answer = await v.ctx.api('GET', '/api/v1/cluster/applications', { query: { limit: 5000 } });
  if (stale()) return;
  const data = unwrap(answer);
  partial(v, answer);
  const nodes = (data.nodes || []).slice().sort(byNode);
  const diffs = new Map((data.differences || []).map((d) => [d.application, d]));
  const rows = new Map();
  for (const r of data.applications || []) {
    if (!rows.has(r.application)) rows.set(r.application, new Map());
    rows.get(r.application).set(r.node, r);
  }
  for (const d of diffs.keys()) if (!rows.has(d)) rows.set(d, new Map());
  const diffOnly = v.ctx.state.get(K.diffOnly) === '1';
  const names = [...rows.keys()]
    .filter((a) => !diffOnly || diffs.has(a))
    .sort((a, b) => (diffs.has(b) - diffs.has(a)) || a.localeCompare(b));

  const body = names.map((app) => {
    const d = diffs.get(app);
    const perNode = rows.get(app);
    // The version most nodes run; the others are highlighted.
    let common = null;
    if (d && d.versions && d.versions.length > 1) {
      common = d.versions.slice().sort((a, b) => b.nodes.length - a.nodes.length)[0].version;
    }
    const desc = [...perNode.values()].map((r) => r.description).find(Boolean) || '';
    return h('tr', { class: d ? 'inv-diff' : '', dataset: { app } },
      h('th', { scope: 'row', class: 'inv-app', title: desc },
        h('div', { class: 'inv-app-name' }, app),
        d ? h('div', { class: 'inv-kinds' }, d.kinds.map((k) => h('span', { class: `vb-pill vb-warning inv-kind-${k}` }, kindText(k)))) : null),
      nodes.map((node) => {
        const r = perNode.get(node);
        if (!r) {
          return h('td', { class: `inv-cell ${d ? 'inv-missing' : ''}`, dataset: { node }, title: `${app} is not on ${node}` }, d ? 'missing' : '–');
        }
        const odd = common !== null && r.version !== common;
        const loadedOnly = d && d.kinds.includes('status') && r.status !== 'started';
        return h('td', {
          class: `inv-cell ${odd ? 'inv-odd' : ''} ${loadedOnly ? 'inv-loaded' : ''}`,
          dataset: { node, version: r.version, status: r.status },
          title: `${node}: ${app} ${r.version} (${r.status})`,
        }, h('span', { class: 'inv-vsn' }, r.version), r.status === 'started' ? null : h('span', { class: 'inv-status' }, r.status));
      }));
  });

  const toggle = h('label', { class: 'vb-check' },
    h('input', {
      type: 'checkbox', checked: diffOnly, 'data-filter': 'differences',
      onchange: (e) => {
        setState(v.ctx, K.diffOnly, e.target.checked ? '1' : null);
        show(v);
      },
    }), 'Differences only');
  put(el,
    h('div', { class: 'inv-bar' },
      h('span', { class: `vb-chip ${diffs.size ? 'vb-warning' : ''}`, 'data-count': 'differences' },
        diffs.size ? `${diffs.size} application${diffs.size === 1 ? '' : 's'} differ between nodes` : 'Every node runs the same applications'),
      h('span', { class: 'vb-dim' }, `${num(rows.size)} applications on ${nodes.length} node${nodes.length === 1 ? '' : 's'}`),
      toggle),
    table('inv-apps', [{ text: 'Application', cls: 'inv-app' }, ...nodes.map((n) => ({ text: short(n, nodes), cls: 'inv-nodecol' }))],
      body, diffOnly ? 'No differences.' : 'No applications.'),
    h('p', { class: 'vb-hint inv-legend' },
      h('span', { class: 'inv-swatch inv-odd' }), 'a version other than most nodes run ',
      h('span', { class: 'inv-swatch inv-missing' }), 'missing ',
      h('span', { class: 'inv-swatch inv-loaded' }), 'loaded, not started'));
}

function kindText(k) {
  return { missing: 'missing on some nodes', versions: 'different versions', status: 'started on some nodes' }[k] || k;
}

// ------------------------------------------------------------- code drift

async function loadDrift(v, el, stale, after = null, acc = null) {
  // The modules at different versions first (all of them, up to 1,000),
  // then those loaded on some nodes only, a page at a time.
  let first = [];
  if (!acc) {
    const versions = await v.ctx.api('GET', '/api/v1/cluster/code_drift', { query: { kind: 'different_versions', limit: 1000 } });
    if (stale()) return;
    first = unwrap(versions).modules || [];
  }
  const answer = await v.ctx.api('GET', '/api/v1/cluster/code_drift', { query: { kind: 'loaded_on_some_nodes', limit: 200, after } });
  if (stale()) return;
  const data = unwrap(answer);
  partial(v, answer);
  const modules = (acc || first).concat(data.modules || []);
  const nodes = (data.nodes || []).slice().sort(byNode);
  const rows = modules.map((m) => h('tr', { class: m.kind === 'different_versions' ? 'inv-diff' : '', dataset: { module: m.module, kind: m.kind } },
    h('td', { class: 'vb-mono inv-module' }, moduleText(m.module)),
    h('td', {}, h('span', { class: `vb-pill ${m.kind === 'different_versions' ? 'vb-critical' : 'vb-warning'}` },
      m.kind === 'different_versions' ? 'different versions' : 'loaded on some nodes')),
    h('td', {}, (m.versions || []).map((ver) => h('div', { class: 'inv-version' },
      h('code', { class: 'inv-md5', title: ver.md5 }, ver.md5.slice(0, 10)),
      ' on ', ver.nodes.map((n, i) => [i ? ', ' : '', short(n, nodes)])))),
    h('td', {}, (m.not_loaded_on || []).length
      ? m.not_loaded_on.map((n, i) => [i ? ', ' : '', short(n, nodes)])
      : h('span', { class: 'vb-dim' }, '–'))));
  const w = data.watch;
  const persistent = w && Array.isArray(w.persistent) ? w.persistent : [];
  const watchText = w
    ? `checked by ${nodeLabel(w.node, nodes, 18)} at ${clock(w.checked_at_ms)}: ` +
      (persistent.length ? `${persistent.length} drifting past the alert time (${persistent.map(moduleText).join(', ')})` : 'none drifting past the alert time')
    : null;
  const more = data.next_after
    ? h('button', { type: 'button', class: 'vb-button', 'data-action': 'more', onclick: () => loadDrift(v, el, stale, data.next_after, modules).catch(v.ctx.showError) }, 'More modules')
    : null;
  const perNode = (data.per_node || []).map((p) => `${nodeLabel(p.node, nodes, 18)}: ${num(p.modules)}`).join(' · ');
  put(el,
    h('div', { class: 'inv-bar' },
      h('span', { class: `vb-chip ${data.different_versions_total ? 'vb-critical' : ''}`, 'data-count': 'different_versions' },
        `${num(data.different_versions_total)} at different versions`),
      h('span', { class: `vb-chip ${data.loaded_on_some_nodes_total ? 'vb-warning' : ''}`, 'data-count': 'loaded_on_some_nodes' },
        `${num(data.loaded_on_some_nodes_total)} loaded on some nodes only`),
      h('span', { class: 'vb-dim', title: 'modules loaded per node' }, perNode),
      watchText ? h('span', { class: 'vb-dim' }, watchText) : null),
    table('inv-drift', ['Module', 'Drift', 'Versions (MD5) and their nodes', 'Not loaded on'], rows,
      `No drift: every node (${nodes.length}) runs the same code.`),
    more);
}

// ------------------------------------------------------------------- ETS

async function loadEts(v, el, stale, cursor = null, acc = []) {
  const sortBy = v.ctx.state.get(K.etsSort) === 'size' ? 'size' : 'memory';
  const name = v.ctx.state.get(K.etsName) || '';
  const answer = await v.ctx.api('GET', '/api/v1/cluster/ets', { query: { sort_by: sortBy, limit: 50, cursor, name } });
  if (stale()) return;
  const data = unwrap(answer);
  partial(v, answer);
  const tables = acc.concat(data.tables || []);
  // ets_table_page is sensitive: not listed, the Read button is not shown.
  const canPage = typeof v.ctx.hasOperation !== 'function' || v.ctx.hasOperation('ets_table_page');
  const nodes = (data.nodes || []).slice().sort(byNode);
  const rows = tables.map((t, i) => h('tr', { dataset: { node: t.node, table: t.id, rank: i + 1 } },
    h('td', { class: 'vb-num vb-dim' }, i + 1),
    h('td', {}, short(t.node, nodes)),
    h('td', { title: t.id },
      h('span', { class: 'vb-mono inv-cut inv-tname' }, moduleText(t.name)), t.named ? null : h('span', { class: 'vb-dim inv-small' }, ' unnamed')),
    h('td', { title: t.owner }, h('span', { class: 'inv-cut inv-owner' }, t.owner_name ? moduleText(t.owner_name) : h('span', { class: 'vb-pid' }, localPid(t.owner)))),
    h('td', {}, t.type),
    h('td', {}, h('span', { class: `vb-pill ${t.protection === 'private' ? '' : 'vb-kind-call'}` }, t.protection)),
    h('td', { class: 'vb-dim inv-small', title: t.heir || '' }, t.heir ? 'heir' : ''),
    h('td', { class: 'vb-num' }, num(t.size)),
    h('td', { class: 'vb-num' }, bytes(t.memory_bytes)),
    h('td', { class: 'vb-actions' }, t.protection === 'private'
      ? h('span', { class: 'vb-dim inv-small', title: 'a private table can be read by its owner only' }, 'private')
      : !canPage ? null : h('button', { type: 'button', 'data-action': 'page', title: 'Read one page (needs the token)', onclick: () => pageDialog(v, t) }, 'Read'))));
  const sortSel = h('select', {
    'data-filter': 'ets-sort',
    onchange: (e) => {
      setState(v.ctx, K.etsSort, e.target.value === 'memory' ? null : e.target.value);
      show(v);
    },
  }, h('option', { value: 'memory', selected: sortBy === 'memory' }, 'memory'), h('option', { value: 'size', selected: sortBy === 'size' }, 'objects'));
  const nameInput = h('input', {
    type: 'search', class: 'filter', placeholder: 'name contains…', value: name, 'data-filter': 'ets-name',
    onchange: (e) => {
      setState(v.ctx, K.etsName, e.target.value.trim() || null);
      show(v);
    },
  });
  const total = (data.per_node || []).reduce((s, p) => s + (p.tables || 0), 0);
  const mem = (data.per_node || []).reduce((s, p) => s + (p.memory_bytes || 0), 0);
  put(el,
    h('div', { class: 'inv-bar' },
      h('label', { class: 'vb-field vb-inline' }, h('span', {}, 'Rank by'), sortSel),
      h('label', { class: 'vb-field vb-inline' }, h('span', {}, 'Name'), nameInput),
      h('span', { class: 'vb-dim' }, `${num(total)} tables, ${bytes(mem)} on ${nodes.length} node${nodes.length === 1 ? '' : 's'}`)),
    table('inv-ets', [{ text: '#', cls: 'vb-num' }, 'Node', 'Table', 'Owner', 'Type', 'Protection', 'Heir',
      { text: 'Objects', cls: 'vb-num' }, { text: 'Memory', cls: 'vb-num' }, ''], rows, 'No table matches.'),
    data.next_cursor
      ? h('button', { type: 'button', class: 'vb-button', 'data-action': 'more', onclick: () => loadEts(v, el, stale, data.next_cursor, tables).catch(v.ctx.showError) }, 'More tables')
      : null);
}

async function pageDialog(v, t) {
  const out = h('div', { class: 'inv-page' });
  const status = h('div', { class: 'vb-notice', hidden: true });
  const more = h('button', { type: 'button', hidden: true }, 'Next page');
  const d = dialog(`Table ${moduleText(t.name)} on ${t.node}`, h('div', {},
    h('p', { class: 'vb-dim' }, 'One bounded page, redacted on the node. Reading a table needs the admin token.'),
    status, out), [more], { wide: true });
  d.el.dataset.dialog = 'ets-page';
  let cursor = null;
  const read = async () => {
    notice(status, 'info', 'reading…');
    const path = `/api/v1/cluster/nodes/${encodeURIComponent(t.node)}/ets/${encodeURIComponent(t.id)}/page`;
    const result = await withToken(v.ctx, (token) => authed(v.ctx, token, 'GET', path, { query: { limit: 50, cursor } }));
    if (!result.ok) {
      notice(status, 'error', errorText(result.error));
      status.dataset.result = result.refused ? 'refused' : 'error';
      return;
    }
    const page = unwrap(result.value);
    status.dataset.result = 'ok';
    notice(status, 'info', `${num(page.count)} of ${num(page.size)} objects · ${page.type}, ${page.protection}` +
      (page.cursor_note ? ` · ${page.cursor_note}` : ''));
    out.append(...page.objects.map((o) => h('pre', { class: 'vb-mono inv-object' }, o)));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener('click', read);
  await read();
}

// ----------------------------------------------------------------- ports

async function loadPorts(v, el, stale, cursor = null, acc = []) {
  const sorts = ['queue_size', 'input', 'output', 'memory'];
  const sortBy = sorts.includes(v.ctx.state.get(K.portSort)) ? v.ctx.state.get(K.portSort) : 'queue_size';
  const answer = await v.ctx.api('GET', '/api/v1/cluster/ports', { query: { sort_by: sortBy, limit: 50, cursor } });
  if (stale()) return;
  const data = unwrap(answer);
  partial(v, answer);
  const ports = acc.concat(data.ports || []);
  const nodes = (data.nodes || []).slice().sort(byNode);
  const rows = ports.map((p) => h('tr', { class: p.distribution ? 'inv-dist' : '', dataset: { node: p.node, port: p.id, distribution: String(!!p.distribution) } },
    h('td', {}, short(p.node, nodes)),
    h('td', { class: 'vb-mono inv-small' }, h('span', { class: 'inv-cut inv-portid', title: p.id }, p.id)),
    h('td', {},
      p.distribution ? h('span', { class: 'vb-pill vb-kind-call inv-dist-pill', title: 'a distribution port' }, 'distribution') : null,
      p.kind === 'socket' ? h('span', { class: 'vb-pill' }, 'socket') : null,
      p.distribution && p.peer_node
        ? h('span', { class: 'inv-peer inv-cut', title: p.peer_node }, '\u2192 ', nodeLabel(p.peer_node, nodes, 22))
        : h('span', { class: 'inv-cut', title: p.name || '' }, p.name || '')),
    h('td', {}, h('span', { class: 'inv-cut inv-owner', title: p.connected || '' },
      p.connected_name ? moduleText(p.connected_name) : h('span', { class: 'vb-pid' }, localPid(p.connected)))),
    h('td', { class: 'vb-mono inv-small vb-nowrap' },
      p.local_address ? h('div', {}, p.local_address) : null,
      p.peer_address ? h('div', { class: 'vb-dim' }, '\u2194 ', p.peer_address) : null,
      (p.states || []).length ? h('div', { class: 'vb-dim inv-states', title: p.states.join(' ') }, p.states.join(' ')) : null),
    h('td', { class: 'vb-num' }, num(p.queue_size)),
    h('td', { class: 'vb-num' }, bytes(p.input)),
    h('td', { class: 'vb-num' }, bytes(p.output)),
    h('td', { class: 'vb-num' }, bytes(p.memory))));
  const sortSel = h('select', {
    'data-filter': 'port-sort',
    onchange: (e) => {
      setState(v.ctx, K.portSort, e.target.value === 'queue_size' ? null : e.target.value);
      show(v);
    },
  }, sorts.map((s) => h('option', { value: s, selected: s === sortBy }, s.replace('_', ' '))));
  const dist = (data.per_node || []).reduce((s, p) => s + (p.distribution_ports || 0), 0);
  const all = (data.per_node || []).reduce((s, p) => s + (p.ports || 0), 0);
  const socks = (data.per_node || []).reduce((s, p) => s + (p.sockets || 0), 0);
  put(el,
    h('div', { class: 'inv-bar' },
      h('label', { class: 'vb-field vb-inline' }, h('span', {}, 'Rank by'), sortSel),
      h('span', { class: 'vb-dim' }, `${num(all)} ports (${num(dist)} distribution) and ${num(socks)} sockets on ${nodes.length} node${nodes.length === 1 ? '' : 's'}`)),
    table('inv-ports', ['Node', 'Port', 'Name / peer', 'Connected', 'Address \u2194 peer, states',
      { text: 'Queue', cls: 'vb-num' }, { text: 'In', cls: 'vb-num' }, { text: 'Out', cls: 'vb-num' }, { text: 'Memory', cls: 'vb-num' }],
    rows, 'No port.'),
    data.next_cursor
      ? h('button', { type: 'button', class: 'vb-button', 'data-action': 'more', onclick: () => loadPorts(v, el, stale, data.next_cursor, ports).catch(v.ctx.showError) }, 'More ports')
      : null);
}

// -------------------------------------------------------------------- OS

function bar(pct, label) {
  const p = Math.max(0, Math.min(100, Number(pct) || 0));
  const cls = p >= 90 ? 'inv-hot' : p >= 75 ? 'inv-warm' : '';
  return h('div', { class: `inv-meter ${cls}`, title: label },
    h('div', { class: 'inv-meter-fill', style: { width: `${p}%` } }),
    h('span', {}, label));
}

async function loadOs(v, el, stale) {
  const answer = await v.ctx.api('GET', '/api/v1/cluster/os');
  if (stale()) return;
  const data = unwrap(answer);
  partial(v, answer);
  const nodes = (data.nodes || []).map(String);
  const rows = (data.rows || []).slice().sort((a, b) => byNode(a.node, b.node));
  const cards = rows.map((r) => {
    const m = r.memory || {};
    const s = r.swap || {};
    const l = r.load || {};
    const cg = r.cgroup || {};
    return h('article', { class: 'inv-card', dataset: { node: r.node } },
      h('header', {}, h('strong', { title: r.node }, nodeLabel(r.node, nodes, 30)),
        h('span', { class: 'vb-dim inv-small' }, `${r.os || ''}${r.agentless ? ' · agentless' : ''}`)),
      h('dl', {},
        h('dt', {}, 'Load'), h('dd', { 'data-field': 'load' },
          l.load1 !== undefined && l.load1 !== null ? `${l.load1} · ${l.load5} · ${l.load15}` : '–',
          l.cpus ? h('span', { class: 'vb-dim' }, ` on ${l.cpus} CPUs`) : null),
        h('dt', {}, 'Memory'), h('dd', { 'data-field': 'memory' },
          m.total_bytes ? bar(m.used_pct, `${bytes(m.used_bytes)} of ${bytes(m.total_bytes)} (${num(m.used_pct, 1)}%)`) : '–'),
        h('dt', {}, 'Swap'), h('dd', {},
          s.total_bytes ? bar(s.used_pct, `${bytes(s.used_bytes)} of ${bytes(s.total_bytes)}`) : h('span', { class: 'vb-dim' }, 'none')),
        cg.memory_max_bytes || cg.cpu_max
          ? [h('dt', {}, 'cgroup'), h('dd', {},
            cg.memory_max_bytes ? `memory ${bytes(cg.memory_current_bytes)} of ${bytes(cg.memory_max_bytes)}` : '',
            cg.cpu_max ? ` · cpu ${typeof cg.cpu_max === 'object' ? JSON.stringify(cg.cpu_max) : cg.cpu_max}` : '')]
          : null,
        h('dt', {}, 'Disks'), h('dd', { class: 'inv-disks' },
          (r.disks || []).length
            ? r.disks.map((d) => h('div', { class: 'inv-disk' },
              h('span', { class: 'vb-mono inv-small inv-mount', title: `${d.device || ''} ${d.fs_type || ''}` }, d.mount),
              bar(d.used_pct, `${num(d.used_pct, 1)}% of ${bytes(d.total_bytes)}`)))
            : h('span', { class: 'vb-dim' }, 'not read'))));
  });
  const sum = data.summary || {};
  put(el,
    h('div', { class: 'inv-bar' },
      sum.highest_load_per_cpu ? h('span', { class: 'vb-chip' }, `highest load per CPU: ${num(sum.highest_load_per_cpu.per_cpu, 2)} (${nodeLabel(sum.highest_load_per_cpu.node, nodes)})`) : null,
      sum.most_memory_used ? h('span', { class: 'vb-chip' }, `most memory used: ${num(sum.most_memory_used.used_pct, 1)}% (${nodeLabel(sum.most_memory_used.node, nodes)})`) : null,
      sum.fullest_disk ? h('span', { class: 'vb-chip' }, `fullest disk: ${num(sum.fullest_disk.used_pct, 1)}% ${sum.fullest_disk.mount} (${nodeLabel(sum.fullest_disk.node, nodes)})`) : null),
    cards.length ? h('div', { class: 'inv-cards' }, cards) : h('p', { class: 'vb-empty' }, 'No node answered.'));
}

// ------------------------------------------------------------ supervision

async function loadSup(v, el, stale) {
  const known = v.ctx.nodes().slice().sort(byNode);
  const self = v.ctx.selfNode();
  const node = v.ctx.state.get(K.node) || self || known[0];
  const rootName = v.ctx.state.get(K.root) || '';
  if (node && !known.includes(node)) known.push(node);
  const select = h('select', {
    'data-filter': 'sup-node',
    onchange: (e) => {
      setState(v.ctx, K.node, e.target.value === self ? null : e.target.value);
      show(v);
    },
  }, known.map((n) => h('option', { value: n, selected: n === node }, n)));
  const rootInput = h('input', {
    type: 'search', class: 'filter', value: rootName, 'data-filter': 'sup-root',
    placeholder: 'all applications', title: 'an application, a registered name or a pid of the node',
    onchange: (e) => {
      setState(v.ctx, K.root, e.target.value.trim() || null);
      show(v);
    },
  });
  const tree = h('ul', { class: 'inv-tree', role: 'tree' });
  const bar = h('div', { class: 'inv-bar' },
    h('label', { class: 'vb-field vb-inline' }, h('span', {}, 'Node'), select),
    h('label', { class: 'vb-field vb-inline' }, h('span', {}, 'Root'), rootInput),
    h('span', { class: 'vb-hint' }, 'Click ▸ to list a supervisor’s children (one level per click; a supervisor silent for 1 s is shown stuck).'));
  put(el, bar, h('div', { class: 'inv-tree-wrap' }, tree));
  if (!node) {
    put(tree, h('li', { class: 'vb-dim' }, 'No node known yet.'));
    return;
  }
  if (rootName) {
    // The root itself, expanded: its flags, restarts and first children.
    const item = treeItem(v, node, { id: rootName, type: 'supervisor', pid: rootName, status: 'running' });
    put(tree, item);
    item.querySelector('[data-action=expand]').click();
    return;
  }
  const data = await supervision(v, node, null, 0);
  if (stale()) return;
  if (data.agentless) bar.append(h('span', { class: 'vb-pill', title: 'read with OTP calls: no restart flags, no recent restarts' }, 'agentless'));
  put(tree, data.root.children.map((c) => treeItem(v, node, c)));
  if (data.root.next_offset) tree.append(moreItem(v, node, null, data.root.next_offset, tree));
}

function supervision(v, node, root, offset) {
  return v.ctx.api('GET', `/api/v1/cluster/nodes/${encodeURIComponent(node)}/supervision`,
    { query: { root, depth: 1, limit: 100, offset: offset || null } }).then(unwrap);
}

function treeItem(v, node, c) {
  const sup = c.type === 'supervisor';
  const children = h('ul', { role: 'group', hidden: true });
  const restarts = restartsPill(c.recent_restarts);
  const label = h('span', { class: 'inv-id' }, moduleText(String(c.id)));
  const meta = h('span', { class: 'inv-meta' },
    h('span', { class: `vb-pill ${sup ? 'vb-kind-call' : ''}` }, c.type || '?'),
    c.pid && c.pid !== c.id ? h('span', { class: 'vb-pid', title: c.pid }, localPid(c.pid)) : null,
    c.status && c.status !== 'running' ? h('span', { class: 'vb-pill vb-warning' }, c.status) : null,
    restarts);
  const flags = h('span', { class: 'inv-flags vb-dim' });
  const li = h('li', { role: 'treeitem', class: sup ? 'inv-sup' : 'inv-worker', dataset: { id: String(c.id), pid: c.pid || '' } });
  if (!sup || !c.pid || c.status !== 'running') {
    li.append(h('span', { class: 'inv-twisty inv-leaf' }, '•'), label, meta);
    return li;
  }
  li.setAttribute('aria-expanded', 'false');
  let loaded = false;
  const toggle = h('button', {
    type: 'button', class: 'inv-twisty', 'data-action': 'expand', 'aria-label': `Expand ${c.id}`,
    onclick: async () => {
      const open = li.getAttribute('aria-expanded') === 'true';
      if (open) {
        li.setAttribute('aria-expanded', 'false');
        children.hidden = true;
        toggle.textContent = '▸';
        return;
      }
      li.setAttribute('aria-expanded', 'true');
      toggle.textContent = '▾';
      children.hidden = false;
      if (loaded) return;
      li.dataset.state = 'loading';
      put(children, h('li', { class: 'vb-dim' }, 'asking…'));
      try {
        await expand(v, node, c.pid, children, flags, 0);
        loaded = true;
        li.dataset.state = 'ok';
      } catch (err) {
        li.dataset.state = err && err.error && err.error.code === 'timeout' ? 'stuck' : 'error';
        if (li.dataset.state === 'error') v.ctx.showError(err);
        put(children, h('li', { class: 'inv-stuck' },
          h('span', { class: 'vb-pill vb-critical' }, li.dataset.state === 'stuck' ? 'stuck' : 'error'), ' ', errorText(err)));
      }
    },
  }, '▸');
  li.append(toggle, label, meta, flags, children);
  return li;
}

async function expand(v, node, pid, children, flags, offset) {
  const data = await supervision(v, node, pid, offset);
  const root = data.root;
  if (offset === 0) {
    const f = root.flags;
    put(flags, f ? `${f.strategy}, at most ${f.intensity} restarts in ${f.period} s` : null,
      root.counts ? ` \u00b7 ${num(root.counts.specs)} children` : null,
      restartsPill(root.recent_restarts));
    flags.title = f ? 'restart strategy and intensity' : '';
  }
  if (root.expansion === 'stuck') {
    put(children, h('li', { class: 'inv-stuck' }, h('span', { class: 'vb-pill vb-critical' }, 'stuck'), ' did not answer which_children in time'));
    throw Object.assign(new Error('stuck'), { error: { code: 'timeout', message: 'This supervisor did not answer within its deadline (stuck).' } });
  }
  const items = (root.children || []).map((c) => treeItem(v, node, c));
  if (offset === 0) put(children, items.length ? items : h('li', { class: 'vb-dim' }, 'no children'));
  else children.append(...items);
  if (root.next_offset) children.append(moreItem(v, node, pid, root.next_offset, children, flags));
}

function restartsPill(r) {
  if (!r || !r.count) return null;
  const last = r.last_at_ms || r.last_ms;
  return h('span', { class: 'vb-pill vb-warning inv-restarts', title: 'children restarted recently (from the supervisor reports the node logged)' },
    `${num(r.count)} recent restart${r.count === 1 ? '' : 's'}${last ? ', last ' + clock(last) : ''}`);
}

function moreItem(v, node, pid, offset, list, flags) {
  const li = h('li', {}, h('button', {
    type: 'button', class: 'vb-link', 'data-action': 'more-children',
    onclick: async () => {
      li.remove();
      try {
        if (pid) {
          await expand(v, node, pid, list, flags || h('span'), offset);
        } else {
          const data = await supervision(v, node, null, offset);
          list.append(...data.root.children.map((c) => treeItem(v, node, c)));
          if (data.root.next_offset) list.append(moreItem(v, node, null, data.root.next_offset, list));
        }
      } catch (err) {
        v.ctx.showError(err);
      }
    },
  }, 'more children…'));
  return li;
}

// ----------------------------------------------------------------- styles

function loadOwnStyles() {
  if (document.getElementById('inv-styles')) return;
  const link = document.createElement('link');
  link.id = 'inv-styles';
  link.rel = 'stylesheet';
  link.href = new URL('./inventory.css', import.meta.url).href;
  document.head.append(link);
}
