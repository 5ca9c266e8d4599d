// Turns the page's state into DOM. Every text that came from the server goes in through
// textContent or text nodes, never as markup. Lists are updated by key, so a focused button,
// an open <details> or a half-typed split survive the once-a-second updates.

export const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const ACTIVE = ['smoke', 'running', 'paused', 'waiting'];

/** An element with a class, a text and attributes; children are nodes or strings (as text). */
export function h(tag, opts = {}, ...children) {
  const e = document.createElement(tag);
  if (opts.class) e.className = opts.class;
  if (opts.text != null) e.textContent = String(opts.text);
  for (const [k, v] of Object.entries(opts.attrs || {})) if (v != null) e.setAttribute(k, String(v));
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function setText(e, text) {
  const t = text == null ? '' : String(text);
  if (e && e.textContent !== t) e.textContent = t;
}

/** Reuses `parent`'s children by key: creates the missing, updates all, removes the rest. */
export function keyed(parent, items, keyOf, create, update) {
  const old = new Map();
  for (const c of [...parent.children]) {
    if (c.dataset.key != null) old.set(c.dataset.key, c);
    else c.remove();
  }
  let prev = null;
  for (const item of items) {
    const k = String(keyOf(item));
    let node = old.get(k);
    if (node) old.delete(k);
    else { node = create(item); node.dataset.key = k; }
    update(node, item);
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (node !== want) parent.insertBefore(node, want);
    prev = node;
  }
  for (const n of old.values()) n.remove();
}

// --- formatting -------------------------------------------------------------------------

export const pct = (n) => (n == null ? '—' : `${n} %`);
export const fmtSplit = (split) =>
  split ? Object.entries(split).map(([p, s]) => `${p} ${s} %`).join(' · ') : 'none';

export function duration(s) {
  if (s == null || !Number.isFinite(s)) return '—';
  s = Math.max(0, Math.floor(s));
  const two = (a, ua, b, ub) => (b ? `${a} ${ua} ${b} ${ub}` : `${a} ${ua}`);
  if (s < 60) return `${s} s`;
  if (s < 3600) return two(Math.floor(s / 60), 'min', s % 60, 's');
  if (s < 86400) return two(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'min');
  return two(Math.floor(s / 86400), 'd', Math.floor((s % 86400) / 3600), 'h');
}

const num = (n, digits) => (n == null || !Number.isFinite(n) ? '—' : n.toFixed(digits));
const rps = (n) => (n == null ? '—' : `${num(n, n < 10 ? 1 : 0)}/s`);
const errs = (n) => (n == null ? '—' : `${num(n, n < 1 ? 2 : 1)} %`);
const ms = (n) => (n == null ? '—' : `${num(n, n < 10 ? 2 : n < 100 ? 1 : 0)} ms`);

/** Now on the server's clock (the page corrects a skew of more than a few seconds). */
export const serverNow = (state) => Date.now() + (state.skewMs || 0);
const ago = (state, iso) => {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? '—' : `${duration((serverNow(state) - t) / 1000)} ago`;
};
function localTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? '');
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

/** A colour class per pool: blue and green keep their colours, others take the palette. */
function poolClass(name, names) {
  const fixed = { blue: 'pc-blue', green: 'pc-green' };
  return fixed[name] || `pc-${Math.max(0, names.indexOf(name)) % 6}`;
}

// --- header, split, backends, certificates (from /status) ----------------------------------

export function renderStatus(state) {
  const st = state.status;
  if (!st) return;
  setText($('version'), st.version);
  const s = st.state || {};
  let where = `${s.store ?? '?'}${s.path ? ` ${s.path}` : ''}`;
  if (s.replica != null) where += ` · replica ${s.replica}${s.connected === false ? ' · shared state unreachable' : ''}`;
  setText($('store'), where);
  const warn = $('store-warning');
  warn.hidden = !s.mismatch;
  setText(warn, s.mismatch ? `the shared split is not live here: ${s.mismatch}` : '');
  renderSplit(st);
  renderBackends(state);
  renderCerts(st.tls);
}

