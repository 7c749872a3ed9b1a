// The admin page: sign-in, release state and live progress, bundles (upload and versions),
// site values, backups and restores, revision history and the audit log. Only the agent's
// documented API.

import { ApiError, followEvents, get, post, put, token, uploadBundle } from './api.js';
import { setupBackups } from './backups.js';
import { setupUpgradeDialog } from './upgrade.js';

const $ = (id) => document.getElementById(id);

/** The plan's steps in order, as the engine reports them in `progress.step`. */
const STEPS = ['Lock', 'Verify', 'Render', 'Preflight', 'Persist', 'Stage', 'Backup', 'PreHooks', 'Apply', 'PostHooks', 'Prune', 'Record'];
const STEP_LABELS = { PreHooks: 'Pre hooks and migrations', PostHooks: 'Post hooks' };

const state = {
  caller: null, // {name, role}
  release: null, // ReleaseView
  versions: [],
  events: null, // AbortController of the event stream
  pending: null, // {version} requested and not yet seen running
  watching: null, // the running operation's name while we follow it
  lastProgress: null,
  logKeys: new Set(),
  finished: null, // {op, ok} of the operation followed to its end
  backups: null, // the Backups section ({refresh, refreshList, stop})
};

const isAdmin = () => state.caller && state.caller.role === 'admin';

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const badge = (text, kind) => el('span', { class: `badge ${kind || ''}`, text });
/** A long reason cut for a table cell; the revision's details show it whole. */
const short = (t) => (t && t.length > 160 ? `${t.slice(0, 157)}…` : t);
const when = (t) => (t ? String(t).replace('T', ' ').replace(/\.\d+/, '') : '—');

function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

function errorText(e) {
  if (e instanceof ApiError) {
    const problems = Array.isArray(e.body.problems) && e.body.problems.length ? ` — ${e.body.problems.join('; ')}` : '';
    return `${e.message}${problems} (${e.code})`;
  }
  return e && e.message ? e.message : String(e);
}

function applyRole() {
  const admin = isAdmin();
  for (const c of document.querySelectorAll('[data-admin]')) {
    c.disabled = !admin;
    if (!admin) c.title = 'A viewer token cannot change anything';
    else c.removeAttribute('title');
  }
  $('viewer-note').hidden = admin;
}

// ------------------------------------------------------------------ sign-in

async function signIn(t) {
  token.set(t);
  let status;
  try {
    status = await get('/api/v1/status');
  } catch (e) {
    token.clear();
    throw e;
  }
  state.caller = status.caller;
  $('product').textContent = status.product;
  $('who-name').textContent = status.caller.name;
  const role = $('who-role');
  role.textContent = status.caller.role;
  role.className = `badge ${status.caller.role === 'admin' ? 'info' : 'warn'}`;
  $('who').hidden = false;
  $('signin').hidden = true;
  $('app').hidden = false;
  document.title = `Sealift agent — ${status.product}`;
  applyRole();
  await refreshAll();
  state.events = new AbortController();
  followEvents(onEvent, onLink, state.events.signal);
}

function signOut() {
  if (state.events) state.events.abort();
  if (state.backups) state.backups.stop();
  token.clear();
  Object.assign(state, { caller: null, release: null, versions: [], events: null, pending: null, watching: null, finished: null });
  $('app').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  $('token').value = '';
  $('signin-error').textContent = '';
  $('token').focus();
}

function onLink(connected, why) {
  if (why === 'unauthorized') {
    signOut();
    $('signin-error').textContent = 'The agent no longer accepts this token. Sign in again.';
  }
}

// ------------------------------------------------------------------ data

async function refreshAll() {
  await Promise.allSettled([refreshRelease(), refreshVersions(), refreshVariables(), refreshBackups(), refreshRevisions(), refreshAudit()]);
}

async function refreshRelease() {
  try {
    renderRelease(await get('/api/v1/release'));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      $('release-message').textContent = 'This agent has no kubernetes section: it stores bundles but runs no release engine.';
      $('open-upgrade').disabled = true;
    } else {
      $('release-message').textContent = errorText(e);
    }
  }
}

async function refreshBackups() {
  if (state.backups) await state.backups.refresh();
}

