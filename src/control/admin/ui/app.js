// The dashboard's entry: the state, the live stream (/events) with a polling fallback, and
// the connection indicator.
//
//   EventSource /events ──snapshot, point, status, replicas, rollouts, history──▶ state ─▶ render
//        │ onerror                                                         ▲
//        └──▶ every 2 s: GET /status, /replicas, /rollouts, /history ─────┘  (until onopen)

import * as R from '/ui/render.js';
import { setupActions } from '/ui/actions.js';

/** Points of the series kept: 15 minutes, one a second. */
const MAX_POINTS = 900;
/** Between polls while the stream is down. */
const POLL_MS = 2000;
/** Between new EventSources once the browser has given one up. */
const RECONNECT_MS = 10000;

const state = {
  info: null,
  infoAt: 0, // when info.uptime_s was true (page clock)
  status: null,
  replicas: null,
  rollouts: [],
  history: [],
  series: { t: [], pools: {} },
  skewMs: 0, // server clock minus page clock, when more than a few seconds
};

const page = { state, lastUpdate: null, mode: 'connecting' };
window.switchback = page;

let source = null;
let pollTimer = 0;
let polling = false;
let reconnectAt = 0;

function updated() {
  page.lastUpdate = Date.now();
}

function setMode(mode) {
  page.mode = mode;
  showConnection();
}

function showConnection() {
  const conn = R.$('conn');
  const age = page.lastUpdate == null ? null : Math.max(0, Math.round((Date.now() - page.lastUpdate) / 1000));
  const last = age == null ? 'no update yet' : `last update ${age}s ago`;
  let text;
  if (page.mode === 'live') text = 'live';
  else if (page.mode === 'polling') text = `polling · ${last} · stream disconnected`;
  else if (page.mode === 'connecting') text = 'disconnected · connecting…';
  else text = `disconnected · ${last}`;
  if (conn.textContent !== text) conn.textContent = text;
  conn.dataset.state = page.mode;
}

// --- applying what arrives ------------------------------------------------------------------

const renderers = {
  status: () => {
    R.renderStatus(state);
    R.renderPools(state);
  },
  replicas: () => R.renderReplicas(state),
  rollouts: () => R.renderRollouts(state),
  history: () => R.renderHistory(state),
};

function setPart(part, value) {
  if (part === 'rollouts' || part === 'history') value = Array.isArray(value) ? value : [];
  state[part] = value;
  renderers[part]();
}

function onSnapshot(d) {
  state.info = d.info || null;
  state.infoAt = Date.now();
  state.series = normalSeries(d.series);
  skewFrom(state.series.t[state.series.t.length - 1]);
  R.renderInfo(state);
  for (const part of Object.keys(renderers)) if (part in d) setPart(part, d[part]);
  R.renderPools(state);
}

function normalSeries(s) {
  const t = Array.isArray(s?.t) ? s.t.slice(-MAX_POINTS) : [];
  const pools = {};
  for (const [name, p] of Object.entries(s?.pools || {})) {
    pools[name] = {};
    for (const k of ['rps', 'errors', 'p99']) pools[name][k] = (Array.isArray(p?.[k]) ? p[k] : []).slice(-MAX_POINTS);
  }
  return { t, pools };
}

/** Appends one second to the series (a repeated second replaces the last). */
function onPoint(p) {
  if (state.info && p.uptime_s != null) {
    state.info.uptime_s = p.uptime_s;
    state.infoAt = Date.now();
  }
  if (typeof p.t !== 'number') return; // the series has no second yet
  skewFrom(p.t);
  const s = state.series;
  const last = s.t[s.t.length - 1];
  if (last != null && p.t < last) return;
  const replace = last === p.t;
  if (!replace) s.t.push(p.t);
  const n = s.t.length;
  const names = new Set([...Object.keys(s.pools), ...Object.keys(p.pools || {})]);
  for (const name of names) {
    const pool = (s.pools[name] ||= { rps: [], errors: [], p99: [] });
    const v = p.pools?.[name];
    for (const k of ['rps', 'errors', 'p99']) {
      const arr = pool[k];
      while (arr.length < n - 1) arr.push(null);
      if (replace && arr.length === n) arr[n - 1] = v?.[k] ?? null;
      else arr.push(v?.[k] ?? null);
      if (arr.length > MAX_POINTS) arr.splice(0, arr.length - MAX_POINTS);
    }
  }
  if (s.t.length > MAX_POINTS) s.t.splice(0, s.t.length - MAX_POINTS);
  R.renderPools(state);
}

function skewFrom(t) {
  if (typeof t !== 'number') return;
  const skew = t * 1000 - Date.now();
  state.skewMs = Math.abs(skew) > 5000 ? skew : 0;
}

// --- the stream -----------------------------------------------------------------------------

function connect() {
  const es = new EventSource('/events');
  source = es;
  es.onopen = () => {
    stopPolling();
    updated(); // its snapshot is on the way: not stuck yet
    setMode('live');
  };
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED && source === es) source = null; // the browser gave up
    if (page.mode === 'live' || page.mode === 'connecting') setMode('disconnected');
    startPolling();
  };
  const on = (name, fn) => es.addEventListener(name, (e) => {
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      return; // not JSON: nothing to show
    }
    fn(data);
    updated();
    if (page.mode !== 'live') {
      stopPolling();
      setMode('live');
    }
  });
  on('snapshot', onSnapshot);
  on('point', onPoint);
  for (const part of Object.keys(renderers)) on(part, (d) => setPart(part, d));
}

// --- the polling fallback -----------------------------------------------------------------------

function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(poll, POLL_MS);
  poll();
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = 0;
}

async function getJSON(path) {
  const res = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

/** One round of GETs; the parts that answered replace what the page holds. */
async function poll() {
  if (polling) return;
  polling = true;
  try {
    const paths = [['status', '/status'], ['replicas', '/replicas'], ['rollouts', '/rollouts?limit=10'], ['history', '/history?limit=100']];
    const results = await Promise.allSettled(paths.map(([, path]) => getJSON(path)));
    if (page.mode === 'live') return; // the stream came back meanwhile: it is newer
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') setPart(paths[i][0], r.value);
    });
    if (results[0].status === 'fulfilled') {
      updated();
      setMode('polling');
    } else setMode('disconnected');
  } finally {
    polling = false;
  }
  if (!source && Date.now() >= reconnectAt) {
    reconnectAt = Date.now() + RECONNECT_MS;
    connect();
  }
}

/** After a write: the stream brings the change by itself; without it, look now. */
function afterWrite() {
  if (page.mode !== 'live') poll();
}

// --- start -------------------------------------------------------------------------------

setupActions({ getState: () => state, afterWrite, rerender: () => renderers.status() });
R.$('filter-actor').addEventListener('change', () => R.renderHistory(state));
R.$('filter-action').addEventListener('change', () => R.renderHistory(state));
/** A live stream brings a point every second: none for this long means it is stuck. */
const STUCK_MS = 3500;

setInterval(() => {
  R.tick(state);
  if (page.mode === 'live' && page.lastUpdate != null && Date.now() - page.lastUpdate > STUCK_MS) {
    // Stuck: let its slot go; polling opens a new stream every RECONNECT_MS meanwhile.
    if (source) source.close();
    source = null;
    setMode('disconnected');
    startPolling();
  }
  showConnection();
}, 1000);
showConnection();
connect();
