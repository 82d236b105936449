// Timeline: the cluster events this node recorded (the last 1,000), with
// playback. Scrub back (slider, ← →, Space plays) and the graph shows the
// cluster as it was right after that event, replayed from the history;
// at the right end it follows the live cluster.

import { h, s, fmtTime, shortNode } from '../lib/dom.js';
import { replay, render } from '../lib/topology.js';

let off = [];
let playTimer = null;
let keyHandler = null;

const TYPE_LABEL = {
  up: 'up', down: 'down', departed: 'departed', forgotten: 'forgotten', suspect: 'suspect',
  partition: 'partition', heal: 'heal', mode: 'mode',
};

export default {
  id: 'timeline',
  title: 'Timeline',
  key: 'y',
  async mount(el, ctx) {
    let events = [];
    let position = null; // index into events; null = live (the last one)
    const slider = h('input', { type: 'range', min: '0', max: '0', value: '0', id: 'timeline-slider', 'aria-label': 'Position in the history' });
    const playBtn = h('button', { id: 'timeline-play', title: 'Play from here (Space)' }, '▶ Play');
    const liveBtn = h('button', { id: 'timeline-live', title: 'Back to live (End)' }, 'Live');
    const at = h('span', { class: 'timeline-at', id: 'timeline-at' });
    const svg = s('svg', { id: 'timeline-topology', class: 'topology small', role: 'img', 'aria-label': 'Topology at the selected time' });
    const list = h('ol', { class: 'event-list', id: 'timeline-events' });
    el.replaceChildren(
      h('div', { class: 'view-head' }, h('h2', {}, 'Timeline'),
        h('span', { class: 'muted' }, 'Scrub back: the graph shows the cluster as this node saw it then.')),
      h('div', { class: 'timeline-controls' }, playBtn, slider, liveBtn, at),
      h('div', { class: 'timeline-body' },
        h('div', { class: 'graph-frame' }, svg),
        h('div', { class: 'event-pane' }, list)));

    const index = () => (position === null ? events.length - 1 : position);

    const draw = () => {
      const i = index();
      const model = replay(events.slice(0, i + 1), ctx.selfNode());
      render(svg, model, { onSelect: (n) => ctx.select(n), maxWidth: 760 });
      slider.max = String(Math.max(0, events.length - 1));
      slider.value = String(Math.max(0, i));
      const e = events[i];
      el.dataset.position = String(e ? e.id : 0);
      el.dataset.live = String(position === null);
      at.textContent = e
        ? `${position === null ? 'live · ' : ''}event ${e.id} · ${fmtTime(e.at_ms)} · ${model.nodes.size} nodes`
        : 'no event recorded yet';
      liveBtn.disabled = position === null;
      for (const li of list.children) li.classList.toggle('current', Number(li.dataset.index) === i);
      for (const li of list.children) li.classList.toggle('future', Number(li.dataset.index) > i);
      const current = list.querySelector('li.current');
      if (current) current.scrollIntoView({ block: 'nearest' });
    };

    const row = (e, i) => h('li', {
      class: `ev ev-${e.type}`, dataset: { index: String(i), id: String(e.id) },
      onclick: () => { position = i === events.length - 1 ? null : i; stop(); draw(); },
    },
    h('span', { class: 'ev-time' }, fmtTime(e.at_ms)),
    h('span', { class: `ev-type t-${e.type}` }, TYPE_LABEL[e.type] || e.type),
    h('span', { class: 'ev-node' }, e.node ? shortNode(e.node) : ''),
    h('span', { class: 'ev-cause', title: e.cause || '' }, e.cause || ''));

    const stop = () => {
      clearInterval(playTimer);
      playTimer = null;
      playBtn.textContent = '▶ Play';
    };
    const play = () => {
      if (playTimer) return stop();
      if (position === null) position = 0;
      playBtn.textContent = '❚❚ Pause';
      playTimer = setInterval(() => {
        if (position === null || position >= events.length - 1) {
          position = null;
          stop();
        } else position += 1;
        draw();
      }, 700);
      draw();
      return undefined;
    };

    slider.addEventListener('input', () => {
      stop();
      const v = Number(slider.value);
      position = v >= events.length - 1 ? null : v;
      draw();
    });
    playBtn.addEventListener('click', play);
    liveBtn.addEventListener('click', () => { stop(); position = null; draw(); });
    keyHandler = (e) => {
      if (['INPUT', 'TEXTAREA', 'SELECT'].includes(e.target.tagName) && e.target !== slider) return;
      if (document.querySelector('dialog[open]')) return;
      if (e.key === 'ArrowLeft') { stop(); position = Math.max(0, index() - 1); draw(); e.preventDefault(); }
      else if (e.key === 'ArrowRight') { stop(); const n = index() + 1; position = n >= events.length - 1 ? null : n; draw(); e.preventDefault(); }
      else if (e.key === ' ') { play(); e.preventDefault(); }
      else if (e.key === 'End') { stop(); position = null; draw(); }
    };
    document.addEventListener('keydown', keyHandler);

    // The whole history, then live events as they come.
    let since = 0;
    for (let page = 0; page < 20; page++) {
      const data = await ctx.api('GET', '/api/v1/cluster/events', { query: { since, limit: 1000 } });
      events.push(...data.events);
      since = data.last_id;
      if (data.events.length < 1000) break;
    }
    list.replaceChildren(...events.map(row));
    off.push(ctx.onEvent('cluster', (e) => {
      if (events.length && e.id <= events[events.length - 1].id) return;
      events.push(e);
      if (events.length > 1000) {
        events = events.slice(-1000);
        list.replaceChildren(...events.map(row));
        if (position !== null) position = Math.max(0, position - 1);
      } else list.appendChild(row(e, events.length - 1));
      draw();
    }));
    draw();
    el.dataset.ready = 'true';
  },
  unmount() {
    for (const f of off) f();
    off = [];
    clearInterval(playTimer);
    playTimer = null;
    if (keyHandler) document.removeEventListener('keydown', keyHandler);
    keyHandler = null;
  },
};