async function refreshVersions() {
  const body = await get('/api/v1/versions');
  state.versions = body.versions;
  renderVersions();
}

// ------------------------------------------------------------------ release and progress

function activeCondition(status) {
  return (status.conditions || []).find((c) => c.type !== 'Ready' && c.status === 'True')
    || (status.conditions || []).find((c) => c.type === 'Ready');
}

function renderRelease(view) {
  state.release = view;
  const s = view.status || {};
  $('current-version').textContent = s.currentVersion || 'not installed';
  $('desired-version').textContent = s.desiredVersion || '—';
  const phase = $('phase');
  phase.textContent = s.phase || 'unknown';
  phase.className = `pill ${/^Ready/.test(s.phase) ? 'ok' : /^Stalled/.test(s.phase) ? 'bad' : /^Reconciling/.test(s.phase) ? 'info' : ''}`;
  const cond = activeCondition(s);
  $('release-message').textContent = (cond && cond.message) || '—';
  renderVersions();
  renderOperation();
}

function label(step) {
  return STEP_LABELS[step] || step;
}

function renderSteps(current, failed) {
  const idx = STEPS.indexOf(current);
  const ol = $('steps');
  ol.replaceChildren(
    ...STEPS.map((s, i) => {
      let cls = '';
      let st = 'pending';
      if (idx >= 0 && i < idx) { cls = 'done'; st = 'done'; }
      if (i === idx) { cls = failed ? 'failed' : 'current'; st = failed ? 'failed' : 'running'; }
      if (current === 'done') { cls = 'done'; st = 'done'; }
      return el('li', { class: cls, 'aria-current': i === idx && !failed ? 'step' : null }, `${label(s)}`, el('span', { class: 'visually-hidden', text: `: ${st}` }));
    }),
  );
}

function renderProgress(p) {
  // An empty step is the engine clearing its progress at the end: the last one stays shown.
  if (!p || !p.step) return;
  state.lastProgress = p;
  if (p.step) renderSteps(p.step, false);
  $('wave').textContent = p.wave ? `Wave ${p.wave}: ${p.ready}/${p.total} ready` : p.total ? `${p.ready}/${p.total} ready` : 'Wave: —';
  const bar = $('image-bytes');
  bar.max = Math.max(p.imageBytesTotal || 0, 1);
  bar.value = p.imageBytes || 0;
  $('image-text').textContent = p.imageBytesTotal ? `${bytes(p.imageBytes)} of ${bytes(p.imageBytesTotal)}` : '—';
  if (p.step && p.message) {
    const key = `${p.step}|${p.wave || ''}|${p.message}`;
    if (!state.logKeys.has(key)) {
      state.logKeys.add(key);
      const time = new Date().toISOString().slice(11, 19);
      $('op-log').append(el('li', {}, el('span', { class: 'mono', text: `${time} ` }), `[${label(p.step)}] ${p.message}`));
      $('op-log').scrollTop = $('op-log').scrollHeight;
    }
  }
  if (state.watching || state.pending) {
    const what = state.watching || `request for ${state.pending.version}`;
    $('op-status').textContent = `${capital(what)}: ${label(p.step || 'waiting')}${p.wave ? `, wave ${p.wave} ${p.ready}/${p.total} ready` : ''}`;
  }
}

/** `upgrade to 2.0.0` of `upgrade to 2.0.0 (revision 2) (lease holder …)`. */
const opName = (running) => String(running).replace(/ \(.*$/, '');
const capital = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);

