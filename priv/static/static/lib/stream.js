// Live updates. Server-Sent Events read with fetch() and a ReadableStream
// (EventSource cannot send the Authorization header), parsed here; the
// stream resumes from the last event id (Last-Event-ID) after any break,
// so no event is lost across a reconnect or an endpoint restart. When the
// endpoint has no /api/v1/stream (404), the same events come from polling
// GET /api/v1/cluster/events?since= (and the alerts operation), with the
// same delivery: cluster events in id order, each once.
//
// Subscribers: on(type, fn) with type `cluster`, `alert`, `trace`,
// `heartbeat`, or the status types `status` (connection state changes).
//
// Extra topics: subscribe(topic, onEvent, onStatus) adds a topic (today
// `trace:<session id>`) to the stream for as long as the caller wants it and
// returns the unsubscribe function. Each change of the topic set reconnects
// the stream at once with the new set and the last event id (the server
// replays what came after it: nothing is lost; a trace topic new to the
// cursor starts at the session's first event). onStatus({state, reason})
// says `live` (the stream carries the topic), `connecting`, or
// `unavailable` (polling transport, or the server refused the topic: no
// token, unknown session): the caller then reads by itself. A refused topic
// is dropped so the base topics keep flowing.

import { storedToken, buildUrl } from './api.js';

const POLL_MS = 500;
const ALERT_POLL_MS = 1000;
const MAX_BACKOFF_MS = 5000;
const STALL_MS = 45000;

export class LiveStream {
  constructor({ topics = ['cluster', 'alerts'], transport = 'auto' } = {}) {
    this.topics = topics;
    // 'poll' skips the stream (a proxy that buffers SSE; tests of the
    // polling path on an endpoint that has the stream).
    this.forcePoll = transport === 'poll';
    this.handlers = new Map();
    this.lastEventId = null; // opaque SSE cursor
    this.lastClusterId = 0; // cluster event ids seen (dedupe across replays)
    this.transport = 'connecting';
    this.connected = false;
    this.stopped = true;
    this.backoff = 250;
    this.alertKeys = new Map();
    this.abort = null;
    this.timer = null;
    this.stats = { reconnects: 0, events: 0, topicChanges: 0 };
    this.extra = new Map(); // topic -> Set of {onEvent, onStatus}
    this.refused = new Map(); // topic -> reason (until every subscriber left)
    this.generation = 0; // bumped per connection: a superseded one stays quiet
  }

  // The topics asked of the server: the base ones and the extra ones not
  // refused.
  currentTopics() {
    return [...this.topics, ...[...this.extra.keys()].filter((t) => !this.refused.has(t))];
  }

  subscribe(topic, onEvent, onStatus = () => {}) {
    const sub = { onEvent, onStatus };
    const isNew = !this.extra.has(topic);
    if (isNew) this.extra.set(topic, new Set());
    this.extra.get(topic).add(sub);
    if (this.forcePoll || this.transport === 'polling') {
      this.tell(sub, 'unavailable', 'the live stream is not in use (polling)');
    } else if (this.refused.has(topic)) {
      this.tell(sub, 'unavailable', this.refused.get(topic));
    } else if (isNew) {
      this.tell(sub, 'connecting');
      this.restart();
    } else {
      this.tell(sub, this.connected && this.transport === 'sse' ? 'live' : 'connecting');
    }
    return () => {
      const subs = this.extra.get(topic);
      if (!subs || !subs.delete(sub) || subs.size) return;
      this.extra.delete(topic);
      const wasAsked = !this.refused.delete(topic);
      if (wasAsked && !this.forcePoll && this.transport !== 'polling') this.restart();
    };
  }

  tell(sub, state, reason) {
    try {
      sub.onStatus({ state, reason: reason || null });
    } catch (err) {
      console.warn('topic status handler failed', err);
    }
  }

  tellTopics(state, reason, topics = [...this.extra.keys()]) {
    for (const topic of topics) {
      for (const sub of this.extra.get(topic) || []) this.tell(sub, state, reason);
    }
  }