function renderSplit(st) {
  const split = st.split || {};
  const names = Object.keys(st.pools || split);
  const pools = [...new Set([...Object.keys(split), ...names])]; // a pool the split leaves out has 0 %
  const share = (p) => split[p] ?? st.pools?.[p]?.share ?? 0;
  keyed($('split-bar'), pools, (p) => p, (p) => h('div', { class: `seg ${poolClass(p, names)}` }, h('span')), (seg, p) => {
    seg.dataset.pool = p;
    seg.dataset.share = String(share(p));
    seg.style.width = `${Number(share(p)) || 0}%`;
    setText(seg.firstChild, `${p} ${share(p)} %`);
    seg.title = seg.firstChild.textContent;
  });
  $('split-bar').setAttribute('aria-label', `traffic split: ${fmtSplit(split)}`);
  keyed($('split-legend'), pools, (p) => p, (p) => h('li', {}, h('span', { class: `swatch ${poolClass(p, names)}` }), h('span')),
    (li, p) => setText(li.lastChild, `${p} ${share(p)} %${st.pools?.[p]?.up === false ? ' · down' : ''}`));
  setText($('previous-split'), st.previous_split ? fmtSplit(st.previous_split) : 'nothing yet (no earlier split)');
  $('btn-rollback').disabled = !st.previous_split;
  keyed($('switch-buttons'), pools, (p) => p, (p) => h('button', { attrs: { type: 'button', 'data-switch': p } }),
    (b, p) => { setText(b, `Switch to ${p}`); b.disabled = Number(share(p)) === 100; });
  const form = $('split-form');
  // An edit in progress stays on the version it began at: sending it then gets 412.
  if (!form.dataset.dirty) form.dataset.version = String(st.version);
  keyed($('split-inputs'), pools, (p) => p, (p) => h('label', { class: 'split-input' }, h('span', { text: p }),
    h('input', { attrs: { type: 'number', min: 0, max: 100, step: 'any', inputmode: 'decimal', 'data-pool': p } }), h('span', { text: '%' })),
  (label, p) => {
    const input = label.querySelector('input');
    if (!form.dataset.dirty && document.activeElement !== input) input.value = String(share(p));
  });
  $('btn-set-split').disabled = pools.length === 0;
  updateTotal();
}

/** The sum of the split form's inputs, next to its button. */
export function updateTotal() {
  let total = 0;
  for (const i of $('split-form').querySelectorAll('input[data-pool]')) total += Number(i.value) || 0;
  const out = $('split-total');
  setText(out, `total ${Math.round(total * 100) / 100} %`);
  out.classList.toggle('bad', Math.abs(total - 100) > 1e-9);
}

function renderBackends(state) {
  const pools = Object.entries(state.status.pools || {});
  keyed($('backends'), pools, ([p]) => p, ([p]) => {
    const head = h('tr', {}, ...['address', 'state', 'weight', 'in flight', 'active checks', ''].map((t, i) =>
      h('th', { text: t, class: i === 2 || i === 3 ? 'num' : '', attrs: { scope: 'col' } })));
    return h('div', { class: 'pool-backends', attrs: { 'data-pool': p } }, h('h3', { text: p }),
      h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, head), h('tbody'))));
  }, (div, [p, pool]) => {
    keyed(div.querySelector('tbody'), pool.backends || [], (b) => b.addr, () => h('tr', {},
      h('td', { class: 'addr' }), h('td', { class: 'state' }, h('span', { class: 'badge' })), h('td', { class: 'weight num' }),
      h('td', { class: 'inflight num' }), h('td', { class: 'checks' }), h('td', {}, h('button', { attrs: { type: 'button' } }))),
    (tr, b) => backendRow(state, tr, p, b));
  });
}

function backendRow(state, tr, pool, b) {
  tr.dataset.pool = pool;
  tr.dataset.addr = b.addr;
  const [addr, st, weight, inflight, checks, act] = tr.children;
  setText(addr, b.resolved && b.resolved !== b.addr ? `${b.addr} (${b.resolved})` : b.addr);
  setText(st.firstChild, b.state);
  st.firstChild.className = `badge state-${b.state}`;
  setText(weight, b.weight);
  setText(inflight, b.inflight);
  // The count of active checks, and when the last one completed (server clock).
  const at = b.last_check ? Date.parse(b.last_check) : NaN;
  checks.dataset.prefix = `${b.checks} · last `;
  if (b.checks && !Number.isNaN(at)) checks.dataset.since = String(at);
  else delete checks.dataset.since;
  setText(checks, !b.checks ? 'none' : Number.isNaN(at) ? `${b.checks} done` : `${b.checks} · last ${duration(Math.max(0, serverNow(state) - at) / 1000)} ago`);
  const button = act.firstChild;
  const verb = b.drained ? 'Undrain' : 'Drain';
  button.className = verb.toLowerCase();
  setText(button, verb);
  button.setAttribute('aria-label', `${verb} ${b.addr} in ${pool}`);
}

