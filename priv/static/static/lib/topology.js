// The topology graph: a model built from GET /api/v1/cluster/topology (or
// replayed from the cluster events, for playback), a layout (partitions as
// separate groups, a ring per group up to 12 nodes, a grid beyond, so no
// label overlaps another at 12 or 50 nodes), and an SVG renderer that
// moves what changed (CSS transitions) instead of redrawing from scratch.

import { s, shortNode } from './dom.js';

export const STATUS_COLORS = {
  up: '#2f9e5b',
  suspected: '#d9a21b',
  frozen: '#3d8bd9',
  unreachable: '#d64545',
  down: '#8a93a3',
  departed: '#b8bfcc',
};

const SEVERITY_RING = { warning: '#e6a700', critical: '#d64545' };

// ------------------------------------------------------------------ model

// A model: {self, mode, nodes: Map(name -> {node, status, simulated, cause}),
// groups: [[names]] (partition components), cut: [[a, b]], oneWay,
// classification: {status, description}, alerts: Map(name -> severity)}.
export function fromTopology(t, alerts = new Map()) {
  const nodes = new Map();
  for (const n of t.nodes || []) {
    nodes.set(n.node, {
      node: n.node,
      status: n.status,
      simulated: !!n.simulated,
      cause: n.down_cause || n.down_reason || null,
      since: n.since_ms,
    });
  }
  const c = t.classification || {};
  const frozen = new Set(c.frozen || []);
  for (const f of frozen) if (nodes.has(f)) nodes.get(f).status = 'frozen';
  return {
    self: t.node,
    mode: t.mode,
    nodes,
    groups: (c.components || []).map((g) => g.slice()),
    cut: (c.unreachable_pairs || []).map((p) => p.slice()),
    oneWay: (c.one_way || []).map((p) => [p.not_hearing, p.silent]),
    classification: { status: c.status || 'healthy', description: c.description || '' },
    alerts,
  };
}

// Replays cluster events (oldest first) into a model: the cluster as this
// node saw it right after the last of them.
export function replay(events, self) {
  const model = {
    self,
    mode: 'multi_node',
    nodes: new Map(),
    groups: [],
    cut: [],
    oneWay: [],
    classification: { status: 'healthy', description: 'every node reaches every other node' },
    alerts: new Map(),
  };
  if (self) model.nodes.set(self, { node: self, status: 'up', simulated: false });
  for (const e of events) applyEvent(model, e);
  return model;
}

export function applyEvent(model, e) {
  const d = e.details || {};
  // nonode@nohost is a node before distribution started: never a member.
  if (e.node === 'nonode@nohost') return model;
  switch (e.type) {
    case 'up':
      if (e.node) model.nodes.set(e.node, { node: e.node, status: 'up', simulated: !!d.simulated, cause: null });
      break;
    case 'down':
      if (e.node) model.nodes.set(e.node, { ...(model.nodes.get(e.node) || { node: e.node }), status: 'down', cause: e.cause });
      break;
    case 'departed':
    case 'forgotten':
      if (e.node) model.nodes.delete(e.node);
      model.groups = model.groups.map((g) => g.filter((n) => n !== e.node)).filter((g) => g.length);
      break;
    case 'suspect':
      if (e.node) {
        model.nodes.set(e.node, {
          ...(model.nodes.get(e.node) || { node: e.node }),
          status: d.status || 'suspected',
          cause: e.cause,
        });
      }
      break;
    case 'partition':
      model.groups = (d.components || []).map((g) => g.slice());
      model.cut = (d.unreachable_pairs || []).map((p) => p.slice());
      model.oneWay = (d.one_way || []).map((p) => [p.not_hearing, p.silent]);
      model.classification = { status: d.status || 'split', description: e.cause || '' };
      for (const f of d.frozen || []) {
        if (model.nodes.has(f)) model.nodes.get(f).status = 'frozen';
      }
      break;
    case 'heal': {
      const healed = new Set((d.pairs || []).map((p) => pairKey(p[0], p[1])));
      model.cut = model.cut.filter((p) => !healed.has(pairKey(p[0], p[1])));
      model.oneWay = model.oneWay.filter((p) => !healed.has(pairKey(p[0], p[1])));
      if (!model.cut.length && !model.oneWay.length) {
        model.groups = [];
        model.classification = { status: 'healthy', description: 'every node reaches every other node' };
        for (const n of model.nodes.values()) {
          if (['suspected', 'unreachable', 'frozen'].includes(n.status)) n.status = 'up';
        }
      }
      break;
    }
    case 'mode':
      model.mode = d.to || model.mode;
      // Virtual nodes leave with the simulated mode (their events say so,
      // but older histories may not): drop them when leaving it.
      if (d.from === 'simulated') {
        for (const [k, n] of model.nodes) if (n.simulated) model.nodes.delete(k);
        model.groups = [];
        model.cut = [];
      }
      break;
    default:
      break;
  }
  return model;
}