/** Status text, outcome and recovery controls from the release's state. */
function renderOperation() {
  const view = state.release;
  if (!view) return;
  const s = view.status || {};
  if (view.running && /^backup /.test(opName(view.running)) && !state.watching) {
    // A backup holds the engine but is no release operation: the Backups section follows
    // it, and the last operation's outcome stays as it was.
    $('op-status').textContent = `${capital(opName(view.running))} is running; operations wait for it.`;
    if (state.backups) state.backups.refreshList().catch(() => {});
    return;
  }
  if (view.running) {
    if (!state.watching) {
      // The first operation seen names the outcome (an automatic rollback runs inside it).
      state.watching = opName(view.running);
      state.logKeys.clear();
      $('op-log').replaceChildren();
      $('op-log-box').open = true;
      $('step-logs').hidden = true;
      renderSteps(null, false);
    }
    state.pending = null;
    state.finished = null;
    $('outcome').hidden = true;
    const p = state.lastProgress;
    $('op-status').textContent = `${capital(opName(view.running))} is running${p && p.step ? `: ${label(p.step)}` : ''}.`;
    return;
  }
  if (state.pending) {
    // Requested; the controller has not started it yet. The state shown is from before.
    $('op-status').textContent = `Requested ${state.pending.what || state.pending.version}; waiting for the release engine to start.`;
    $('outcome').hidden = true;
    return;
  }
  if (state.watching) {
    const ok = /^Ready/.test(s.phase);
    state.finished = { op: state.watching, ok };
    state.watching = null;
    renderSteps(ok ? 'done' : (state.lastProgress && state.lastProgress.step), !ok);
    refreshVersions().catch(() => {});
    refreshRevisions().catch(() => {});
    refreshVariables().catch(() => {});
    refreshAudit().catch(() => {});
    refreshBackups().catch(() => {});
    showStepLogs().catch(() => {});
  }
  renderOutcome(s);
}

function renderOutcome(s) {
  const box = $('outcome');
  const stalled = /^Stalled/.test(s.phase || '');
  const f = state.finished;
  if (!stalled && !(f && f.ok)) {
    box.hidden = true;
    $('op-status').textContent = /^Ready/.test(s.phase || '') ? `No operation is running. The application runs ${s.currentVersion}.` : 'No operation is running.';
    return;
  }
  box.hidden = false;
  const title = $('outcome-title');
  if (!stalled) {
    box.className = 'outcome ok';
    title.textContent = `${capital(f.op)} succeeded`;
    const ready = activeCondition(s);
    // A restore's message names the backup: "restored backup … (version); it is ready".
    $('outcome-reason').textContent = /^restore/.test(f.op) && ready && ready.message
      ? `${capital(ready.message)}.`
      : `The application runs ${s.currentVersion} and is ready.`;
    $('outcome-rollback').textContent = '';
    $('recovery').hidden = true;
    $('op-status').textContent = `${capital(f.op)} succeeded: ${s.currentVersion} is ready.`;
    return;
  }
  const cond = activeCondition(s) || {};
  const msg = cond.message || s.phase;
  const m = /rolled back to (\S+)$/.exec(msg);
  box.className = 'outcome bad';
  const failedOp = f ? capital(f.op) : `${capital(s.phase.replace(/^Stalled\/?/, '') || 'The last operation')}`;
  title.textContent = f ? `${failedOp} failed` : `The last operation failed (${cond.reason || s.phase})`;
  $('outcome-reason').textContent = `Reason: ${msg}`;
  const untouched = /nothing was changed/.test(msg);
  $('outcome-rollback').textContent = m
    ? `Rolled back automatically: the application runs ${m[1]} again.`
    : untouched ? `Nothing was changed${s.currentVersion ? `: the application still runs ${s.currentVersion}` : ''}.`
    : (s.currentVersion
      ? `Not rolled back: the failed attempt is left in place for debugging (the last good version was ${s.currentVersion}). Retry, roll forward to another version, or roll back.`
      : 'Not rolled back. Retry or roll forward to another version.');
  $('recovery').hidden = false;
  $('op-status').textContent = `${title.textContent}. ${m ? `Rolled back to ${m[1]}.` : untouched ? 'Nothing was changed.' : 'Not rolled back.'}`;
  applyRole();
}

/** The migration and hook logs of the operation that just ended: its newest revision and, for
 * an automatic rollback, the failed attempt it undid. */
async function showStepLogs() {
  const list = await get('/api/v1/revisions');
  const newest = list.revisions[0];
  if (!newest) return;
  const numbers = [newest.revision];
  const undone = /after revision (\d+) failed/.exec(newest.reason || '');
  if (newest.operation === 'rollback' && undone) numbers.push(Number(undone[1]));
  const revisions = await Promise.all(numbers.map((n) => get(`/api/v1/revisions/${n}`)));
  const body = $('step-logs-body');
  body.replaceChildren();
  const withSteps = revisions.filter((r) => r.steps && r.steps.length);
  $('step-logs').hidden = !withSteps.length;
  $('step-logs-rev').textContent = withSteps.map((r) => `${r.revision} (${r.operation} ${r.version})`).join(' and ');
  for (const rev of withSteps) {
    for (const s of rev.steps) {
      body.append(el('h4', {}, `Revision ${rev.revision}: ${s.step} — ${s.outcome}`), el('pre', { tabindex: '0', 'aria-label': `log of ${s.step}` }, s.log || '(no output)'));
    }
  }
}

