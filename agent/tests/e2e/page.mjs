// The admin page end to end in headless Debian chromium, against a real agent on the
// Kubernetes API simulator with the real registry (started by agent/tests/it/web.rs, with
// 1.0.0 installed and 3.0.0 imported). Every state is asserted on the DOM; screenshots go
// to $SCREENSHOT_DIR.
//
//   admin:  sign in (a wrong token first), a tampered bundle refused with the API's exact
//           reason, 2.0.0 uploaded with progress (a reload of the page mid-upload and a cut
//           part both resumed from the agent's offset) and its verification result, a site value
//           set (and a bad one refused as typed), the Upgrade Version dialog's validation,
//           a keyboard-only upgrade to 2.0.0 followed to success, the Backups section (the
//           pre-upgrade backup, its settings (a wrong one kept on the page or refused by the
//           agent, then saved), "Take backup" to Success, a refusal shown with its code, the
//           Restore dialog's tick, a restore followed to its end), a downgrade that needs the
//           tick, 3.0.0 failing and rolling back by itself, recovery buttons with confirmation,
//           revision details, the audit log; at 375×800 nothing scrolls sideways;
//   viewer: at 375×800, sees everything (backups too), every control disabled, the API answers 403;
//   admin:  then rolls back from the failed state (confirmed) to a Ready 2.0.0, and deletes
//           a backup (cancelled once, then confirmed);
//   axe-core in every state; no request beyond loopback; no CSP violation.

import assert from 'node:assert/strict';
import {
  activeId, assertClean, axeCheck, env, launch, noSidewaysScroll, session, shot, tabTo, text, waitText,
} from './lib.mjs';

const URL_ = env('AGENT_URL');
const ADMIN = env('ADMIN_TOKEN');
const VIEWER = env('VIEWER_TOKEN');
const BUNDLE = env('BUNDLE_FILE');
const TAMPERED = env('TAMPERED_FILE');
const OP_TIMEOUT = 150_000;