function renderCerts(tls) {
  const on = !!tls?.enabled;
  $('certs').hidden = !on;
  if (!on) return;
  setText($('tls-listen'), (tls.listen || []).join(', ') || '—');
  keyed($('certs-body'), tls.certificates || [], (c) => `${c.cert}|${(c.names || []).join(',')}`, () =>
    h('tr', {}, h('td'), h('td'), h('td', { class: 'num' }), h('td', { class: 'files' })), (tr, c) => {
    const [names, notAfter, left, files] = tr.children;
    setText(names, (c.names || []).join(', '));
    setText(notAfter, c.not_after);
    const days = Math.floor((c.expires_in_seconds ?? 0) / 86400);
    setText(left, c.expires_in_seconds == null ? '—' : days >= 0 ? `${days} days` : `expired ${-days} days ago`);
    tr.classList.toggle('warn', c.expires_in_seconds != null && days < 14);
    setText(files, `${c.cert} · ${c.key}`);
  });
}

// --- replicas --------------------------------------------------------------------------

export function renderReplicas(state) {
  const r = state.replicas;
  if (!r) return;
  keyed($('replicas'), r.replicas || [], (x) => x.replica,
    () => h('tr', {}, h('td'), h('td', { class: 'num' }), h('td', { class: 'num' }), h('td'), h('td')),
    (tr, x) => {
      const [name, version, lag, leader, beat] = tr.children;
      setText(name, `${x.replica}${x.replica === r.replica ? ' (this one)' : ''}${x.mismatch ? ` — ${x.mismatch}` : ''}`);
      tr.classList.toggle('warn', !!x.mismatch || x.lag > 0);
      setText(version, x.version);
      setText(lag, x.lag);
      setText(leader, x.leader ? 'leader' : '');
      if (x.last_heartbeat) { beat.dataset.iso = x.last_heartbeat; setText(beat, ago(state, x.last_heartbeat)); }
      else { delete beat.dataset.iso; setText(beat, x.replica === 'local' ? 'not shared' : '—'); }
    });
}

// --- traffic per pool ---------------------------------------------------------------------

const METRICS = [['rps', 'requests', rps], ['errors', 'errors', errs], ['p99', 'p99 latency', ms]];

export function renderPools(state) {
  const series = state.series || { t: [], pools: {} };
  const names = [...new Set([...Object.keys(state.status?.pools || {}), ...Object.keys(series.pools || {})])];
  keyed($('pools'), names, (p) => p, (p) => h('div', { class: `pool ${poolClass(p, names)}`, attrs: { 'data-pool': p } },
    h('h3', { text: p }, ' ', h('span', { class: 'badge' })),
    ...METRICS.map(([k, label]) => h('div', { class: 'metric' }, h('span', { class: 'label', text: label }),
      h('span', { class: `value ${k}` }), spark(label)))),
  (div, p) => {
    const up = state.status?.pools?.[p]?.up;
    const badge = div.querySelector('h3 .badge');
    setText(badge, up == null ? '' : up ? 'up' : 'down');
    badge.className = `badge state-${up ? 'up' : 'down'}`;
    const data = series.pools?.[p] || {};
    const boxes = div.querySelectorAll('.metric');
    METRICS.forEach(([k, , fmt], i) => {
      const values = data[k] || [];
      setText(boxes[i].querySelector('.value'), fmt(values.length ? values[values.length - 1] : null));
      boxes[i].querySelector('path').setAttribute('d', sparkPath(series.t || [], values));
    });
  });
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}
const spark = (label) => {
  const box = svg('svg', { class: 'spark', viewBox: '0 0 300 40', preserveAspectRatio: 'none', role: 'img', 'aria-label': `${label}, last 15 minutes` });
  box.append(svg('path', { fill: 'none', stroke: 'currentColor', 'stroke-width': '1.5', 'vector-effect': 'non-scaling-stroke' }));
  return box;
};

/** An SVG path over the series (at least a minute wide); a null or a gap of more than 5 s
 * breaks the line. */
