// The Backups section: the backups from `GET /api/v1/backups` (newest first, polled while one
// is Running), "Take backup", the backup settings form, and the Restore dialog, whose
// request the release engine runs as an operation the page's progress view follows.

import { del, get, post, put } from './api.js';

const $ = (id) => document.getElementById(id);

/** How often the list is read again while a backup is Running. */
const POLL_MS = 1500;

const STATUS_KIND = { Success: 'ok', Failed: 'bad', Running: 'info' };

/**
 * Wires the section. `ctx` gives the page's helpers: {el, badge, bytes, when, errorText,
 * isAdmin, applyRole, confirmAction(title, text, okText, action, danger),
 * onRestoreStarted(timestamp, version), onChanged()}.
 * Returns {refresh, stop}.
 */
export function setupBackups(ctx) {
  const { el, badge, bytes, when, errorText } = ctx;
  const tbody = document.querySelector('#backups-table tbody');
  const note = $('backup-note');
  const take = $('take-backup');
  const dialog = $('restore-dialog');
  const form = $('restore-form');
  const confirm = $('restore-confirm');
  const confirmLabel = $('restore-confirm-label');
  const submit = $('restore-submit');
  const error = $('restore-error');
  let timer = null;
  let generation = 0;
  let seen = new Map(); // timestamp → status, to announce a Running backup's end
  let target = null; // the backup the dialog restores
  let opener = null;
  let busy = false;

  const say = (text, kind) => {
    note.className = `hint ${kind || ''}`;
    note.textContent = text;
  };

  const schedule = (running) => {
    if (timer) { clearTimeout(timer); timer = null; }
    if (running) timer = setTimeout(() => { timer = null; refresh().catch(() => {}); }, POLL_MS);
  };

  function row(b) {
    const status = el('td', { 'data-field': 'status' }, badge(b.status, STATUS_KIND[b.status]));
    if (b.status === 'Failed' && b.reason) status.append(el('span', { class: 'reason', 'data-field': 'reason' }, b.reason));
    const kind = el('td', { 'data-field': 'kind', class: 'nowrap' }, b.kind);
    if (b.kind === 'preUpgrade' && b.revision !== undefined) kind.append(el('span', { class: 'muted' }, ` (revision ${b.revision})`));
    const action = el('td', { class: 'row-actions' });
    if (b.status === 'Success') {
      action.append(el('button', { type: 'button', 'data-admin': true, 'data-action': 'restore', 'aria-label': `Restore backup ${b.timestamp}`, onclick: () => open(b) }, 'Restore…'));
    }
    if (b.status !== 'Running') {
      action.append(el('button', { type: 'button', 'data-admin': true, 'data-action': 'delete', 'aria-label': `Delete backup ${b.timestamp}`, onclick: () => remove(b) }, 'Delete…'));
    } else {
      action.append(el('span', { class: 'muted', text: '—' }));
    }
    return el('tr', { 'data-backup': b.timestamp, 'data-kind': b.kind, 'data-status': b.status },
      el('th', { scope: 'row', class: 'mono nowrap', title: `created ${when(b.created)}${b.finished ? `, finished ${when(b.finished)}` : ''}` }, b.timestamp),
      status,
      kind,
      el('td', { 'data-field': 'version', class: 'nowrap' }, b.appVersion || '—'),
      el('td', { 'data-field': 'size', class: 'num nowrap', title: `${b.sizeBytes} bytes` }, b.status === 'Running' ? '—' : bytes(b.sizeBytes)),
      el('td', { 'data-field': 'encrypted' }, b.encrypted ? badge('encrypted', 'info') : 'no'),
      action);
  }

  async function refresh() {
    const mine = ++generation;
    let body;
    try {
      body = await get('/api/v1/backups');
    } catch (e) {
      if (mine !== generation) return;
      tbody.replaceChildren(el('tr', {}, el('td', { colspan: '7', class: 'empty' }, errorText(e))));
      schedule(false);
      return;
    }
    if (mine !== generation) return;
    const list = body.backups || [];
    // Newest first, whatever order the answer has (timestamps sort as times).
    list.sort((a, b) => (a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0));
    for (const b of list) {
      const before = seen.get(b.timestamp);
      if (before === 'Running' && b.status !== 'Running') {
        say(`Backup ${b.timestamp} ended: ${b.status}${b.status === 'Failed' && b.reason ? ` — ${b.reason}` : ''}.`, b.status === 'Success' ? 'ok' : 'bad');
        ctx.onChanged();
      }
    }
    seen = new Map(list.map((b) => [b.timestamp, b.status]));
    tbody.replaceChildren(...(list.length ? list.map(row) : [el('tr', {}, el('td', { colspan: '7', class: 'empty', text: 'No backup yet.' }))]));
    ctx.applyRole();
    schedule(list.some((b) => b.status === 'Running'));
  }

  // The settings form shows what the agent holds; an edit in progress is not overwritten by
  // a refresh, and Save sends all four fields (PUT replaces them) and shows what the agent kept.
  const settingsForm = $('backup-settings');
  let editing = false;
  settingsForm.addEventListener('input', () => {
    editing = true;
    $('backup-settings-note').textContent = '';
    checkSettings();
  });

  function showSettings(s) {
    $('bs-enabled').checked = s.enableRegularBackups;
    $('bs-frequency').value = s.backupFrequency;
    $('bs-retention').value = String(s.backupRetentionCount);
    $('bs-before').checked = s.backupBeforeUpgrade;
    editing = false;
    checkSettings();
  }

  /** The form's problem, if any (the agent checks the cron expression itself). */
  function settingsProblem() {
    const fields = $('bs-frequency').value.trim().split(/\s+/).filter(Boolean);
    if (fields.length !== 6) return `Frequency: a cron expression has six fields here (seconds first); this one has ${fields.length}.`;
    const kept = $('bs-retention').value.trim();
    if (!/^[1-9][0-9]*$/.test(kept)) return 'Backups kept: a whole number, at least 1.';
    return '';
  }

  function checkSettings() {
    const problem = settingsProblem();
    $('bs-frequency').setAttribute('aria-invalid', String(problem.startsWith('Frequency')));
    $('bs-retention').setAttribute('aria-invalid', String(problem.startsWith('Backups kept')));
    $('backup-settings-error').textContent = problem;
    return problem;
  }

  async function refreshSettings() {
    if (editing) return;
    try {
      showSettings(await get('/api/v1/backups/config'));
    } catch (e) {
      $('backup-settings-error').textContent = errorText(e);
    }
  }

  settingsForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (checkSettings()) return;
    const save = $('bs-save');
    save.disabled = true;
    try {
      const kept = await put('/api/v1/backups/config', {
        enableRegularBackups: $('bs-enabled').checked,
        backupFrequency: $('bs-frequency').value.trim().split(/\s+/).join(' '),
        backupRetentionCount: Number($('bs-retention').value),
        backupBeforeUpgrade: $('bs-before').checked,
      });
      showSettings(kept);
      $('backup-settings-note').textContent = 'Saved.';
      $('backup-settings-note').className = 'hint ok';
    } catch (e) {
      $('backup-settings-error').textContent = `The agent refused the settings: ${errorText(e)}`;
    } finally {
      save.disabled = !ctx.isAdmin();
      ctx.onChanged();
    }
  });

  take.addEventListener('click', async () => {
    take.disabled = true;
    say('Requesting a backup…');
    try {
      const r = await post('/api/v1/backups', undefined);
      seen.set(r.timestamp, 'Running');
      say(`Backup ${r.timestamp} started: ${r.status}.`, 'ok');
      await refresh();
    } catch (e) {
      say(`The agent refused the backup: ${errorText(e)}`, 'bad');
    } finally {
      take.disabled = !ctx.isAdmin();
      ctx.onChanged();
    }
  });

  /** Asks, then deletes a backup's data and metadata (`DELETE /api/v1/backups/{ts}`). */
  function remove(b) {
    const what = b.kind === 'preUpgrade'
      ? ' It is a pre-upgrade backup: after an irreversible migration, an automatic rollback restores it.'
      : '';
    ctx.confirmAction(
      `Delete backup ${b.timestamp}?`,
      `Backup ${b.timestamp} of version ${b.appVersion || '?'} and all its data are deleted from the agent's backup storage; this cannot be undone.${what}`,
      'Delete',
      async () => {
        await del(`/api/v1/backups/${encodeURIComponent(b.timestamp)}`);
        seen.delete(b.timestamp);
        say(`Backup ${b.timestamp} deleted.`, 'ok');
        await refresh();
        ctx.onChanged();
      },
      true,
    );
  }

  // ---------------------------------------------------------------- the Restore dialog

  const validate = () => {
    submit.disabled = busy || !ctx.isAdmin() || !confirm.checked;
  };

  function open(b) {
    target = b;
    opener = document.activeElement;
    $('restore-title').textContent = `Restore backup ${b.timestamp}`;
    $('restore-what').textContent = `Backup ${b.timestamp} was taken of version ${b.appVersion} (${b.kind}${b.encrypted ? ', encrypted' : ''}, ${bytes(b.sizeBytes)}).`;
    $('restore-version').textContent = b.appVersion;
    confirmLabel.textContent = `Yes, restore ${b.timestamp}`;
    confirm.checked = false;
    error.textContent = '';
    busy = false;
    validate();
    dialog.showModal();
    $('restore-cancel').focus();
  }

  confirm.addEventListener('change', validate);
  $('restore-cancel').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    if (opener && document.contains(opener) && !opener.disabled) opener.focus();
    opener = null;
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    validate();
    if (submit.disabled || !target) { confirm.focus(); return; }
    busy = true;
    validate();
    error.textContent = '';
    const b = target;
    try {
      await post('/api/v1/restores', { timestamp: b.timestamp, confirm: true });
      opener = null;
      dialog.close();
      say(`Restore of backup ${b.timestamp} requested.`, 'ok');
      ctx.onRestoreStarted(b.timestamp, b.appVersion);
    } catch (e) {
      error.textContent = errorText(e);
      busy = false;
      validate();
      confirm.focus();
    }
  });

  return {
    refresh: () => Promise.allSettled([refresh(), refreshSettings()]),
    refreshList: refresh,
    stop: () => { generation++; schedule(false); seen = new Map(); },
  };
}