function onEvent(name, data) {
  if (name === 'status' && data && typeof data === 'object') {
    const before = state.release;
    renderRelease(data);
    if (before && before.status && data.status && before.status.currentVersion !== data.status.currentVersion) {
      refreshVersions().catch(() => {});
    }
  } else if (name === 'progress' && data && typeof data === 'object') {
    if (data.step && state.pending) {
      state.pending = null;
    }
    // An upgrade's Backup step takes a backup: show it while it runs.
    if (data.step === 'Backup' && (!state.lastProgress || state.lastProgress.step !== 'Backup') && state.backups) {
      state.backups.refreshList().catch(() => {});
    }
    renderProgress(data);
  }
}

function operationStarted(version, disabledRollback, what) {
  state.pending = { version, what };
  state.finished = null;
  state.logKeys.clear();
  $('op-log').replaceChildren();
  $('outcome').hidden = true;
  $('outcome-title').textContent = '';
  renderSteps(null, false);
  $('op-status').textContent = `Requested ${what || version}${disabledRollback ? ' with rollback disabled' : ''}; waiting for the release engine to start.`;
  $('progress-title').focus();
  $('progress').scrollIntoView({ block: 'start' });
  refreshAudit().catch(() => {});
}

// ------------------------------------------------------------------ confirmation

function confirmAction(title, text, okText, action, danger = false) {
  const dialog = $('confirm-dialog');
  const opener = document.activeElement;
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-error').textContent = '';
  const ok = $('confirm-ok');
  ok.textContent = okText;
  ok.className = danger ? 'danger' : 'primary';
  ok.disabled = false;
  const form = $('confirm-form');
  const submit = async (ev) => {
    ev.preventDefault();
    ok.disabled = true;
    try {
      await action();
      form.removeEventListener('submit', submit);
      dialog.close();
    } catch (e) {
      $('confirm-error').textContent = errorText(e);
      ok.disabled = false;
    }
  };
  const cancel = () => dialog.close();
  form.addEventListener('submit', submit);
  $('confirm-cancel').addEventListener('click', cancel, { once: true });
  dialog.addEventListener('close', () => {
    form.removeEventListener('submit', submit);
    if (opener && document.contains(opener) && !opener.disabled && !opener.closest('[hidden]')) opener.focus();
  }, { once: true });
  dialog.showModal();
  $('confirm-cancel').focus();
}

// ------------------------------------------------------------------ bundles

function renderVersions() {
  const tbody = document.querySelector('#versions-table tbody');
  const current = state.release && state.release.status ? state.release.status.currentVersion : null;
  const desired = state.release && state.release.status ? state.release.status.desiredVersion : null;
  if (!state.versions.length) {
    tbody.replaceChildren(el('tr', {}, el('td', { colspan: '6', class: 'empty', text: 'No bundle is imported yet.' })));
    return;
  }
  tbody.replaceChildren(
    ...state.versions.map((v) => {
      const marks = [];
      if (v.version === current || (v.pins || []).includes('current')) marks.push(badge('current', 'ok'));
      if ((v.pins || []).includes('previous')) marks.push(badge('previous', 'info'));
      if (desired && v.version === desired && desired !== current) marks.push(badge('desired', 'warn'));
      for (const p of v.pins || []) if (p !== 'current' && p !== 'previous') marks.push(badge(p));
      if (v.restoreOnly) marks.push(badge('restore only', 'warn'));
      if (v.corrupt) marks.push(badge(`corrupt: ${v.corrupt}`, 'bad'));
      return el('tr', { 'data-version': v.version },
        el('th', { scope: 'row' }, v.version),
        el('td', { class: 'num' }, String(v.sequence)),
        el('td', { class: 'nowrap' }, when(v.importedAt)),
        el('td', {}, (v.signers || []).length ? v.signers.map((k) => el('code', { title: k }, k.length > 20 ? `${k.slice(0, 16)}…` : k)) : '—'),
        el('td', { class: 'num nowrap', title: `${v.size} bytes` }, bytes(v.size)),
        el('td', { class: 'marks' }, marks.length ? marks : '—'));
    }),
  );
}