export function sparkPath(t, values) {
  const n = Math.min(t.length, values.length);
  if (n === 0) return '';
  const span = Math.max(60, t[n - 1] - t[0]);
  const t0 = t[n - 1] - span;
  let max = 0;
  for (let i = 0; i < n; i++) if (values[i] != null && values[i] > max) max = values[i];
  max = max || 1;
  let d = '';
  let pen = false;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v == null || (i > 0 && t[i] - t[i - 1] > 5)) pen = false;
    if (v == null) continue;
    const x = (Math.max(0, t[i] - t0) / span) * 300;
    const y = 38 - (v / max) * 36;
    d += `${pen ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
    pen = true;
  }
  return d;
}

// --- the rollout ---------------------------------------------------------------------------

export function renderRollouts(state) {
  const list = state.rollouts || [];
  const r = list[0];
  $('rollout').hidden = !r;
  if (!r) return;
  setText($('rollout-id'), r.id);
  setText($('rollout-plan'), `plan ${r.plan}:`);
  setText($('rollout-pools'), `${r.from} → ${r.to}`);
  setText($('rollout-state'), r.state);
  $('rollout-state').className = `badge state-${r.state}`;
  setText($('rollout-reason'), r.reason ?? '');
  $('rollout-dry-run').hidden = !r.dry_run;
  setText($('rollout-weight'), pct(r.weight));
  setText($('rollout-revision'), r.revision ?? '—');
  setText($('rollout-started'), localTime(r.started));
  setText($('rollout-message'), r.message);
  keyed($('rollout-warnings'), r.warnings || [], (w) => w, (w) => h('li', { text: w }), () => {});
  const active = ACTIVE.includes(r.state);
  // Enabled exactly when the API would accept (machine.rs, `operator`).
  const can = { pause: ['running', 'waiting'], resume: ['paused'], approve: ['waiting'], promote: ['running', 'paused', 'waiting'], abort: ACTIVE };
  for (const [action, states] of Object.entries(can)) $(`btn-${action}`).disabled = !states.includes(r.state);
  keyed($('rollout-steps'), (r.steps || []).map((s, i) => ({ ...s, i })), (s) => s.i, () => h('li'), (li, s) => {
    const parts = [`${s.weight} %`, `hold ${duration(s.hold_s)}`];
    if (s.min_requests) parts.push(`at least ${s.min_requests} requests`);
    if (s.gate) parts.push('waits for approval');
    setText(li, parts.join(' · '));
    if (s.i === r.step) li.setAttribute('aria-current', 'step'); else li.removeAttribute('aria-current');
    li.classList.toggle('done', s.i < r.step || r.state === 'promoted');
  });
  renderEvidence($('rollout-evidence'), $('rollout-gauges'), r);
  renderRelease($('rollout-release'), r.release);
  keyed($('rollout-others'), list.slice(1), (o) => o.id, () => h('li'),
    (li, o) => setText(li, `#${o.id} → ${o.to} · ${o.state}${o.reason ? ` (${o.reason})` : ''} · ${localTime(o.updated)}`));
  if (!active) { setText($('rollout-in-step'), '—'); setText($('rollout-left'), '—'); }
  tickRollout(state);
}

/** The step's numbers per pool side by side, and the two tests' ratios against the threshold. */
export function renderEvidence(table, gauges, r) {
  const ev = r.evidence;
  table.replaceChildren();
  gauges.replaceChildren();
  if (!ev) { table.append(h('caption', { text: 'no numbers yet' })); return; }
  const pools = [...new Set([r.from, r.to, ...Object.keys(ev.pools || {})])];
  table.append(h('thead', {}, h('tr', {}, h('th'), ...pools.map((p) => h('th', { text: p, class: 'num', attrs: { scope: 'col' } })))));
  const body = h('tbody');
  for (const [k, label] of [['requests', 'requests'], ['errors', 'errors'], ['slow', 'slow'], ['p99_ms', 'p99 ms']]) {
    body.append(h('tr', {}, h('th', { text: label, attrs: { scope: 'row' } }),
      ...pools.map((p) => h('td', { class: 'num', text: ev.pools?.[p]?.[k] ?? '—' }))));
  }
  table.append(body);
  for (const [k, label] of [['error_ratio', 'error evidence'], ['latency_ratio', 'latency evidence']]) {
    const v = Number(ev[k]) || 0;
    const max = Number(ev.threshold) || 1;
    const meter = h('meter', { attrs: { min: 0, max, low: max * 0.5, high: max * 0.8, optimum: 0, value: Math.min(Math.max(v, 0), max) } });
    gauges.append(h('div', { class: 'gauge' }, h('span', { text: label }), meter, h('span', { class: 'num', text: `${v.toFixed(2)} of ${max.toFixed(2)}` })));
  }
  const notes = [ev.slow_above_ms != null && `slow above ${ev.slow_above_ms} ms`, ev.compared_with && `compared with the ${ev.compared_with}`].filter(Boolean);
  if (notes.length) gauges.append(h('p', { class: 'muted', text: notes.join(' · ') }));
}

