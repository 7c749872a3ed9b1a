// The "Upgrade Version" dialog: the Version box with suggestions (imported versions at or
// above the current one, SemVer order, newest first) that still takes typed text, validation
// as you type, the downgrade confirmation, the Disable Rollback toggle, and the request.

import { post } from './api.js';

/** A SemVer 2 version split for ordering, or null. */
export function parseSemver(v) {
  const m = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/.exec(String(v).trim());
  if (!m) return null;
  return { major: +m[1], minor: +m[2], patch: +m[3], pre: m[4] ? m[4].split('.') : [] };
}

/** SemVer precedence: negative when a < b. Unparseable versions sort last. */
export function compareSemver(a, b) {
  const x = parseSemver(a);
  const y = parseSemver(b);
  if (!x || !y) return (x ? -1 : 0) - (y ? -1 : 0) || String(a).localeCompare(String(b));
  for (const k of ['major', 'minor', 'patch']) if (x[k] !== y[k]) return x[k] - y[k];
  if (!x.pre.length || !y.pre.length) return y.pre.length - x.pre.length;
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i];
    const q = y.pre[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    const pn = /^\d+$/.test(p);
    const qn = /^\d+$/.test(q);
    if (pn && qn && +p !== +q) return +p - +q;
    if (pn !== qn) return pn ? -1 : 1;
    if (p !== q) return p < q ? -1 : 1;
  }
  return 0;
}

/** Versions to suggest: imported, at or above `current` (all when nothing is installed). */
export function suggestions(imported, current) {
  const uniq = [...new Set(imported)];
  return uniq
    .filter((v) => !current || compareSemver(v, current) >= 0)
    .sort((a, b) => compareSemver(b, a));
}

/**
 * What typing `typed` means: {kind, message, allowed}. Kinds: empty, unknown, same,
 * downgrade, upgrade, install.
 */
export function assess(typed, imported, current) {
  const v = typed.trim();
  if (!v) return { kind: 'empty', message: 'Type a version or pick one of the imported versions.', allowed: false };
  if (!imported.includes(v)) {
    const known = imported.length ? imported.slice().sort((a, b) => compareSemver(b, a)).join(', ') : 'none';
    const why = parseSemver(v) ? `${v} is not imported` : `${v} is not a version (like 2.1.0)`;
    return { kind: 'unknown', message: `${why}. Imported versions: ${known}. Upload its bundle first.`, allowed: false };
  }
  if (!current) return { kind: 'install', message: `Installs ${v}.`, allowed: true };
  const c = compareSemver(v, current);
  if (c === 0) return { kind: 'same', message: `${v} is the current version: the upgrade applies it again.`, allowed: true };
  if (c < 0) {
    return {
      kind: 'downgrade',
      message: `${v} is older than the current version ${current}. Check with the vendor that ${v} can read the data ${current} wrote before you go back.`,
      allowed: true,
    };
  }
  return { kind: 'upgrade', message: `Upgrades from ${current} to ${v}.`, allowed: true };
}

/** Wires the dialog. `ctx()` gives {imported, current, admin}; `onStarted(version)` after 202. */
export function setupUpgradeDialog(ctx, onStarted) {
  const dialog = document.getElementById('upgrade-dialog');
  const form = document.getElementById('upgrade-form');
  const input = document.getElementById('version');
  const list = document.getElementById('version-suggestions');
  const hint = document.getElementById('version-hint');
  const confirmBox = document.getElementById('downgrade-confirm');
  const confirm = document.getElementById('allow-downgrade');
  const confirmLabel = document.getElementById('allow-downgrade-label');
  const disableRollback = document.getElementById('disable-rollback');
  const rollbackWarning = document.getElementById('rollback-warning');
  const skipBackup = document.getElementById('skip-backup');
  const backupWarning = document.getElementById('backup-warning');
  const error = document.getElementById('upgrade-error');
  const submit = document.getElementById('upgrade-submit');
  const currentText = document.getElementById('upgrade-current');
  let opener = null;
  let busy = false;

  const validate = () => {
    const { imported, current, admin } = ctx();
    const a = assess(input.value, imported, current);
    hint.textContent = a.message;
    hint.className = `hint ${a.kind === 'unknown' ? 'bad' : a.kind === 'downgrade' ? 'warn' : a.allowed ? 'ok' : ''}`;
    input.setAttribute('aria-invalid', a.kind === 'unknown' ? 'true' : 'false');
    const down = a.kind === 'downgrade';
    confirmBox.hidden = !down;
    if (down) confirmLabel.textContent = `Yes, downgrade to ${input.value.trim()}`;
    else confirm.checked = false;
    rollbackWarning.hidden = !disableRollback.checked;
    backupWarning.hidden = !skipBackup.checked;
    submit.disabled = busy || !admin || !a.allowed || (down && !confirm.checked);
    submit.textContent = down ? 'Downgrade' : a.kind === 'install' ? 'Install' : 'Upgrade';
    return a;
  };

  const open = (prefill) => {
    const { imported, current } = ctx();
    opener = document.activeElement;
    list.replaceChildren(
      ...suggestions(imported, current).map((v) => {
        const o = document.createElement('option');
        o.value = v;
        o.label = v === current ? `${v} (current)` : v;
        return o;
      }),
    );
    currentText.textContent = current
      ? `The application runs ${current}. Pick or type the version to move to.`
      : 'Nothing is installed yet. Pick or type the version to install.';
    input.value = prefill || '';
    confirm.checked = false;
    disableRollback.checked = false;
    skipBackup.checked = false;
    error.textContent = '';
    busy = false;
    validate();
    dialog.showModal();
    input.focus();
  };

  const close = () => {
    dialog.close();
  };
  dialog.addEventListener('close', () => {
    if (opener && document.contains(opener) && !opener.disabled) opener.focus();
  });

  input.addEventListener('input', validate);
  confirm.addEventListener('change', validate);
  disableRollback.addEventListener('change', validate);
  skipBackup.addEventListener('change', validate);
  document.getElementById('upgrade-cancel').addEventListener('click', close);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const a = validate();
    if (submit.disabled) {
      if (a.kind === 'downgrade' && !confirm.checked) confirm.focus();
      else input.focus();
      return;
    }
    busy = true;
    submit.disabled = true;
    error.textContent = '';
    const version = input.value.trim();
    try {
      await post('/api/v1/upgrade', {
        version,
        disableRollback: disableRollback.checked,
        allowDowngrade: a.kind === 'downgrade' && confirm.checked,
        skipBackup: skipBackup.checked,
      });
      opener = null;
      dialog.close();
      onStarted(version, disableRollback.checked);
    } catch (e) {
      error.textContent = `${e.message}${e.code ? ` (${e.code})` : ''}`;
      busy = false;
      validate();
      input.focus();
    }
  });
  return { open, validate };
}