function showUploadResult(summary) {
  const box = $('upload-result');
  const images = el('ul', {}, (summary.images || []).map((i) => el('li', { class: 'mono' }, i)));
  const pushed = summary.pushed || {};
  box.replaceChildren(el('div', { class: 'result ok', id: 'upload-ok' },
    el('h3', {}, `Verified and imported: ${summary.product} ${summary.version}`),
    el('dl', {},
      el('dt', {}, 'Version'), el('dd', { 'data-field': 'version' }, summary.version),
      el('dt', {}, 'Sequence'), el('dd', { 'data-field': 'sequence' }, String(summary.sequence)),
      el('dt', {}, 'Signer'), el('dd', { 'data-field': 'signers' }, (summary.signers || []).join(', ')),
      el('dt', {}, 'Identity'), el('dd', { class: 'mono' }, summary.identity),
      el('dt', {}, 'Size'), el('dd', {}, `${bytes(summary.size)}${summary.alreadyImported ? ' (already imported: the stored copy was used)' : ''}`),
      el('dt', {}, 'Images'), el('dd', { 'data-field': 'images' }, images),
      el('dt', {}, 'Registry'), el('dd', {}, `${pushed.blobsUploaded || 0} blobs uploaded (${bytes(pushed.bytesUploaded || 0)}), ${pushed.blobsSkipped || 0} already there, ${pushed.tagsPushed || 0} tags`))));
  box.focus();
}

function showUploadRefusal(e) {
  const box = $('upload-result');
  box.replaceChildren(el('div', { class: 'result bad', id: 'upload-refused', role: 'alert' },
    el('h3', {}, 'Refused: nothing was stored'),
    el('p', { id: 'refusal-reason' }, e.message),
    el('p', {}, 'Code: ', el('code', { id: 'refusal-code' }, e.code || 'error'))));
  box.focus();
}

function setupUpload() {
  $('upload-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = $('bundle-file').files[0];
    const text = $('upload-text');
    if (!file) {
      $('upload-result').replaceChildren(el('p', { class: 'error', role: 'alert' }, 'Choose a bundle file first.'));
      $('bundle-file').focus();
      return;
    }
    const button = $('upload-button');
    button.disabled = true;
    $('upload-result').replaceChildren();
    $('upload-progress').hidden = false;
    const bar = $('upload-bar');
    bar.max = Math.max(file.size, 1);
    bar.value = 0;
    try {
      const summary = await uploadBundle(file, (sent, total, note) => {
        bar.value = sent;
        const pct = Math.floor((sent * 100) / Math.max(total, 1));
        text.textContent = `${note ? `${note} — ` : ''}${bytes(sent)} of ${bytes(total)} (${pct}%)`;
      });
      text.textContent = `Uploaded ${bytes(file.size)} (100%).`;
      showUploadResult(summary);
      await refreshVersions();
      refreshVariables().catch(() => {});
    } catch (e) {
      text.textContent = 'Upload stopped.';
      showUploadRefusal(e);
    } finally {
      button.disabled = !isAdmin();
      refreshAudit().catch(() => {});
    }
  });
}

// ------------------------------------------------------------------ site values

async function refreshVariables() {
  const list = $('variables-list');
  let body;
  try {
    body = await get('/api/v1/variables');
  } catch (e) {
    const text = !(e instanceof ApiError) || e.status !== 404 ? errorText(e)
      : e.code === 'not_imported' ? 'No bundle is imported yet: the variables come from a release.'
      : 'This agent runs no release engine (no kubernetes section): there are no site values.';
    list.replaceChildren(el('p', { class: 'empty' }, text));
    return;
  }
  $('variables-version').textContent = body.version;
  list.replaceChildren(...body.variables.map(variableCard));
  applyRole();
}