  // Reconnects now with the current topic set and the last event id.
  restart() {
    if (this.stopped) return;
    this.stats.topicChanges += 1;
    this.generation += 1;
    clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
    this.connect();
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  emit(type, data) {
    for (const fn of this.handlers.get(type) || []) {
      try {
        fn(data);
      } catch (err) {
        console.warn('event handler failed', err);
      }
    }
  }

  setStatus(transport, connected, detail) {
    this.transport = transport;
    this.connected = connected;
    this.emit('status', { transport, connected, detail, stats: this.stats });
  }

  // Start after `since` (the last cluster event id already shown).
  start(since = 0) {
    this.lastClusterId = since;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
    clearTimeout(this.timer);
    clearTimeout(this.alertTimer);
  }

  deliverCluster(event) {
    if (typeof event.id === 'number') {
      if (event.id <= this.lastClusterId) return; // a replay we already have
      this.lastClusterId = event.id;
    }
    this.stats.events += 1;
    this.emit('cluster', event);
  }

  async connect() {
    if (this.stopped) return undefined;
    if (this.forcePoll) return this.poll();
    const generation = ++this.generation;
    const current = () => generation === this.generation && !this.stopped;
    const topics = this.currentTopics();
    const extra = topics.filter((t) => !this.topics.includes(t));
    const headers = { Accept: 'text/event-stream' };
    const token = storedToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    const abort = new AbortController();
    this.abort = abort;
    let response;
    try {
      response = await fetch(buildUrl('/api/v1/stream', { topics: topics.join(',') }), {
        headers,
        signal: abort.signal,
        cache: 'no-store',
      });
    } catch (err) {
      if (!current()) return undefined;
      return this.retry(`stream unreachable: ${err.message}`);
    }
    if (!current()) {
      abort.abort();
      return undefined;
    }
    if (extra.length && [400, 401, 403, 404].includes(response.status)) {
      // An extra topic refused (no token, a session this node does not
      // know): drop the extra topics, tell their subscribers, and go on
      // with the base topics (a 404 of an endpoint without the stream
      // shows again on that connection and turns to polling).
      const reason = await this.errorMessage(response);
      for (const t of extra) this.refused.set(t, reason);
      this.tellTopics('unavailable', reason, extra);
      return this.connect();
    }
    if (response.status === 400 && this.lastEventId) {
      // A cursor the server no longer takes: start again from the events
      // operation (cluster events are deduplicated by id).
      this.lastEventId = null;
      return this.retry(`stream refused the cursor: ${await this.errorMessage(response)}`);
    }
    if (response.status === 404) {
      // No SSE on this endpoint: poll the events cursor instead.
      this.tellTopics('unavailable', 'this endpoint has no /api/v1/stream');
      return this.poll();
    }
    if (!response.ok || !response.body) {
      return this.retry(`stream answered HTTP ${response.status}`);
    }
    this.backoff = 250;
    this.setStatus('sse', true);
    this.tellTopics('live', null, extra);
    // The stream carries the events after our cursor; if we never had an
    // SSE cursor, catch up from the events operation first.
    if (!this.lastEventId) await this.catchUp();
    try {
      await this.read(response.body.getReader(), current);
    } catch (err) {
      if (!current()) return undefined;
    }
    if (!current()) return undefined;
    return this.retry('stream closed');
  }

  async errorMessage(response) {
    try {
      const body = await response.json();
      const e = (body && body.error) || {};
      return e.message ? `${e.code || response.status}: ${e.message}` : `HTTP ${response.status}`;
    } catch (_) {
      return `HTTP ${response.status}`;
    }
  }

  async read(reader, current = () => true) {
    const decoder = new TextDecoder();
    let buffer = '';
    let frame = { data: [] };
    // The server sends a heartbeat every 15 s: a stream silent for three
    // of them is a dead connection (a proxy, a sleeping laptop): drop it
    // and reconnect from the cursor.
    let lastChunk = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - lastChunk > STALL_MS && this.abort) this.abort.abort();
    }, 5000);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        if (!current()) {
          reader.cancel().catch(() => {});
          return;
        }
        lastChunk = Date.now();
        buffer = this.parse(buffer + decoder.decode(value, { stream: true }), frame, (next) => { frame = next; });
      }
    } finally {
      clearInterval(watchdog);
    }
  }

  // Dispatches the complete frames in `text`; returns what is left.
  parse(text, frame0, setFrame) {
    let buffer = text;
    let frame = frame0;
    let nl;
    while ((nl = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer[nl] === '\r' ? 2 : 1));
      if (line === '') {
        this.dispatch(frame);
        frame = { data: [] };
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') frame.data.push(val);
        else if (field === 'event') frame.event = val;
        else if (field === 'id') frame.id = val;
      }
    }
    setFrame(frame);
    return buffer;
  }

  dispatch(frame) {
    if (frame.id !== undefined) this.lastEventId = frame.id;
    if (!frame.data.length && !frame.event) return;
    const type = frame.event || 'message';
    let data = null;
    try {
      data = frame.data.length ? JSON.parse(frame.data.join('\n')) : null;
    } catch (_) {
      return;
    }
    if (type === 'cluster') this.deliverCluster(data);
    else {
      this.stats.events += 1;
      this.emit(type, data);
      if (type === 'trace' && data && data.session) this.deliverTopic(`trace:${data.session}`, data);
    }
  }

  deliverTopic(topic, data) {
    for (const sub of this.extra.get(topic) || []) {
      try {
        sub.onEvent(data);
      } catch (err) {
        console.warn('topic handler failed', err);
      }
    }
  }

  retry(why) {
    if (this.stopped) return;
    this.stats.reconnects += 1;
    this.setStatus(this.transport === 'polling' ? 'polling' : 'sse', false, why);
    this.tellTopics('connecting', why, this.currentTopics().filter((t) => this.extra.has(t)));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
  }

  async fetchJson(path, query) {
    const headers = { Accept: 'application/json' };
    const token = storedToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(buildUrl(path, query), { headers, cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return (await response.json()).data;
  }

  // Every cluster event after the last one delivered, in pages of 1,000.
  async catchUp() {
    for (let page = 0; page < 20; page++) {
      const data = await this.fetchJson('/api/v1/cluster/events', {
        since: this.lastClusterId,
        limit: 1000,
      });
      for (const e of data.events) this.deliverCluster(e);
      if (data.events.length < 1000) return;
    }
  }

  async poll() {
    this.setStatus('polling', true);
    // Two loops: the events cursor is local and cheap; the alerts operation
    // asks every node and can wait for a node timeout during a partition,
    // which must not hold the cluster events back.
    const events = async () => {
      if (this.stopped) return;
      try {
        await this.catchUp();
        if (!this.connected) this.setStatus('polling', true);
        this.backoff = 250;
        this.timer = setTimeout(events, POLL_MS);
      } catch (err) {
        this.stats.reconnects += 1;
        this.setStatus('polling', false, err.message);
        this.timer = setTimeout(events, this.backoff);
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      }
    };
    const alerts = async () => {
      if (this.stopped) return;
      try {
        await this.pollAlerts();
      } catch (_) {
        /* the events loop reports the connection state */
      }
      this.alertTimer = setTimeout(alerts, ALERT_POLL_MS);
    };
    events();
    if (this.topics.includes('alerts')) alerts();
  }

  // Alerts by polling: each newly active alert is delivered once, as the
  // stream would ({node, ...alert}); cleared ones as {cleared: true}.
  async pollAlerts() {
    const data = await this.fetchJson('/api/v1/cluster/alerts');
    const seen = new Map();
    for (const alert of data.alerts || []) {
      const key = alert.id || `${alert.node}|${alert.metric}|${alert.severity}`;
      seen.set(key, alert);
      if (!this.alertKeys.has(key)) this.emit('alert', alert);
    }
    for (const [key, alert] of this.alertKeys) {
      if (!seen.has(key)) this.emit('alert', { ...alert, cleared: true, cleared_at_ms: Date.now() });
    }
    this.alertKeys = seen;
  }
}