function pairKey(a, b) {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

// The groups to draw: the partition components, each node once; nodes in
// no component (down, departed, unknown to the matrix) go to a group of
// their own labelled "not connected"; with no split, one group.
export function groupsOf(model) {
  const placed = new Set();
  const groups = [];
  // A split is two or more components with live nodes we know of (a down
  // node is drawn apart, whatever component it was last seen in).
  const live = (n) => model.nodes.has(n) && !['down', 'departed'].includes(model.nodes.get(n).status);
  const split = model.groups.filter((g) => g.some(live)).length > 1;
  if (split) {
    model.groups.forEach((g, i) => {
      const members = g.filter((n) => live(n) && !placed.has(n));
      members.forEach((n) => placed.add(n));
      if (members.length) {
        groups.push({
          id: `part-${i}`,
          kind: 'partition',
          label: `Partition ${String.fromCharCode(65 + groups.length)}${members.includes(model.self) ? ' (this node)' : ''}`,
          members,
        });
      }
    });
  }
  const rest = [...model.nodes.keys()].filter((n) => !placed.has(n));
  // During a split, a node in no component is not connected to anyone.
  const away = split ? ['down', 'departed', 'suspected', 'unreachable', 'frozen'] : ['down', 'departed'];
  const connected = rest.filter((n) => !away.includes(model.nodes.get(n).status));
  const gone = rest.filter((n) => away.includes(model.nodes.get(n).status));
  if (connected.length) {
    groups.push({
      id: split ? `part-${groups.length}` : 'cluster',
      kind: split ? 'partition' : 'cluster',
      label: split ? `Partition ${String.fromCharCode(65 + groups.length)}` : 'Cluster',
      members: connected,
    });
  }
  if (gone.length) groups.push({ id: 'gone', kind: 'gone', label: 'Down / not connected', members: gone });
  for (const g of groups) g.members.sort(nodeOrder(model.self));
  return groups;
}

function nodeOrder(self) {
  return (a, b) => {
    if (a === self) return -1;
    if (b === self) return 1;
    return a.localeCompare(b, undefined, { numeric: true });
  };
}

// ------------------------------------------------------------------ layout

const RING_MAX = 12;
const MESH_MAX = 8;
const CELL_W = 120;
const CELL_H = 74;
const GROUP_PAD = 36;
const GAP = 56;

// Positions: {width, height, groups: [{..., x, y, w, h}], pos: Map(name -> {x, y, anchor, lx, ly})}
export function layout(model, maxWidth = 1200) {
  const groups = groupsOf(model);
  const pos = new Map();
  const boxes = groups.map((g) => {
    const n = g.members.length;
    if (n <= RING_MAX) {
      const r = n === 1 ? 0 : Math.max(70, (n * 56) / (2 * Math.PI) + 40);
      const labelRoom = 150;
      const w = 2 * r + 2 * labelRoom;
      const h = 2 * r + 134;
      return { g, n, kind: 'ring', r, w: Math.max(w, 220), h: Math.max(h, 150) };
    }
    const cols = Math.min(10, Math.max(4, Math.ceil(Math.sqrt(n * 2))));
    const rows = Math.ceil(n / cols);
    return { g, n, kind: 'grid', cols, rows, w: cols * CELL_W + GROUP_PAD, h: rows * CELL_H + GROUP_PAD + 30 };
  });
  // Rows of groups, wrapped at maxWidth.
  let x = 0;
  let y = 0;
  let rowH = 0;
  let width = 0;
  for (const b of boxes) {
    if (x > 0 && x + b.w > maxWidth) {
      x = 0;
      y += rowH + GAP;
      rowH = 0;
    }
    b.x = x;
    b.y = y;
    x += b.w + GAP;
    rowH = Math.max(rowH, b.h);
    width = Math.max(width, b.x + b.w);
  }
  const height = y + rowH;
  for (const b of boxes) {
    const cx = b.x + b.w / 2;
    if (b.kind === 'ring') {
      const cy = b.y + 40 + (b.h - 40) / 2;
      b.g.members.forEach((name, i) => {
        const a = -Math.PI / 2 + (2 * Math.PI * i) / b.n;
        const px = cx + b.r * Math.cos(a);
        const py = cy + b.r * Math.sin(a);
        const cos = Math.cos(a);
        const sin = Math.sin(a);
        // Labels outside the ring: above/below near the poles, beside elsewhere.
        let anchor = 'middle';
        let lx = 0;
        let ly = 0;
        // Clear of the alert halo (r 19 + stroke).
        if (b.n === 1) {
          ly = 36;
        } else if (Math.abs(cos) < 0.35) {
          ly = sin < 0 ? -26 : 36;
        } else {
          anchor = cos > 0 ? 'start' : 'end';
          lx = cos > 0 ? 25 : -25;
          ly = 5 + sin * 8;
        }
        // Beside the ring a label has labelRoom px (about 20 characters);
        // above or below, the gap to the neighbours.
        const maxChars = anchor === 'middle' && b.n > 1 ? Math.max(10, Math.floor(((2 * Math.PI * b.r) / b.n) / 6.5) + 6) : 20;
        pos.set(name, { x: px, y: py, anchor, lx, ly, group: b.g.id, maxChars: Math.min(20, maxChars) });
      });
    } else {
      b.g.members.forEach((name, i) => {
        const col = i % b.cols;
        const row = Math.floor(i / b.cols);
        pos.set(name, {
          x: b.x + GROUP_PAD / 2 + col * CELL_W + CELL_W / 2,
          y: b.y + 30 + GROUP_PAD / 2 + row * CELL_H + 20,
          anchor: 'middle',
          lx: 0,
          ly: 36,
          group: b.g.id,
          maxChars: 15,
        });
      });
    }
  }
  return { width: Math.max(width, 300), height: Math.max(height, 160), groups: boxes, pos };
}

// ------------------------------------------------------------------ links

// Links to draw: every cut pair (red, dashed), every one-way pair, and,
// for groups up to 12 nodes, the healthy mesh inside a group (faint).
export function linksOf(model, lay) {
  const links = [];
  const seen = new Set();
  for (const [a, b] of model.cut) {
    if (!lay.pos.has(a) || !lay.pos.has(b)) continue;
    const k = pairKey(a, b);
    if (seen.has(k)) continue;
    seen.add(k);
    links.push({ id: `cut:${k}`, a, b, kind: 'cut' });
  }
  for (const [a, b] of model.oneWay) {
    if (!lay.pos.has(a) || !lay.pos.has(b)) continue;
    const k = pairKey(a, b);
    if (seen.has(k)) continue;
    seen.add(k);
    links.push({ id: `oneway:${k}`, a, b, kind: 'one-way' });
  }
  // Inside a group, the healthy mesh is drawn up to MESH_MAX nodes (beyond,
  // 66+ lines say less than the group's frame: every node reaches every
  // other); links touching a node that is not up are always drawn.
  for (const box of lay.groups) {
    if (box.g.kind === 'gone' || box.n > RING_MAX) continue;
    const m = box.g.members;
    for (let i = 0; i < m.length; i++) {
      for (let j = i + 1; j < m.length; j++) {
        const k = pairKey(m[i], m[j]);
        if (seen.has(k)) continue;
        const bad = [m[i], m[j]].some((n) => {
          const st = model.nodes.get(n).status;
          return st !== 'up';
        });
        if (!bad && box.n > MESH_MAX) continue;
        links.push({ id: `ok:${k}`, a: m[i], b: m[j], kind: bad ? 'degraded' : 'ok' });
      }
    }
  }
  // With a cut but too many pairs to draw one by one, one bundle per
  // pair of groups says so.
  return links;
}

// ------------------------------------------------------------------ render

// Renders (or updates) the graph into `svg`. onSelect(name) on a click.
export function render(svg, model, { selected = null, onSelect = null, maxWidth = 1200, animate = true } = {}) {
  const lay = layout(model, maxWidth);
  const margin = 24;
  svg.setAttribute('viewBox', `${-margin} ${-margin} ${lay.width + 2 * margin} ${lay.height + 2 * margin}`);
  // Natural size, shrunk to fit (never blown up: labels stay 12px).
  svg.style.width = `${lay.width + 2 * margin}px`;
  svg.style.maxWidth = '100%';
  svg.setAttribute('data-groups', String(lay.groups.length));
  svg.setAttribute('data-nodes', String(model.nodes.size));
  svg.setAttribute('data-status', model.classification.status);
  svg.classList.toggle('animate', animate);

  let groupsLayer = svg.querySelector('g.groups');
  let linksLayer = svg.querySelector('g.links');
  let nodesLayer = svg.querySelector('g.nodes');
  if (!groupsLayer) {
    svg.replaceChildren(
      s('title', { text: 'Cluster topology' }),
      s('defs', {},
        s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' },
          s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#d64545' }))),
      (groupsLayer = s('g', { class: 'groups' })),
      (linksLayer = s('g', { class: 'links' })),
      (nodesLayer = s('g', { class: 'nodes' })),
    );
  }

  // Groups.
  const groupEls = new Map([...groupsLayer.children].map((el) => [el.dataset.id, el]));
  for (const box of lay.groups) {
    let el = groupEls.get(box.g.id);
    groupEls.delete(box.g.id);
    if (!el) {
      el = s('g', { class: 'group entering' }, s('rect', { rx: '14' }), s('text', { class: 'group-label' }));
      el.dataset.id = box.g.id;
      groupsLayer.appendChild(el);
      requestAnimationFrame(() => el.classList.remove('entering'));
    }
    el.setAttribute('class', `group kind-${box.g.kind}`);
    el.dataset.members = box.g.members.join(' ');
    const rect = el.querySelector('rect');
    setGeom(rect, { x: box.x, y: box.y, width: box.w, height: box.h });
    const label = el.querySelector('text');
    label.setAttribute('x', String(box.x + 14));
    label.setAttribute('y', String(box.y + 22));
    label.textContent = `${box.g.label} · ${box.n} node${box.n === 1 ? '' : 's'}`;
  }
  for (const el of groupEls.values()) fadeOut(el);

  // Links.
  const links = linksOf(model, lay);
  const linkEls = new Map([...linksLayer.children].map((el) => [el.dataset.id, el]));
  for (const l of links) {
    const pa = lay.pos.get(l.a);
    const pb = lay.pos.get(l.b);
    let el = linkEls.get(l.id);
    linkEls.delete(l.id);
    if (!el) {
      el = s('path', {});
      el.dataset.id = l.id;
      linksLayer.appendChild(el);
    }
    el.setAttribute('class', `link ${l.kind}`);
    el.dataset.a = l.a;
    el.dataset.b = l.b;
    // The path follows its nodes as they glide: `d` as a CSS property
    // transitions like their transforms (the attribute is for the export).
    const d = `M${r1(pa.x)} ${r1(pa.y)} L${r1(pb.x)} ${r1(pb.y)}`;
    el.setAttribute('d', d);
    el.style.d = `path("${d}")`;
    if (l.kind === 'one-way') el.setAttribute('marker-end', 'url(#arrow)');
    else el.removeAttribute('marker-end');
  }
  for (const el of linkEls.values()) el.remove();

  // Nodes.
  const nodeEls = new Map([...nodesLayer.children].map((el) => [el.dataset.node, el]));
  for (const [name, n] of model.nodes) {
    const p = lay.pos.get(name);
    if (!p) continue;
    let el = nodeEls.get(name);
    nodeEls.delete(name);
    const fresh = !el;
    if (fresh) {
      el = s('g', { class: 'node entering', tabindex: '0', role: 'button' },
        s('circle', { class: 'halo', r: '19' }),
        s('circle', { class: 'body', r: '13' }),
        s('text', { class: 'badge', 'text-anchor': 'middle', y: '4' }),
        s('text', { class: 'label' }),
        s('title', {}));
      el.dataset.node = name;
      el.addEventListener('click', () => onSelect && onSelect(name));
      el.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          if (onSelect) onSelect(name);
        }
      });
      nodesLayer.appendChild(el);
      el.style.transform = `translate(${p.x}px, ${p.y}px)`;
      requestAnimationFrame(() => requestAnimationFrame(() => el.classList.remove('entering')));
    } else {
      el.classList.remove('leaving');
      el.style.transform = `translate(${p.x}px, ${p.y}px)`;
    }
    const severity = model.alerts.get(name) || null;
    el.setAttribute('class', [
      'node', `status-${n.status}`, fresh ? 'entering' : '',
      name === model.self ? 'self' : '', n.simulated ? 'simulated' : '',
      severity ? `alert-${severity}` : '', name === selected ? 'selected' : '',
    ].filter(Boolean).join(' '));
    el.dataset.status = n.status;
    el.dataset.group = p.group;
    el.querySelector('circle.body').setAttribute('fill', STATUS_COLORS[n.status] || '#8a93a3');
    const halo = el.querySelector('circle.halo');
    halo.setAttribute('stroke', severity ? SEVERITY_RING[severity] : 'transparent');
    el.querySelector('text.badge').textContent =
      n.status === 'frozen' ? '❄' : n.status === 'suspected' || n.status === 'unreachable' ? '?' : n.status === 'down' ? '×' : '';
    const label = el.querySelector('text.label');
    label.setAttribute('text-anchor', p.anchor);
    label.setAttribute('x', String(p.lx));
    label.setAttribute('y', String(p.ly));
    label.textContent = clip(shortNode(name), p.maxChars) + (name === model.self ? ' ★' : '');
    el.querySelector('title').textContent =
      `${name}\nstatus: ${n.status}${n.cause ? `\ncause: ${n.cause}` : ''}${severity ? `\nalert: ${severity}` : ''}`;
    el.setAttribute('aria-label', `${name}, ${n.status}`);
  }
  for (const el of nodeEls.values()) fadeOut(el);
  // Tests and screenshots wait for the transitions to end.
  svg.dataset.settled = 'false';
  clearTimeout(svg.settleTimer);
  svg.settleTimer = setTimeout(() => { svg.dataset.settled = 'true'; }, animate ? 750 : 0);
  return lay;
}