function rulesOf(v) {
  const r = [];
  if (v.default !== undefined && v.default !== null) r.push(`default ${v.default}`);
  if (v.pattern) r.push(`pattern ${v.pattern}`);
  if (v.minimum !== undefined && v.maximum !== undefined) r.push(`${v.minimum} to ${v.maximum}`);
  else if (v.minimum !== undefined) r.push(`at least ${v.minimum}`);
  else if (v.maximum !== undefined) r.push(`at most ${v.maximum}`);
  if (v.generate) r.push('generated once per site');
  return r;
}

/** Client-side check with the declaration's rules (the agent checks again). */
function checkValue(v, raw) {
  const text = raw.trim();
  if (!text) return 'Type a value.';
  if (v.type === 'integer') {
    if (!/^-?\d+$/.test(text)) return 'Must be a whole number.';
    const n = Number(text);
    if (v.minimum !== undefined && n < v.minimum) return `Must be at least ${v.minimum}.`;
    if (v.maximum !== undefined && n > v.maximum) return `Must be at most ${v.maximum}.`;
  } else if (v.pattern) {
    try {
      if (!new RegExp(v.pattern, 'u').test(text)) return `Must match ${v.pattern}.`;
    } catch { /* a pattern JavaScript cannot read: the agent decides */ }
  }
  return '';
}

function variableCard(v) {
  const id = `var-${v.name}`;
  const msg = el('p', { id: `${id}-msg`, class: 'hint', role: 'status' });
  const source = { site: ['set here', 'info'], secret: ['from a Secret', 'info'], generated: ['generated', ''], default: ['default', ''], unset: ['not set', v.required ? 'bad' : ''] }[v.source] || [v.source, ''];
  const head = el('h3', { id: `${id}-title` }, el('span', { class: 'mono' }, v.name), badge(v.type), v.required ? badge('required', 'warn') : null, v.sensitive ? badge('sensitive', 'bad') : null, badge(source[0], source[1]));
  const rules = rulesOf(v);
  let form;
  if (v.sensitive) {
    const secret = el('input', { id: `${id}-secret`, type: 'text', autocomplete: 'off', spellcheck: 'false', 'data-admin': true, value: v.secret ? v.secret.secret : '' });
    const key = el('input', { id: `${id}-key`, type: 'text', autocomplete: 'off', spellcheck: 'false', 'data-admin': true, value: v.secret ? v.secret.key : '' });
    form = el('form', { novalidate: true, 'aria-labelledby': `${id}-title` },
      el('div', { class: 'field' }, el('label', { for: secret.id }, 'Secret name'), secret),
      el('div', { class: 'field' }, el('label', { for: key.id }, 'Key'), key),
      el('button', { type: 'submit', 'data-admin': true }, 'Set from Secret'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!secret.value.trim() || !key.value.trim()) { msg.className = 'hint bad'; msg.textContent = 'Give the Secret and its key.'; return; }
      await save(v, { fromSecret: { secret: secret.value.trim(), key: key.value.trim() } }, msg);
    });
  } else {
    const input = el('input', {
      id: `${id}-value`, type: v.type === 'integer' ? 'number' : 'text', inputmode: v.type === 'integer' ? 'numeric' : null,
      min: v.minimum, max: v.maximum, autocomplete: 'off', spellcheck: 'false', 'data-admin': true,
      'aria-describedby': `${id}-msg`, placeholder: v.value !== undefined ? String(v.value) : '',
    });
    input.addEventListener('input', () => {
      const problem = input.value ? checkValue(v, input.value) : '';
      input.setAttribute('aria-invalid', problem ? 'true' : 'false');
      msg.className = problem ? 'hint bad' : 'hint';
      msg.textContent = problem;
    });
    form = el('form', { novalidate: true, 'aria-labelledby': `${id}-title` },
      el('div', { class: 'field' }, el('label', { for: input.id }, `New value for ${v.name}`), input),
      el('button', { type: 'submit', 'data-admin': true }, 'Save'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const problem = checkValue(v, input.value);
      if (problem) { msg.className = 'hint bad'; msg.textContent = problem; input.focus(); return; }
      const value = v.type === 'integer' ? Number(input.value.trim()) : input.value.trim();
      await save(v, { value }, msg);
    });
  }
  return el('div', { class: 'var', 'data-variable': v.name },
    head,
    el('p', {}, v.description || ''),
    el('p', { class: 'rules' }, rules.join(' · ')),
    el('p', {}, 'Value: ', el('strong', { class: 'value', 'data-field': 'shown' }, v.shown)),
    form, msg);
}

