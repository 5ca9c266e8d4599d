// Writes: the admin token, the confirmation dialogs, If-Match, and what each answer means.
//
// - 401: ask for the token (kept in sessionStorage only) and send the same request again; a
//   401 with a token already held drops it and asks again, showing the server's error.
// - 412: someone changed it since this page's version: say so, send nothing more.
// - any other error: the server's `error` sentence.

import { $, fmtSplit, updateTotal } from '/ui/render.js';

const TOKEN_KEY = 'switchback-token';
const STALE = 'someone changed it: reload to see';

// --- the notice area ----------------------------------------------------------------------

let noticeTimer = 0;

/** Shows `text` in the notice area; a success fades after a while, an error stays. */
export function notice(text, kind) {
  const box = $('notice');
  clearTimeout(noticeTimer);
  box.textContent = text;
  box.dataset.kind = kind;
  if (kind === 'ok') {
    noticeTimer = setTimeout(() => {
      box.textContent = '';
      delete box.dataset.kind;
    }, 8000);
  }
}

// --- the token -------------------------------------------------------------------------

function storage(fn) {
  try {
    return fn(window.sessionStorage);
  } catch {
    return null; // storage refused (privacy settings): the token lives for this request only
  }
}
const getToken = () => storage((s) => s.getItem(TOKEN_KEY));
const setToken = (t) => storage((s) => (s.setItem(TOKEN_KEY, t), true));
const clearToken = () => storage((s) => s.removeItem(TOKEN_KEY));

let tokenWaiter = null;
let onceToken = null; // when sessionStorage is refused

/** Opens the token dialog; resolves with the token, or null when cancelled. */
function askToken(error) {
  const dialog = $('token-dialog');
  $('token-error').textContent = error || '';
  $('token-input').value = '';
  return new Promise((resolve) => {
    tokenWaiter = resolve;
    dialog.showModal();
    $('token-input').focus();
  });
}

function closeToken(value) {
  const resolve = tokenWaiter;
  tokenWaiter = null;
  if ($('token-dialog').open) $('token-dialog').close();
  if (resolve) resolve(value);
}

// --- the confirmation dialog -----------------------------------------------------------------

let confirmWaiter = null;

/** Opens the confirmation; resolves true on Confirm, false on Cancel or Escape. */
function confirmDialog(title, text, ok) {
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = ok;
  return new Promise((resolve) => {
    confirmWaiter = resolve;
    $('confirm').showModal();
    $('confirm-cancel').focus();
  });
}

function closeConfirm(value) {
  const resolve = confirmWaiter;
  confirmWaiter = null;
  if ($('confirm').open) $('confirm').close();
  if (resolve) resolve(value);
}

// --- sending -------------------------------------------------------------------------------

/** Sends one write; answers {ok, status, data, error, cancelled}. */
export async function send(method, path, body, ifMatch) {
  for (;;) {
    const token = getToken() ?? onceToken;
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (ifMatch != null) headers['If-Match'] = String(ifMatch);
    let res;
    try {
      res = await fetch(path, { method, headers, body: JSON.stringify(body ?? {}), cache: 'no-store' });
    } catch (e) {
      return { ok: false, status: 0, error: `could not reach switchback: ${e.message}` };
    }
    const data = await res.json().catch(() => null);
    const error = typeof data?.error === 'string' ? data.error : `HTTP ${res.status}`;
    if (res.status !== 401) return { ok: res.ok, status: res.status, data, error };
    if (token) {
      clearToken();
      onceToken = null;
    }
    const next = await askToken(token ? error : '');
    if (!next) return { ok: false, status: 401, error, cancelled: true };
    if (!setToken(next)) onceToken = next;
  }
}

/** Says how a write went in the notice area; answers whether it was applied. */
function report(result, success) {
  if (result.cancelled) notice('not sent: this change needs an admin token', 'error');
  else if (result.status === 412) notice(`${STALE} (${result.error})`, 'error');
  else if (!result.ok) notice(result.error, 'error');
  else notice(success(result.data || {}), 'ok');
  return result.ok;
}

let busy = false;

/** Runs one write at a time: a second click while one is on its way is ignored. */
async function once(fn) {
  if (busy) return;
  busy = true;
  try {
    await fn();
  } finally {
    busy = false;
  }
}

// --- the writes --------------------------------------------------------------------------------

const applied = (d, what) => {
  let text = `${what}: ${fmtSplit(d.split)}${d.version != null ? ` (version ${d.version})` : ''}`;
  if (d.message) text += ` — ${d.message}`;
  return text;
};

/** Confirms and sends a split change, with `If-Match: <version>` (default: the version the
 *  page shows now). */
async function changeSplit(ctx, title, after, method, path, body, done, version) {
  const status = ctx.getState().status;
  if (!status) return;
  const text = `${fmtSplit(status.split)}\n→ ${fmtSplit(after)}`;
  if (!(await confirmDialog(title, text, 'Confirm'))) return;
  const result = await send(method, path, body, version ?? status.version);
  if (result.ok || result.status === 412) {
    delete $('split-form').dataset.dirty; // the form follows the page again
    ctx.rerender();
  } // any other refusal keeps the edit, to correct it
  if (report(result, (d) => applied(d, done))) ctx.afterWrite();
}