// Long names are cut in the middle (the full name is in the tooltip and
// the node detail), so a label never runs into its neighbour.
function clip(text, max) {
  if (!max || text.length <= max) return text;
  const head = Math.ceil((max - 1) / 2);
  return `${text.slice(0, head)}…${text.slice(text.length - (max - 1 - head))}`;
}

function r1(v) {
  return Math.round(v * 10) / 10;
}

function setGeom(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    el.setAttribute(k, String(Math.round(v * 10) / 10));
  }
}

function fadeOut(el) {
  if (el.classList.contains('leaving')) return;
  el.classList.add('leaving');
  setTimeout(() => {
    if (el.classList.contains('leaving')) el.remove();
  }, 600);
}

// A standalone SVG document of the current graph (for the export): the
// live SVG with its styles inlined, no script, no external reference.
export function standaloneSvg(svg, title) {
  const clone = svg.cloneNode(true);
  clone.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
  clone.removeAttribute('class');
  for (const el of clone.querySelectorAll('.leaving')) el.remove();
  // The live graph moves nodes by CSS transform (animated); the file
  // carries plain transform attributes, which every SVG reader knows.
  for (const el of clone.querySelectorAll('[style]')) {
    const m = /translate\(([-\d.]+)px,\s*([-\d.]+)px\)/.exec(el.style.transform || '');
    if (m) el.setAttribute('transform', `translate(${m[1]} ${m[2]})`);
    el.removeAttribute('style');
    el.removeAttribute('data-settled');
  }
  for (const el of clone.querySelectorAll('[tabindex]')) {
    el.removeAttribute('tabindex');
    el.removeAttribute('role');
  }
  const style = document.createElementNS('http://www.w3.org/2000/svg', 'style');
  style.textContent = EXPORT_CSS;
  clone.insertBefore(style, clone.firstChild);
  const t = clone.querySelector('title') || document.createElementNS('http://www.w3.org/2000/svg', 'title');
  t.textContent = title;
  if (!t.parentNode) clone.insertBefore(t, clone.firstChild);
  const vb = clone.getAttribute('viewBox').split(' ').map(Number);
  clone.setAttribute('width', String(vb[2]));
  clone.setAttribute('height', String(vb[3]));
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(clone)}\n`;
}

const EXPORT_CSS = `
  text { font-family: sans-serif; font-size: 12px; fill: #1d2430; }
  .group rect { fill: #f5f7fa; stroke: #c9d1dd; stroke-width: 1.5; }
  .group.kind-partition rect { fill: #fbf6ec; stroke: #d9a21b; stroke-dasharray: 6 4; }
  .group.kind-gone rect { fill: #f3f3f3; stroke: #b8bfcc; stroke-dasharray: 2 4; }
  .group-label { font-weight: bold; fill: #4a5568; }
  .link { fill: none; }
  .link.ok { stroke: #9fb3c8; stroke-width: 1; }
  .link.degraded { stroke: #d9a21b; stroke-width: 1; stroke-dasharray: 3 3; }
  .link.cut { stroke: #d64545; stroke-width: 2; stroke-dasharray: 6 4; }
  .link.one-way { stroke: #d64545; stroke-width: 2; }
  .node .halo { fill: none; stroke-width: 4; }
  .node .badge { fill: #fff; font-weight: bold; }
  .node .label { paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
  .node.self .body { stroke: #1d2430; stroke-width: 2.5; }
`;