async function save(v, body, msg) {
  msg.className = 'hint';
  msg.textContent = 'Saving…';
  try {
    const r = await put(`/api/v1/variables/${encodeURIComponent(v.name)}`, body);
    await refreshVariables();
    const fresh = $(`var-${v.name}-msg`);
    if (fresh) { fresh.className = 'hint ok'; fresh.textContent = r.message; }
    refreshAudit().catch(() => {});
  } catch (e) {
    msg.className = 'hint bad';
    msg.textContent = errorText(e);
  }
}

// ------------------------------------------------------------------ history and audit

async function refreshRevisions() {
  const tbody = document.querySelector('#revisions-table tbody');
  let body;
  try {
    body = await get('/api/v1/revisions');
  } catch (e) {
    tbody.replaceChildren(el('tr', {}, el('td', { colspan: '7', class: 'empty' }, errorText(e))));
    return;
  }
  if (!body.revisions.length) {
    tbody.replaceChildren(el('tr', {}, el('td', { colspan: '7', class: 'empty', text: 'No revision yet.' })));
    return;
  }
  const kind = { deployed: 'ok', failed: 'bad', 'rolled-back': 'warn', superseded: '', pending: 'info' };
  tbody.replaceChildren(...body.revisions.map((r) => el('tr', { 'data-revision': String(r.revision) },
    el('th', { scope: 'row', class: 'num' }, String(r.revision)),
    el('td', {}, r.version),
    el('td', {}, r.operation),
    el('td', {}, badge(r.outcome, kind[r.outcome])),
    el('td', { class: 'nowrap' }, when(r.started)),
    el('td', { class: 'detail' }, short(r.reason) || '—'),
    el('td', {}, el('button', { type: 'button', onclick: () => showRevision(r.revision), 'aria-label': `Details of revision ${r.revision}` }, 'Details')))));
}

async function showRevision(n) {
  const dialog = $('revision-dialog');
  const body = $('revision-body');
  $('revision-title').textContent = `Revision ${n}`;
  body.replaceChildren(el('p', {}, 'Loading…'));
  dialog.showModal();
  $('revision-close').focus();
  try {
    const r = await get(`/api/v1/revisions/${n}`);
    $('revision-title').textContent = `Revision ${r.revision}: ${r.operation} ${r.version} — ${r.outcome}`;
    const objects = el('ul', {}, (r.applied || []).map((a) => {
      const o = a.object || {};
      const md = o.metadata || {};
      return el('li', { class: 'mono' }, `${a.wave}: ${o.kind} ${md.namespace ? `${md.namespace}/` : ''}${md.name}`);
    }));
    body.replaceChildren(
      el('div', { class: 'result' }, el('dl', {},
        el('dt', {}, 'Version'), el('dd', {}, `${r.version} (sequence ${r.sequence})`),
        el('dt', {}, 'Outcome'), el('dd', {}, r.outcome),
        el('dt', {}, 'Reason'), el('dd', {}, r.reason || '—'),
        el('dt', {}, 'Started'), el('dd', {}, when(r.started)),
        el('dt', {}, 'Finished'), el('dd', {}, when(r.finished)),
        el('dt', {}, 'Requested by'), el('dd', {}, r.requestedBy || '—'),
        el('dt', {}, 'Flags'), el('dd', {}, (r.flags || []).join(', ') || '—'),
        el('dt', {}, 'Bundle'), el('dd', { class: 'mono' }, r.bundle),
        el('dt', {}, 'Applied digest'), el('dd', { class: 'mono' }, r.appliedDigest))),
      el('h3', {}, `Objects applied (${(r.applied || []).length})`), objects,
      el('h3', {}, 'Differences from the signed render'),
      (r.differences || []).length ? el('ul', {}, r.differences.map((d) => el('li', {}, d))) : el('p', { class: 'empty' }, 'None.'),
      el('h3', {}, 'Steps'),
      (r.steps || []).length
        ? el('div', {}, r.steps.map((s) => [el('h4', {}, `${s.step} (${s.job}) — ${s.outcome}`), el('pre', { tabindex: '0' }, s.log || '(no output)')]))
        : el('p', { class: 'empty' }, 'No migration or hook ran.'),
      el('h3', {}, 'Left behind'),
      (r.leftBehind || []).length ? el('ul', {}, r.leftBehind.map((d) => el('li', {}, d))) : el('p', { class: 'empty' }, 'Nothing.'));
  } catch (e) {
    body.replaceChildren(el('p', { class: 'error', role: 'alert' }, errorText(e)));
  }
}

