// Firmware rollouts (docs/ota.md): every rollout with its progress
// (#/ota), refreshed every 2 s; a selected rollout (#/ota?id=N) with its
// waves, per-state counts, failures by reason and the lockers of a chosen
// state, and the actions the role may take (pause, resume, cancel, approve,
// rollback); the uploaded artifacts. Rollouts are created with hubctl or
// the API.
//
// Data: GET /api/v1/ota/rollouts, GET /api/v1/ota/rollouts/{id},
// GET /api/v1/ota/rollouts/{id}/lockers, POST /api/v1/ota/rollouts/{id}/…,
// GET /api/v1/ota/artifacts.
import { api, get, query } from './api.js';
import { esc, fmtTime, humanize } from './util.js';

const POLL_MS = 2000;
const STATES = ['pending', 'queued', 'notified', 'downloading', 'downloaded', 'verified', 'installing', 'installed', 'failed', 'cancelled'];
const BUSY = ['notified', 'downloading', 'downloaded', 'verified', 'installing'];

function stateBadge(state) {
  const cls = { running: 'on', completed: 'on', paused: 'warn', draft: 'unk', cancelled: 'unk', aborted: 'off' }[state] || 'unk';
  return `<span class="badge ${cls} o-state" data-state="${esc(state)}">${esc(humanize(state))}</span>`;
}

// bar draws installed (green), failed (red) and under way (amber) shares.
function bar(counts, total) {
  const t = Math.max(total, 1);
  const pct = (n) => `${(100 * (n || 0) / t).toFixed(2)}%`;
  const busy = BUSY.reduce((s, k) => s + (counts[k] || 0), 0);
  // Widths are set by sizeBars (the page's CSP allows no inline styles).
  return `<span class="o-bar" role="img" aria-label="${counts.installed || 0} of ${total} installed, ${counts.failed || 0} failed, ${busy} under way">
    <span class="o-ok" data-w="${pct(counts.installed)}"></span><span class="o-bad" data-w="${pct(counts.failed)}"></span><span class="o-busy" data-w="${pct(busy)}"></span></span>`;
}

function sizeBars(root) {
  root.querySelectorAll('.o-bar > span[data-w]').forEach((e) => { e.style.width = e.dataset.w; });
}

function countsText(counts) {
  return STATES.filter((s) => counts[s]).map((s) => `<span class="o-count" data-state="${s}">${esc(humanize(s))} ${counts[s]}</span>`).join(' · ') || '—';
}