const started = Date.now();
const step = (what) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${what}`);

async function signIn(page, token) {
  await page.goto(`${URL_}/`);
  await page.locator('#token').fill(token);
  await page.keyboard.press('Enter');
  await page.locator('#app').waitFor({ state: 'visible' });
  await waitText(page, '#current-version', /\S/);
}

/** Waits for the operation's outcome and checks it, naming the page's reason if it differs. */
async function outcome(page, expected) {
  const seen = await waitText(page, '#outcome:not([hidden]) #outcome-title', / (succeeded|failed)$/, OP_TIMEOUT);
  const why = `${await text(page, '#outcome-reason')} ${await text(page, '#outcome-rollback')}`;
  assert.equal(seen, expected, why);
}

/** The Backups table's rows as `timestamp status kind version`. */
async function backupsShown(page) {
  return page.locator('#backups-table tbody tr[data-backup]').evaluateAll((rows) => rows.map((r) => ['status', 'kind', 'version']
    .reduce((acc, f) => `${acc} ${r.querySelector(`[data-field=${f}]`).textContent.trim()}`, r.dataset.backup)));
}

async function versionsShown(page) {
  return page.locator('#versions-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.version));
}

const browser = await launch();
try {
  // ------------------------------------------------------------------ admin
  const admin = await session(browser, { width: 1280, height: 900 }, 'admin');
  const page = admin.page;
  step('sign in');
  const resp = await page.goto(`${URL_}/`);
  const csp = resp.headers()['content-security-policy'] || '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /connect-src 'self'/);
  assert.equal(await page.locator('#signin').isVisible(), true);
  assert.equal(await activeId(page), 'token', 'the token box has the focus');
  await shot(page, 'sign-in');
  await axeCheck(page, 'sign-in form');
  await page.locator('#token').fill('not-a-token');
  await page.keyboard.press('Enter');
  await waitText(page, '#signin-error', /does not accept this token/);
  await page.locator('#token').fill(ADMIN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#app').waitFor({ state: 'visible' });
  assert.equal(await text(page, '#who-role'), 'admin');
  assert.equal(await text(page, '#who-name'), 'alice');
  await waitText(page, '#current-version', /^1\.0\.0$/);
  await waitText(page, '#phase', /^Ready/);
  assert.deepEqual(await versionsShown(page), ['3.0.0', '1.0.0']);
  assert.match(await text(page, '#versions-table tr[data-version="1.0.0"] td.marks'), /current/);
  assert.equal(page.url(), `${URL_}/`, 'no token in the URL');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sealift.token')), ADMIN);
  assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie');
  assert.equal(await page.locator('#open-upgrade').isEnabled(), true);
  await waitText(page, '#audit-table tbody', /upgrade/);
  await shot(page, 'admin-signed-in');
  await axeCheck(page, 'signed in');

  // ------------------------------------------------------------------ refused bundle
  step('upload a tampered bundle');
  await page.locator('#bundle-file').setInputFiles(TAMPERED);
  const refusedAnswer = page.waitForResponse((r) => r.url().includes('/api/v1/uploads') && r.status() === 422);
  await page.locator('#upload-button').click();
  const refused = await (await refusedAnswer).json();
  await page.locator('#upload-refused').waitFor();
  assert.equal(await text(page, '#refusal-reason'), refused.message, 'the page shows the agent\'s exact reason');
  assert.equal(await text(page, '#refusal-code'), refused.code);
  assert.equal(refused.code, env('TAMPERED_CODE'));
  await shot(page, 'upload-refused');
  assert.deepEqual(await versionsShown(page), ['3.0.0', '1.0.0'], 'nothing stored');

  // ------------------------------------------------------------------ upload 2.0.0
  step('upload 2.0.0, interrupted by a reload of the page');
  // The head goes through; the next part is held until the page reloads under it.
  const beforeReload = [];
  await page.route('**/api/v1/uploads/*?offset=*', async (route) => {
    const offset = Number(new URL(route.request().url()).searchParams.get('offset'));
    beforeReload.push(offset);
    if (offset === 0) return route.fallback();
    return undefined; // held: the reload cancels it
  });
  await page.locator('#bundle-file').setInputFiles(BUNDLE);
  await page.locator('#upload-button').click();
  const deadline = Date.now() + 30_000;
  while (!beforeReload.some((o) => o > 0)) {
    assert.ok(Date.now() < deadline, `no part after the head: ${beforeReload}`);
    await page.waitForTimeout(50);
  }
  await page.reload();
  await page.unroute('**/api/v1/uploads/*?offset=*');
  await waitText(page, '#who-name', /^alice$/);
  const headEnd = beforeReload.find((o) => o > 0);

  step('upload 2.0.0 again: it resumes');
  // Each part waits a little so the progress between parts can be seen, and the first
  // part after the head is cut off once: the page asks the agent where it stands and resumes.
  const parts = [];
  let cut = false;
  await page.route('**/api/v1/uploads/*?offset=*', async (route) => {
    const offset = Number(new URL(route.request().url()).searchParams.get('offset'));
    parts.push(offset);
    await new Promise((r) => setTimeout(r, 400));
    if (offset > 0 && !cut) {
      cut = true;
      return route.abort('connectionreset');
    }
    return route.fallback();
  });
  await page.locator('#bundle-file').setInputFiles(BUNDLE);
  await page.locator('#upload-button').click();
  await page.locator('#upload-progress').waitFor({ state: 'visible' });
  await waitText(page, '#upload-text', new RegExp(`^resuming an earlier upload at ${headEnd} bytes — `));
  const partial = await waitText(page, '#upload-text', /\((\d|[1-9]\d)%\)/);
  step(`progress: ${partial}`);
  assert.ok(await page.locator('#upload-button').isDisabled(), 'no second upload while one runs');
  await shot(page, 'upload-progress');
  await page.locator('#upload-ok').waitFor({ timeout: 60_000 });
  await page.unroute('**/api/v1/uploads/*?offset=*');
  assert.ok(cut, 'a part was cut off');
  // The cut shows in the console once; it is what this step caused, not a page error.
  const resets = admin.problems.errors.filter((e) => /ERR_CONNECTION_RESET/.test(e));
  assert.equal(resets.length, 1, admin.problems.errors.join('\n'));
  admin.problems.errors = admin.problems.errors.filter((e) => !resets.includes(e));
  assert.equal(beforeReload[0], 0, 'the head goes first');
  assert.equal(parts[0], headEnd, `after the reload the upload resumes after the head (${parts})`);
  assert.equal(parts[0], parts[1], `the cut part is sent again from the agent's offset (${parts})`);
  assert.match(await text(page, '#upload-text'), /100%/);
  assert.equal(await text(page, '#upload-ok [data-field=version]'), '2.0.0');
  assert.equal(await text(page, '#upload-ok [data-field=sequence]'), '2');
  assert.ok((await text(page, '#upload-ok [data-field=signers]')).length > 0, 'signer shown');
  assert.ok(await page.locator('#upload-ok [data-field=images] li').count() >= 2, 'images listed');
  assert.deepEqual(await versionsShown(page), ['3.0.0', '2.0.0', '1.0.0']);
  await shot(page, 'upload-verified');

  // ------------------------------------------------------------------ site values
  step('set a site value');
  const host = page.locator('[data-variable=hostname]');
  assert.match(await host.textContent(), /Public hostname/);
  assert.match(await host.textContent(), /default sample\.example\.com/);
  await page.locator('#var-hostname-value').fill('Bad_Host!');
  await waitText(page, '#var-hostname-msg', /Must match/);
  assert.equal(await page.locator('#var-hostname-value').getAttribute('aria-invalid'), 'true');
  await page.locator('#var-hostname-value').fill('apps.dark.example');
  await host.getByRole('button', { name: 'Save' }).click();
  await waitText(page, '#var-hostname-msg', /hostname set from a literal/);
  assert.equal(await text(page, '[data-variable=hostname] [data-field=shown]'), 'apps.dark.example');
  const replicas = page.locator('#var-replicas-value');
  assert.equal(await replicas.getAttribute('type'), 'number');
  await replicas.fill('99');
  await waitText(page, '#var-replicas-msg', /at most 20/);
  // A sensitive variable: never shown, only a Secret reference can be set.
  assert.equal(await page.locator('#var-adminPassword-value').count(), 0);
  assert.equal(await page.locator('#var-adminPassword-secret').count(), 1);
  assert.match(await text(page, '[data-variable=adminPassword] [data-field=shown]'), /^<generated/);
  await shot(page, 'site-values');

  // ------------------------------------------------------------------ dialog validation
  step('the Upgrade Version dialog');
  await page.locator('#open-upgrade').click();
  await page.locator('#upgrade-dialog').waitFor({ state: 'visible' });
  assert.equal(await activeId(page), 'version', 'focus moves into the dialog');
  const suggested = await page.locator('#version-suggestions option').evaluateAll((os) => os.map((o) => o.value));
  assert.deepEqual(suggested, ['3.0.0', '2.0.0', '1.0.0'], 'imported versions at or above the current one, newest first');
  assert.equal(await page.locator('#upgrade-submit').isDisabled(), true);
  await page.locator('#version').fill('9.9.9');
  await waitText(page, '#version-hint', /9\.9\.9 is not imported\. Imported versions: 3\.0\.0, 2\.0\.0, 1\.0\.0/);
  assert.equal(await page.locator('#upgrade-submit').isDisabled(), true);
  assert.equal(await page.locator('#version').getAttribute('aria-invalid'), 'true');
  await page.locator('#version').fill('2.0.0');
  await waitText(page, '#version-hint', /Upgrades from 1\.0\.0 to 2\.0\.0/);
  assert.equal(await page.locator('#upgrade-submit').isEnabled(), true);
  await page.locator('#disable-rollback').check();
  assert.equal(await page.locator('#rollback-warning').isVisible(), true);
  await shot(page, 'upgrade-dialog');
  await axeCheck(page, 'upgrade dialog open');
  await page.keyboard.press('Escape');
  await page.locator('#upgrade-dialog').waitFor({ state: 'hidden' });
  assert.equal(await activeId(page), 'open-upgrade', 'focus returns to the button');

  // ------------------------------------------------------------------ keyboard-only upgrade
  step('keyboard-only upgrade to 2.0.0');
  await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, 0); });
  await tabTo(page, 'open-upgrade');
  await page.keyboard.press('Enter');
  await page.locator('#upgrade-dialog').waitFor({ state: 'visible' });
  assert.equal(await activeId(page), 'version');
  assert.equal(await page.locator('#disable-rollback').isChecked(), false, 'the toggle starts off');
  await page.keyboard.type('2.0.0');
  await waitText(page, '#version-hint', /Upgrades from 1\.0\.0 to 2\.0\.0/);
  await tabTo(page, 'upgrade-submit', 10);
  await page.keyboard.press('Enter');
  await page.locator('#upgrade-dialog').waitFor({ state: 'hidden' });
  assert.equal(await activeId(page), 'progress-title', 'focus moves to the progress');
  await waitText(page, '#op-status', /[Uu]pgrade to 2\.0\.0/, 30_000);
  await waitText(page, '#steps li.current', /\S/, 30_000);
  await shot(page, 'upgrade-running');
  await axeCheck(page, 'upgrade in progress');
  await outcome(page, 'Upgrade to 2.0.0 succeeded');
  step('2.0.0 ready');
  await waitText(page, '#current-version', /^2\.0\.0$/);
  assert.equal(await page.locator('#steps li.done').count(), 12, 'every plan step done');
  assert.ok((await page.locator('#op-log li').count()) > 3, 'the operation log filled');
  assert.match(await text(page, '#wave'), /\d+\/\d+ ready/);
  await page.locator('#step-logs').waitFor({ state: 'attached' });
  await waitText(page, '#step-logs-body', /add-column/);
  await waitText(page, '#versions-table tr[data-version="2.0.0"] td.marks', /current/);
  await waitText(page, '#versions-table tr[data-version="1.0.0"] td.marks', /previous/);
  await shot(page, 'upgrade-succeeded');

  // ------------------------------------------------------------------ backups and a restore
  step('backups: the pre-upgrade backup');
  await page.locator('#backups').scrollIntoViewIfNeeded();
  const pre = '#backups-table tbody tr[data-kind="preUpgrade"]';
  await waitText(page, `${pre} [data-field=status]`, /^Success$/);
  assert.match(await text(page, `${pre} [data-field=kind]`), /^preUpgrade\b/);
  assert.equal(await text(page, `${pre} [data-field=version]`), '1.0.0');
  assert.match(await text(page, `${pre} [data-field=size]`), /^\d+(\.\d)? (B|KB|MB)$/);
  assert.equal(await page.locator(`${pre} [data-action=restore]`).isEnabled(), true, 'a Success backup can be restored');
  const config = await page.evaluate(async () => (await fetch('/api/v1/backups/config', {
    headers: { Authorization: `Bearer ${sessionStorage.getItem('sealift.token')}` },
  })).json());
  await page.waitForFunction(() => document.getElementById('bs-frequency').value.includes(' '));
  assert.equal(await page.locator('#bs-frequency').inputValue(), config.backupFrequency);
  assert.equal(await page.locator('#bs-retention').inputValue(), String(config.backupRetentionCount));
  assert.equal(await page.locator('#bs-enabled').isChecked(), config.enableRegularBackups);
  assert.equal(await page.locator('#bs-before').isChecked(), config.backupBeforeUpgrade);
  await axeCheck(page, 'backups section');

  step('backups: settings, refused then saved');
  const readConfig = () => page.evaluate(async () => (await fetch('/api/v1/backups/config', {
    headers: { Authorization: `Bearer ${sessionStorage.getItem('sealift.token')}` },
  })).json());
  const puts = [];
  page.on('request', (r) => { if (r.method() === 'PUT' && r.url().endsWith('/api/v1/backups/config')) puts.push(r.postDataJSON()); });
  await page.locator('#bs-frequency').fill('0 0 *');
  await waitText(page, '#backup-settings-error', /^Frequency: a cron expression has six fields here \(seconds first\); this one has 3\.$/);
  assert.equal(await page.locator('#bs-frequency').getAttribute('aria-invalid'), 'true');
  await page.locator('#bs-save').click();
  assert.equal(puts.length, 0, 'the form does not send what it can tell is wrong');
  await page.locator('#bs-frequency').fill('0 61 2 * * *');
  assert.equal(await text(page, '#backup-settings-error'), '');
  await page.locator('#bs-save').click();
  await waitText(page, '#backup-settings-error', /^The agent refused the settings: backupFrequency: "0 61 2 \* \* \*": [^\n]*'61'[^\n]* \(invalid_settings\)$/);
  assert.deepEqual(await readConfig(), config, 'a refused change keeps the settings');
  // The browser logs the refusal (400) it was meant to get: exactly one, and no other.
  const badRequests = admin.problems.errors.filter((e) => /status of 400/.test(e));
  assert.equal(badRequests.length, 1, admin.problems.errors.join('\n'));
  admin.problems.errors = admin.problems.errors.filter((e) => !badRequests.includes(e));
  await page.locator('#bs-frequency').fill('0 30 2 * * *');
  await page.locator('#bs-retention').fill('12');
  await page.locator('#bs-save').focus();
  await page.keyboard.press('Enter');
  await waitText(page, '#backup-settings-note', /^Saved\.$/);
  const saved = { ...config, backupFrequency: '0 30 2 * * *', backupRetentionCount: 12 };
  assert.deepEqual(await readConfig(), saved);
  assert.deepEqual(puts.at(-1), saved, 'Save sends all four settings');
  assert.equal(await text(page, '#backup-settings-error'), '');
  await shot(page, 'backup-settings');

  step('backups: take one');
  const takeAnswer = page.waitForResponse((r) => r.url().endsWith('/api/v1/backups') && r.request().method() === 'POST');
  await page.locator('#take-backup').click();
  const takeResp = await takeAnswer;
  assert.equal(takeResp.status(), 202);
  const taken = (await takeResp.json()).timestamp;
  assert.match(taken, /^\d{4}-\d\d-\d\dt\d\d-\d\d-\d\d$/);
  const row = `#backups-table tbody tr[data-backup="${taken}"]`;
  await waitText(page, `${row} [data-field=status]`, /^Success$/, 60_000);
  await waitText(page, '#backup-note', new RegExp(`${taken}.*Success`));
  // A backup holds the engine but is no operation: the last operation's outcome stays.
  await waitText(page, '#op-status', /^Upgrade to 2\.0\.0 succeeded/);
  assert.equal(await text(page, '#outcome-title'), 'Upgrade to 2.0.0 succeeded');
  assert.equal(await text(page, `${row} [data-field=kind]`), 'manual');
  assert.equal(await text(page, `${row} [data-field=version]`), '2.0.0');
  const listed = await backupsShown(page);
  assert.equal(listed[0], `${taken} Success manual 2.0.0`, `newest first: ${listed.join(' | ')}`);
  assert.match(listed[1], / Success preUpgrade.* 1\.0\.0$/, listed.join(' | '));
  await shot(page, 'backups');

  step('backups: the Restore dialog');
  await page.locator(`${row} [data-action=restore]`).click();
  await page.locator('#restore-dialog').waitFor({ state: 'visible' });
  assert.equal(await activeId(page), 'restore-cancel', 'the safe choice has the focus');
  assert.equal(await text(page, '#restore-title'), `Restore backup ${taken}`);
  assert.match(await text(page, '#restore-how'), /re-deploys version 2\.0\.0 .*restores only the data/);
  assert.equal(await text(page, '#restore-confirm-label'), `Yes, restore ${taken}`);
  assert.equal(await page.locator('#restore-submit').isDisabled(), true, 'Restore needs the tick');
  // The modal dialog keeps the focus: Tab never reaches the page behind it.
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press('Tab');
    const outside = await page.evaluate(() => {
      const a = document.activeElement;
      return a && a !== document.body && !a.closest('#restore-dialog') ? `${a.tagName}#${a.id}` : '';
    });
    assert.equal(outside, '', 'focus left the restore dialog');
  }
  await page.locator('#restore-confirm').check();
  assert.equal(await page.locator('#restore-submit').isEnabled(), true);
  await page.locator('#restore-confirm').uncheck();
  assert.equal(await page.locator('#restore-submit').isDisabled(), true);
  await page.locator('#restore-confirm').check();
  await shot(page, 'restore-dialog');
  await axeCheck(page, 'restore dialog open');
  // A refusal shows the agent's message and code (answered here in the API's error shape:
  // the sample's versions are all imported, so the agent itself would accept it).
  await page.route('**/api/v1/restores', (route) => route.fulfill({
    status: 409,
    contentType: 'application/json',
    body: JSON.stringify({ code: 'bundle_not_imported', message: 'version 2.0.0 is not imported: import it first' }),
  }), { times: 1 });
  await page.locator('#restore-submit').click();
  await waitText(page, '#restore-error', /^version 2\.0\.0 is not imported: import it first \(bundle_not_imported\)$/);
  assert.equal(await page.locator('#restore-dialog').isVisible(), true, 'the dialog stays open');
  await page.unroute('**/api/v1/restores');
  step('backups: restore, confirmed');
  const restoreAnswer = page.waitForResponse((r) => r.url().endsWith('/api/v1/restores') && r.request().method() === 'POST');
  await page.locator('#restore-submit').click();
  const restoreResp = await restoreAnswer;
  assert.equal(restoreResp.status(), 202, await restoreResp.text());
  assert.deepEqual(restoreResp.request().postDataJSON(), { timestamp: taken, confirm: true });
  await page.locator('#restore-dialog').waitFor({ state: 'hidden' });
  assert.equal(await activeId(page), 'progress-title', 'focus moves to the progress');
  await waitText(page, '#op-status', /[Rr]estore/, 30_000);
  await outcome(page, 'Restore to 2.0.0 succeeded');
  step('restored');
  assert.equal(await text(page, '#outcome-reason'), `Restored backup ${taken} (2.0.0); it is ready.`);
  await waitText(page, '#release-message', new RegExp(`^restored backup ${taken} \\(2\\.0\\.0\\); it is ready$`));
  await waitText(page, '#phase', /^Ready/);
  assert.equal(await text(page, '#current-version'), '2.0.0');
  await waitText(page, '#revisions-table tbody tr:first-child', /2\.0\.0\s*restore\s*deployed/);
  await shot(page, 'restore-succeeded');

  // ------------------------------------------------------------------ downgrade needs the tick
  step('a downgrade needs the tick');
  await page.locator('#open-upgrade').click();
  assert.deepEqual(await page.locator('#version-suggestions option').evaluateAll((os) => os.map((o) => o.value)), ['3.0.0', '2.0.0']);
  await page.locator('#version').fill('1.0.0');
  await waitText(page, '#version-hint', /1\.0\.0 is older than the current version 2\.0\.0/);
  assert.equal(await page.locator('#downgrade-confirm').isVisible(), true);
  assert.equal(await text(page, '#allow-downgrade-label'), 'Yes, downgrade to 1.0.0');
  assert.equal(await page.locator('#upgrade-submit').isDisabled(), true);
  await page.locator('#allow-downgrade').check();
  assert.equal(await page.locator('#upgrade-submit').isEnabled(), true);
  assert.equal(await text(page, '#upgrade-submit'), 'Downgrade');
  await shot(page, 'downgrade-confirm');
  await page.locator('#upgrade-cancel').click();
  await page.locator('#upgrade-dialog').waitFor({ state: 'hidden' });

  // ------------------------------------------------------------------ 3.0.0 fails, rolls back
  step('upgrade to 3.0.0 (crash-loops)');
  await page.locator('#open-upgrade').click();
  await page.locator('#version').fill('3.0.0');
  await page.locator('#upgrade-submit').click();
  // The last outcome goes away as soon as the request is accepted.
  await page.locator('#outcome').waitFor({ state: 'hidden' });
  await outcome(page, 'Upgrade to 3.0.0 failed');
  step('3.0.0 failed');
  await waitText(page, '#outcome-rollback', /^Rolled back automatically: the application runs 2\.0\.0 again\.$/);
  assert.match(await text(page, '#outcome-reason'), /rolled back to 2\.0\.0/);
  assert.match(await text(page, '#op-status'), /failed.*Rolled back to 2\.0\.0/);
  assert.equal(await text(page, '#current-version'), '2.0.0');
  assert.match(await text(page, '#phase'), /^Stalled/);
  for (const id of ['retry', 'roll-forward', 'rollback']) {
    assert.equal(await page.locator(`#${id}`).isEnabled(), true, `#${id}`);
  }
  // The failed attempt's migration logs (and the rollback's down step) are there to read.
  await waitText(page, '#step-logs-rev', /\(upgrade 3\.0\.0\)/);
  await shot(page, 'upgrade-rolled-back');
  await axeCheck(page, 'failed and rolled back');
  await page.locator('#rollback').click();
  await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
  assert.equal(await text(page, '#confirm-title'), 'Roll back?');
  assert.equal(await activeId(page), 'confirm-cancel', 'the safe choice has the focus');
  await shot(page, 'rollback-confirm');
  await page.keyboard.press('Escape');
  await page.locator('#confirm-dialog').waitFor({ state: 'hidden' });
  assert.equal(await activeId(page), 'rollback');

  // ------------------------------------------------------------------ history and audit
  step('history and audit');
  await waitText(page, '#revisions-table tbody', /failed/);
  // Newest first: the automatic rollback, then the failed attempt.
  const rows = await page.locator('#revisions-table tbody tr').evaluateAll((rs) => rs.map((r) => [...r.cells].slice(0, 4).map((c) => c.textContent.trim()).join(' ')));
  assert.match(rows[0], /^\d+ 2\.0\.0 rollback deployed$/, rows.join('\n'));
  assert.match(rows[1], /^\d+ 3\.0\.0 upgrade failed$/, rows.join('\n'));
  await page.locator('#revisions-table tbody tr').nth(1).getByRole('button').click();
  await page.locator('#revision-dialog').waitFor({ state: 'visible' });
  await waitText(page, '#revision-title', /^Revision \d+: upgrade 3\.0\.0 — failed$/);
  await waitText(page, '#revision-body', /Objects applied \(\d+\)/);
  await shot(page, 'revision-details');
  await axeCheck(page, 'revision details');
  await page.locator('#revision-close').click();
  await page.locator('#audit-refresh').click();
  await waitText(page, '#audit-table tbody', /upgrade\s*3\.0\.0\s*failed/);
  assert.match(await page.locator('#audit-table tbody').textContent(), /vars-set/);

  // The admin page at phone width too.
  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForTimeout(200);
  await noSidewaysScroll(page, 375, 'admin, 375×800');
  await page.locator('#open-upgrade').click();
  await noSidewaysScroll(page, 375, 'admin dialog, 375×800');
  await shot(page, 'admin-narrow-dialog', false);
  await page.keyboard.press('Escape');
  await page.setViewportSize({ width: 1280, height: 900 });

  // ------------------------------------------------------------------ viewer, narrow
  step('viewer at 375×800');
  const viewer = await session(browser, { width: 375, height: 800 }, 'viewer');
  const vpage = viewer.page;
  await vpage.goto(`${URL_}/`);
  assert.equal(await vpage.evaluate(() => sessionStorage.length), 0, 'a fresh context holds no token');
  assert.equal(await vpage.locator('#signin').isVisible(), true);
  await signIn(vpage, VIEWER);
  assert.equal(await text(vpage, '#who-role'), 'viewer');
  assert.equal(await vpage.locator('#viewer-note').isVisible(), true);
  await waitText(vpage, '#current-version', /^2\.0\.0$/);
  await waitText(vpage, '#outcome-title', /failed/);
  assert.deepEqual(await versionsShown(vpage), ['3.0.0', '2.0.0', '1.0.0']);
  await waitText(vpage, '#backups-table tbody tr[data-kind="manual"] [data-field=status]', /^Success$/);
  assert.ok((await vpage.locator('#backups-table tbody tr[data-backup] [data-action=restore]').count()) >= 2, 'Restore buttons shown');
  await vpage.waitForFunction(() => document.getElementById('bs-frequency').value === '0 30 2 * * *');
  for (const sel of ['#open-upgrade', '#upload-button', '#bundle-file', '#retry', '#roll-forward', '#rollback', '#var-hostname-value', '#var-adminPassword-secret', '#take-backup', '#bs-enabled', '#bs-frequency', '#bs-retention', '#bs-before', '#bs-save']) {
    assert.equal(await vpage.locator(sel).isDisabled(), true, `${sel} is disabled for a viewer`);
  }
  await waitText(vpage, '#revisions-table tbody', /3\.0\.0/);
  await waitText(vpage, '#audit-table tbody', /upgrade/);
  const answer = await vpage.evaluate(async () => {
    const r = await fetch('/api/v1/upgrade', {
      method: 'POST',
      headers: { Authorization: `Bearer ${sessionStorage.getItem('sealift.token')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ version: '2.0.0' }),
    });
    return { status: r.status, body: await r.json() };
  });
  assert.equal(answer.status, 403, JSON.stringify(answer));
  assert.equal(answer.body.code, 'forbidden');
  for (const b of await vpage.locator('#backups-table tbody tr[data-backup] button').all()) {
    assert.equal(await b.isDisabled(), true, 'a viewer can neither restore nor delete');
  }
  await noSidewaysScroll(vpage, 375, 'viewer, 375×800');
  await shot(vpage, 'viewer-narrow', false);
  await vpage.locator('#history').scrollIntoViewIfNeeded();
  await shot(vpage, 'viewer-narrow-history', false);
  await vpage.locator('#backups').scrollIntoViewIfNeeded();
  await shot(vpage, 'viewer-narrow-backups', false);
  await axeCheck(vpage, 'viewer, 375×800');
  assertClean(viewer.problems, 'viewer');
  await viewer.context.close();

  // ------------------------------------------------------------------ a confirmed rollback
  step('the admin rolls back, confirmed');
  await page.locator('#rollback').click();
  await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
  assert.match(await text(page, '#confirm-text'), /goes back to 2\.0\.0/);
  await page.locator('#confirm-ok').click();
  await page.locator('#confirm-dialog').waitFor({ state: 'hidden' });
  await page.locator('#outcome').waitFor({ state: 'hidden' });
  await outcome(page, 'Rollback to 2.0.0 succeeded');
  await waitText(page, '#phase', /^Ready$/);
  await waitText(page, '#desired-version', /^2\.0\.0$/);
  assert.equal(await page.locator('#recovery').isVisible(), false, 'nothing to recover from');
  await shot(page, 'rolled-back-by-hand');

  // ------------------------------------------------------------------ deleting a backup
  step('backups: delete one, cancelled then confirmed');
  await page.locator('#backups').scrollIntoViewIfNeeded();
  const victim = await page.locator('#backups-table tbody tr[data-kind="manual"]').first().getAttribute('data-backup');
  const victimRow = `#backups-table tbody tr[data-backup="${victim}"]`;
  await page.locator(`${victimRow} [data-action=delete]`).click();
  await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
  assert.equal(await text(page, '#confirm-title'), `Delete backup ${victim}?`);
  assert.match(await text(page, '#confirm-text'), /and all its data are deleted .* cannot be undone/);
  assert.equal(await page.locator('#confirm-ok').getAttribute('class'), 'danger');
  assert.equal(await activeId(page), 'confirm-cancel', 'the dialog opens on Cancel');
  await page.keyboard.press('Enter');
  await page.locator('#confirm-dialog').waitFor({ state: 'hidden' });
  assert.equal(await page.locator(victimRow).count(), 1, 'cancel keeps the backup');
  await page.locator(`${victimRow} [data-action=delete]`).click();
  await page.locator('#confirm-ok').click();
  await page.locator('#confirm-dialog').waitFor({ state: 'hidden' });
  await waitText(page, '#backup-note', new RegExp(`^Backup ${victim} deleted\\.$`));
  assert.equal(await page.locator(victimRow).count(), 0, 'the row is gone');
  const gone = await page.evaluate(async (ts) => (await fetch(`/api/v1/backups/${ts}`, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem('sealift.token')}` },
  })).status, victim);
  assert.equal(gone, 404, 'the agent no longer has it');
  admin.problems.errors = admin.problems.errors.filter((e) => !/status of 404/.test(e));
  await waitText(page, '#audit-table tbody', /backup-delete/);
  await shot(page, 'backup-deleted');
  assertClean(admin.problems, 'admin');
  await admin.context.close();
  step('done');
} finally {
  await browser.close();
}