async function refreshAudit() {
  const tbody = document.querySelector('#audit-table tbody');
  let body;
  try {
    body = await get('/api/v1/audit');
  } catch (e) {
    tbody.replaceChildren(el('tr', {}, el('td', { colspan: '6', class: 'empty' }, errorText(e))));
    return;
  }
  const records = body.records.slice(-200).reverse();
  const kind = { ok: 'ok', refused: 'bad', failed: 'bad', warning: 'warn', accepted: 'info', started: 'info' };
  tbody.replaceChildren(...(records.length ? records.map((a) => el('tr', {},
    el('td', { class: 'nowrap' }, when(a.time)),
    el('td', {}, a.token),
    el('td', { class: 'nowrap' }, a.action),
    el('td', { class: 'nowrap' }, a.version || '—'),
    el('td', {}, badge(a.outcome, kind[a.outcome]), a.code ? [' ', el('code', {}, a.code)] : null),
    el('td', { class: 'detail' }, a.detail || ''))) : [el('tr', {}, el('td', { colspan: '6', class: 'empty', text: 'Nothing recorded yet.' }))]));
}

// ------------------------------------------------------------------ start

function start() {
  const upgrade = setupUpgradeDialog(() => ({
    imported: state.versions.filter((v) => !v.restoreOnly && !v.corrupt).map((v) => v.version),
    current: state.release && state.release.status ? state.release.status.currentVersion || null : null,
    admin: isAdmin(),
  }), operationStarted);
  $('open-upgrade').addEventListener('click', () => upgrade.open(''));
  $('roll-forward').addEventListener('click', () => upgrade.open(''));
  $('retry').addEventListener('click', () => {
    const s = state.release.status;
    confirmAction('Retry the failed operation?', `The release engine runs the operation for ${s.desiredVersion} again, from the start.`, 'Retry', async () => {
      await post('/api/v1/retry', undefined);
      operationStarted(s.desiredVersion, false);
    });
  });
  $('rollback').addEventListener('click', () => {
    const prev = state.versions.find((v) => (v.pins || []).includes('previous'));
    const s = state.release.status;
    const target = s.currentVersion && s.desiredVersion !== s.currentVersion ? s.currentVersion : prev && prev.version;
    confirmAction('Roll back?', `The application goes back to ${target || 'the previous version'} from its recorded revision (offline, from the store).`, 'Roll back', async () => {
      const r = await post('/api/v1/rollback', target ? { toVersion: target } : {});
      operationStarted(r.version || target || 'the previous version', false);
    });
  });
  state.backups = setupBackups({
    el, badge, bytes, when, errorText, isAdmin, applyRole, confirmAction,
    onRestoreStarted: (timestamp, version) => operationStarted(version, false, `restore of backup ${timestamp} (version ${version})`),
    onChanged: () => refreshAudit().catch(() => {}),
  });
  $('revision-close').addEventListener('click', () => $('revision-dialog').close());
  $('audit-refresh').addEventListener('click', () => refreshAudit());
  $('sign-out').addEventListener('click', signOut);
  setupUpload();
  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    const err = $('signin-error');
    err.textContent = '';
    if (!t) { err.textContent = 'Paste a token.'; $('token').focus(); return; }
    try {
      await signIn(t);
      $('main').focus();
    } catch (e) {
      err.textContent = e instanceof ApiError && e.status === 401 ? 'The agent does not accept this token.' : `Cannot reach the agent: ${errorText(e)}`;
      $('token').focus();
    }
  });
  const saved = token.get();
  if (saved) {
    signIn(saved).catch(() => signOut());
  } else {
    $('token').focus();
  }
}

start();