export function mountOTA(root, ctx, params) {
  document.title = 'Firmware · lockerhub';
  let selected = Number(params.get('id')) || 0;
  let lockerState = params.get('state') || 'failed';
  let gone = false;
  let timer = null;
  let seq = 0;
  const may = (a) => ctx.can(`POST /api/v1/ota/rollouts/{id}/${a}`);

  root.innerHTML = `
  <section class="audit ota">
    <h1 class="page-title">Firmware</h1>
    <div id="o-error"></div>
    <div class="p-scroll">
    <table class="audit-table" aria-label="Rollouts">
      <thead><tr><th scope="col">Rollout</th><th scope="col">Version</th><th scope="col">State</th><th scope="col">Wave</th>
        <th scope="col">Progress</th><th scope="col">Reason</th></tr></thead>
      <tbody id="o-rows"><tr><td colspan="6" class="muted">Loading…</td></tr></tbody>
    </table>
    </div>
    <div id="o-detail"></div>
    <h2 class="page-sub">Artifacts</h2>
    <div id="o-artifacts"><p class="muted">Loading…</p></div>
  </section>`;
  const $ = (s) => root.querySelector(s);

  async function load() {
    const my = ++seq;
    clearTimeout(timer);
    try {
      const [list, arts] = await Promise.all([get('/api/v1/ota/rollouts'), get('/api/v1/ota/artifacts')]);
      const rollouts = list.rollouts || [];
      if (!selected && rollouts.length) selected = rollouts[0].id;
      const statuses = await Promise.all(rollouts.slice(0, 20).map((r) => get(`/api/v1/ota/rollouts/${r.id}`)));
      let lockers = null;
      if (selected) lockers = await get(`/api/v1/ota/rollouts/${selected}/lockers${query({ state: lockerState, limit: 200 })}`);
      if (gone || my !== seq) return;
      $('#o-error').innerHTML = '';
      render(statuses, arts.artifacts || [], lockers ? lockers.lockers || [] : []);
    } catch (e) {
      if (gone || my !== seq) return;
      $('#o-error').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
    }
    if (!gone) timer = setTimeout(load, POLL_MS);
  }

  function render(statuses, artifacts, lockers) {
    $('#o-rows').innerHTML = statuses.length === 0 ? '<tr><td colspan="6" class="muted">No rollouts yet: <code>hubctl ota rollout create</code>.</td></tr>' : statuses.map((s) => `
      <tr class="o-row${s.id === selected ? ' selected' : ''}" data-id="${s.id}" tabindex="0">
        <td><a href="#/ota?id=${s.id}">${s.id} · ${esc(s.name)}</a></td>
        <td>${esc(s.version)}</td>
        <td>${stateBadge(s.state)}</td>
        <td>${s.current_wave}/${s.waves.length}</td>
        <td>${bar(s.counts, s.total)} <span class="muted">${s.counts.installed || 0}/${s.total}</span></td>
        <td>${esc(s.reason || '')}</td>
      </tr>`).join('');
    const s = statuses.find((x) => x.id === selected);
    $('#o-detail').innerHTML = s ? detail(s, lockers) : '';
    const sel = $('#o-lstate');
    if (sel) sel.value = lockerState;
    sizeBars(root);
    $('#o-artifacts').innerHTML = artifacts.length === 0 ? '<p class="muted">No artifacts: <code>hubctl ota upload FILE --version V</code>.</p>' : `
      <table class="audit-table" aria-label="Artifacts"><thead><tr><th scope="col">Version</th><th scope="col">Size</th><th scope="col">Models</th>
        <th scope="col">SHA-256</th><th scope="col">Uploaded</th><th scope="col">Notes</th></tr></thead><tbody>${artifacts.map((a) => `
        <tr data-id="${a.id}"><td>${esc(a.version)}</td><td>${a.size.toLocaleString()} B</td><td>${esc((a.models || []).join(', ') || 'all')}</td>
        <td><code title="${esc(a.sha256)}">${esc(a.sha256.slice(0, 16))}…</code></td><td>${esc(fmtTime(a.created_at))} · ${esc(a.created_by)}</td><td>${esc(a.notes)}</td></tr>`).join('')}</tbody></table>`;
  }

  function detail(s, lockers) {
    const cur = s.waves[s.current_wave - 1];
    const actions = [];
    if (s.state === 'draft' && may('start')) actions.push(['start', 'Start']);
    if (s.state === 'running' && may('pause')) actions.push(['pause', 'Pause']);
    if (s.state === 'paused' && may('resume')) actions.push(['resume', 'Resume']);
    if (s.state === 'running' && cur && cur.state === 'awaiting_approval' && may('approve')) actions.push(['approve', `Approve wave ${s.current_wave + 1}`]);
    if (['draft', 'running', 'paused'].includes(s.state) && may('cancel')) actions.push(['cancel', 'Cancel']);
    if ((s.counts.installed || 0) > 0 && may('rollback')) actions.push(['rollback', 'Roll back']);
    const failures = Object.entries(s.failures || {}).sort((a, b) => b[1] - a[1]);
    return `
    <h2 class="page-sub" id="o-title">Rollout ${s.id}: ${esc(s.name)} ${stateBadge(s.state)}</h2>
    ${s.reason ? `<p class="o-reason" role="status">${esc(s.reason)}</p>` : ''}
    <p>${bar(s.counts, s.total)} ${s.counts.installed || 0} of ${s.total} installed · ${countsText(s.counts)}</p>
    <div class="o-actions">${actions.map(([a, label]) => `<button type="button" class="btn${a === 'cancel' || a === 'rollback' ? '-quiet' : ''} o-act" data-action="${a}">${esc(label)}</button>`).join(' ')}<span id="o-msg" role="alert"></span></div>
    <table class="audit-table" aria-label="Waves"><thead><tr><th scope="col">Wave</th><th scope="col">Size</th><th scope="col">State</th><th scope="col">Lockers</th><th scope="col">Health gate</th></tr></thead>
      <tbody id="o-waves">${s.waves.map((w) => `<tr data-n="${w.n}"><td>${w.n}${w.n === 1 ? ' <span class="muted">canary</span>' : ''}</td><td>${w.size}</td>
        <td>${esc(humanize(w.state))}${w.state === 'soaking' && w.soak_until ? ` <span class="muted">until ${esc(fmtTime(w.soak_until))}</span>` : ''}</td>
        <td>${bar(w.counts, w.size)} ${countsText(w.counts)}</td><td class="muted">${w.health ? esc(w.health.verdict || 'not worse') : ''}</td></tr>`).join('')}</tbody></table>
    <h3 class="page-sub">Failures</h3>
    <div id="o-failures">${failures.length === 0 ? '<p class="muted">None.</p>' : `<ul>${failures.map(([r, n]) => `<li><strong>${n}</strong> ${esc(r)}</li>`).join('')}</ul>`}</div>
    <h3 class="page-sub">Lockers</h3>
    <div class="filters"><div class="field"><label for="o-lstate">In state</label>
      <select id="o-lstate">${STATES.map((st) => `<option value="${st}">${esc(humanize(st))}${s.counts[st] ? ` (${s.counts[st]})` : ''}</option>`).join('')}</select></div></div>
    <table class="audit-table" aria-label="Lockers"><thead><tr><th scope="col">Locker</th><th scope="col">Wave</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">From</th><th scope="col">Since</th><th scope="col">Reason</th></tr></thead>
      <tbody id="o-lockers">${lockers.length === 0 ? '<tr><td colspan="7" class="muted">None.</td></tr>' : lockers.map((l) => `
        <tr data-locker="${esc(l.locker_id)}"><td><a href="#/lockers/${encodeURIComponent(l.locker_id)}">${esc(l.locker_id)}</a></td><td>${l.wave}</td><td>${esc(humanize(l.state))}</td>
        <td>${l.attempts}</td><td>${esc(l.previous_version || '—')}</td><td>${esc(fmtTime(l.state_at))}</td><td>${esc(l.reason || '')}</td></tr>`).join('')}</tbody></table>`;
  }

  root.addEventListener('click', async (ev) => {
    const act = ev.target.closest('.o-act');
    if (act) {
      const a = act.dataset.action;
      if ((a === 'cancel' || a === 'rollback') && !confirm(a === 'cancel' ? 'Cancel this rollout?' : 'Roll the updated lockers back to their previous version?')) return;
      try {
        const r = await api('POST', `/api/v1/ota/rollouts/${selected}/${a}`);
        if (a === 'rollback') { selected = r.id; history.replaceState(null, '', `#/ota?id=${r.id}`); }
      } catch (e) {
        const m = $('#o-msg');
        if (m) m.textContent = e.message;
        return;
      }
      load();
      return;
    }
    const tr = ev.target.closest('tr.o-row');
    if (tr && !ev.target.closest('a')) {
      selected = Number(tr.dataset.id);
      history.replaceState(null, '', `#/ota?id=${selected}`);
      load();
    }
  });
  root.addEventListener('change', (ev) => {
    if (ev.target.id === 'o-lstate') {
      lockerState = ev.target.value;
      load();
    }
  });

  load();
  return { unmount() { gone = true; clearTimeout(timer); } };
}