/** The release JSON as "key: value" lines; a string is shown as it is. */
function renderRelease(box, release) {
  const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
  const lines = release == null ? [] : typeof release === 'object' && !Array.isArray(release)
    ? Object.entries(release).map(([k, v]) => `${k}: ${text(v)}`) : [text(release)];
  setText(box, lines.length ? lines.join('\n') : 'none given');
  box.classList.toggle('muted', !lines.length);
}

function tickRollout(state) {
  const r = state.rollouts?.[0];
  if (!r || !ACTIVE.includes(r.state) || !r.step_started) return;
  const inStep = (serverNow(state) - Date.parse(r.step_started)) / 1000;
  if (!Number.isFinite(inStep)) return;
  setText($('rollout-in-step'), duration(inStep));
  const hold = r.steps?.[r.step]?.hold_s;
  setText($('rollout-left'), hold == null ? '—' : duration(Math.max(0, hold - inStep)));
}

// --- the deployment log ------------------------------------------------------------------------

export function renderHistory(state) {
  const all = state.history || [];
  const actor = fillFilter($('filter-actor'), all.map((e) => e.actor));
  const action = fillFilter($('filter-action'), all.map((e) => e.action));
  const seen = new Map();
  const keyOf = (e) => {
    const base = `${e.seq ?? ''}|${e.time}|${e.action}|${e.version}|${e.actor}`;
    const n = (seen.get(base) || 0) + 1;
    seen.set(base, n);
    return `${base}#${n}`;
  };
  const shown = all.map((e) => [keyOf(e), e]).filter(([, e]) => (!actor || e.actor === actor) && (!action || e.action === action));
  keyed($('history'), shown, ([k]) => k, ([, e]) => entry(e), () => {});
}

function fillFilter(select, values) {
  const current = select.value;
  const options = [...new Set(values.filter((v) => v != null))].sort();
  if (current && !options.includes(current)) options.push(current);
  keyed(select, ['', ...options], (v) => v, (v) => h('option', { text: v || 'all', attrs: { value: v } }), () => {});
  select.value = current;
  return current;
}

function entry(e) {
  const li = h('li', { class: `entry outcome-${e.outcome}`, attrs: { 'data-action': e.action, 'data-actor': e.actor } });
  const time = h('time', { text: localTime(e.time), attrs: { datetime: e.time, title: e.time } });
  li.append(h('div', { class: 'entry-head' }, time, ' ', h('span', { class: 'badge', text: e.action }), ' by ',
    h('strong', { text: e.actor }), e.outcome === 'rejected' && e.action !== 'rejected' ? h('span', { class: 'badge state-down', text: 'rejected' }) : null,
    h('span', { class: 'muted', text: ` · version ${e.version}${e.replica ? ` · on ${e.replica}` : ''}` })));
  if (JSON.stringify(e.before) !== JSON.stringify(e.after)) li.append(h('div', { class: 'entry-split', text: `${fmtSplit(e.before)} → ${fmtSplit(e.after)}` }));
  if (e.message && !e.rollout) li.append(h('p', { class: 'entry-message', text: e.message }));
  if (e.rollout) {
    const r = e.rollout;
    const details = h('details', {}, h('summary', { text: `rollout #${r.id} → ${r.to}: ${r.state}${r.reason ? ` (${r.reason})` : ''} at ${r.weight} %` }));
    details.append(h('p', { class: 'entry-message', text: r.message || e.message }));
    const [table, gauges] = [h('table', { class: 'evidence' }), h('div', { class: 'gauges' })];
    renderEvidence(table, gauges, r);
    details.append(h('div', { class: 'scroll' }, table), gauges);
    li.append(details);
  }
  return li;
}

// --- once a second ----------------------------------------------------------------------

export function tick(state) {
  if (state.info) setText($('uptime'), duration((state.info.uptime_s ?? 0) + (Date.now() - state.infoAt) / 1000));
  tickRollout(state);
  for (const e of document.querySelectorAll('#replicas [data-iso]')) setText(e, ago(state, e.dataset.iso));
  for (const e of document.querySelectorAll('#backends [data-since]')) setText(e, `${e.dataset.prefix}${duration(Math.max(0, serverNow(state) - Number(e.dataset.since)) / 1000)} ago`);
}

export const renderInfo = (state) => { setText($('software'), state.info?.software ?? '—'); tick(state); };