function rollback(ctx) {
  const status = ctx.getState().status;
  if (!status?.previous_split) return;
  return changeSplit(ctx, 'Roll back the split?', status.previous_split, 'POST', '/rollback', {}, 'rolled back');
}

function switchTo(ctx, pool) {
  const status = ctx.getState().status;
  if (!status) return;
  const after = Object.fromEntries(Object.keys(status.split || {}).map((p) => [p, p === pool ? 100 : 0]));
  return changeSplit(ctx, `Switch all traffic to ${pool}?`, after, 'POST', '/switch', { to: pool }, `switched to ${pool}`);
}

function setSplit(ctx) {
  const after = {};
  for (const input of $('split-form').querySelectorAll('input[data-pool]')) {
    const value = input.value.trim() === '' ? NaN : Number(input.value);
    if (!Number.isFinite(value)) {
      notice(`${input.dataset.pool}: enter a percentage from 0 to 100`, 'error');
      input.focus();
      return;
    }
    after[input.dataset.pool] = value;
  }
  // The version the edit began at (render.js keeps it while the form is being edited).
  const version = Number($('split-form').dataset.version);
  return changeSplit(ctx, 'Set the split?', after, 'PUT', '/split', after, 'split set', Number.isInteger(version) ? version : undefined);
}

async function drain(ctx, row, verb) {
  const { pool, addr } = row.dataset;
  const backend = ctx.getState().status?.pools?.[pool]?.backends?.find((b) => b.addr === addr);
  if (verb === 'drain') {
    const n = backend?.inflight ?? 0;
    const text = `${addr} in ${pool} has ${n} request${n === 1 ? '' : 's'} in flight.\nThey finish; no new request goes to it.`;
    if (!(await confirmDialog(`Drain ${addr}?`, text, 'Drain'))) return;
  }
  const path = `/backends/${encodeURIComponent(pool)}/${encodeURIComponent(addr)}/${verb}`;
  const result = await send('POST', path, {});
  const ok = report(result, (d) => {
    if (d.changed === false) return `${addr} in ${pool} was already ${verb === 'drain' ? 'drained' : 'taking requests'}`;
    return verb === 'drain'
      ? `drained ${addr} in ${pool}; ${d.inflight ?? 0} in flight finish`
      : `${addr} in ${pool} takes requests again`;
  });
  if (ok) ctx.afterWrite();
}

async function rolloutAct(ctx, action) {
  const r = ctx.getState().rollouts?.[0];
  if (!r) return;
  if (action === 'abort') {
    const text = `${fmtSplit(ctx.getState().status?.split)}\n→ ${fmtSplit(r.start_split)}\n${r.to} gets no more traffic from this rollout.`;
    if (!(await confirmDialog(`Abort rollout ${r.id}?`, text, 'Abort'))) return;
  }
  const tag = Number.isInteger(r.revision) ? `${r.id}.${r.revision}` : null;
  const result = await send('POST', `/rollouts/current/${action}`, {}, tag);
  const ok = report(result, (d) => `rollout ${d.id ?? r.id} ${d.state ?? action}${d.message ? `: ${d.message}` : ''}`);
  if (ok) ctx.afterWrite();
}

// --- wiring ------------------------------------------------------------------------------

/** Binds every control of the page. `ctx` = {getState, afterWrite, rerender}. */
export function setupActions(ctx) {
  $('confirm-ok').addEventListener('click', () => closeConfirm(true));
  $('confirm-cancel').addEventListener('click', () => closeConfirm(false));
  $('confirm').addEventListener('close', () => closeConfirm(false));
  $('token-cancel').addEventListener('click', () => closeToken(null));
  $('token-dialog').addEventListener('close', () => closeToken(null));
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim();
    if (!/^[\x21-\x7e]+$/.test(token)) {
      $('token-error').textContent = 'enter the token: printable ASCII, no spaces';
      return;
    }
    closeToken(token);
  });

  $('btn-rollback').addEventListener('click', () => once(() => rollback(ctx)));
  $('switch-buttons').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-switch]');
    if (button && !button.disabled) once(() => switchTo(ctx, button.dataset.switch));
  });
  const form = $('split-form');
  form.addEventListener('input', () => {
    form.dataset.dirty = '1';
    updateTotal();
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    once(() => setSplit(ctx));
  });
  $('backends').addEventListener('click', (e) => {
    const button = e.target.closest('button.drain, button.undrain');
    const row = button?.closest('tr[data-pool]');
    if (row) once(() => drain(ctx, row, button.classList.contains('drain') ? 'drain' : 'undrain'));
  });
  for (const action of ['pause', 'resume', 'approve', 'promote', 'abort']) {
    $(`btn-${action}`).addEventListener('click', () => once(() => rolloutAct(ctx, action)));
  }
}
