// Alarms (docs/alarms.md): the live feed (#/alarms?state=open|firing|
// acknowledged|resolved), refreshed every 3 s, with "Acknowledge" (a note),
// "Silence" (this locker and kind, for a time) and "Resolve" for on-call
// staff, technicians and admins; the silences that have not ended, with
// "End"; the alarm rules (alarmrules.js); and, on the locker page, the
// locker's alarm history.
//
// Data: GET /api/v1/alarms, POST /api/v1/alarms/{id}/ack|resolve,
// GET/POST /api/v1/alarms/silences, DELETE …/silences/{id},
// GET /api/v1/lockers/{id}/alarms.
import { mountAlarmRules } from './alarmrules.js';
import { api, get, query } from './api.js';
import { esc, fmtTime, humanize, since } from './util.js';

const POLL_MS = 3000;
const STATES = ['open', 'firing', 'acknowledged', 'resolved'];

function severityBadge(a) {
  const cls = { critical: 'off', major: 'warn', minor: 'unk', info: 'unk' }[a.severity] || 'unk';
  return `<span class="badge ${cls} a-sev" data-severity="${esc(a.severity)}">${esc(humanize(a.severity))}</span>`;
}

// stateBadge shows the alarm's state and why nobody is told of it.
export function alarmState(a) {
  const cls = { firing: 'off', acknowledged: 'warn', resolved: 'on' }[a.state] || 'unk';
  const marks = [];
  if (a.state !== 'resolved') {
    if (a.silenced) marks.push('silenced');
    if (a.muted) marks.push('muted');
    if (a.inhibited) marks.push('inhibited');
  }
  let s = `<span class="badge ${cls} a-state" data-state="${esc(a.state)}">${esc(humanize(a.state))}</span>`;
  for (const m of marks) s += ` <span class="badge unk a-mark" data-mark="${m}">${m}</span>`;
  if (a.state === 'acknowledged' && a.acked_by) s += ` <span class="muted">by ${esc(a.acked_by)}${a.ack_note ? `: “${esc(a.ack_note)}”` : ''}</span>`;
  return s;
}

export function mountAlarms(root, ctx, params) {
  document.title = 'Alarms · lockerhub';
  let state = STATES.includes(params.get('state')) ? params.get('state') : 'open';
  const mayAct = ctx.can('POST /api/v1/alarms/{id}/ack');
  const maySilence = ctx.can('POST /api/v1/alarms/silences');
  const mayRules = ctx.can('GET /api/v1/alarms/rules');
  // Forced doors and tampering record a clip: the locker page has it and the live camera.
  const mayWatch = ctx.can('POST /api/v1/lockers/{id}/video/whep');
  let gone = false;
  let timer = null;
  let seq = 0;
  let busy = false; // a form is open: do not re-render under the user's fingers

  root.innerHTML = `
  <section class="audit alarms">
    <h1 class="page-title">Alarms</h1>
    <form class="filters" id="a-filters" aria-label="Filter alarms">
      <div class="field">
        <label for="a-state">Show</label>
        <select id="a-state" name="state">${STATES.map((s) => `<option value="${s}">${s === 'open' ? 'Open (firing and acknowledged)' : humanize(s)}</option>`).join('')}</select>
      </div>
    </form>
    <div class="list-meta"><span id="a-count" role="status" aria-live="polite"></span></div>
    <div id="a-error"></div>
    <div class="p-scroll">
    <table class="audit-table alarms-table" aria-label="Alarms">
      <thead><tr><th scope="col">Severity</th><th scope="col">Alarm</th><th scope="col">Locker · cell</th><th scope="col">State</th>
        <th scope="col">Since</th><th scope="col">Summary</th>${mayAct ? '<th scope="col">Actions</th>' : ''}</tr></thead>
      <tbody id="a-rows"><tr><td colspan="7" class="muted">Loading…</td></tr></tbody>
    </table>
    </div>
    <h2 class="page-sub">Silences</h2>
    <div id="a-silences"><p class="muted">Loading…</p></div>
    ${mayRules ? '<h2 class="page-sub">Rules</h2><div id="a-rules"></div>' : ''}
  </section>`;
  const $ = (s) => root.querySelector(s);
  const stopRules = mayRules ? mountAlarmRules($('#a-rules'), ctx) : () => {};
  $('#a-state').value = state;
  $('#a-state').addEventListener('change', () => {
    state = $('#a-state').value;
    history.replaceState(null, '', `#/alarms${query({ state: state === 'open' ? '' : state })}`);
    load();
  });

  async function load() {
    const my = ++seq;
    clearTimeout(timer);
    try {
      const [a, s] = await Promise.all([get(`/api/v1/alarms${query({ state, limit: 500 })}`), get('/api/v1/alarms/silences')]);
      if (gone || my !== seq) return;
      $('#a-error').innerHTML = '';
      if (!busy) render(a.alarms || [], s.silences || []);
    } catch (e) {
      if (gone || my !== seq) return;
      $('#a-error').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
    }
    if (!gone) timer = setTimeout(load, POLL_MS);
  }

  function render(list, silences) {
    const firing = list.filter((a) => a.state === 'firing' && !a.silenced && !a.muted && !a.inhibited).length;
    $('#a-count').textContent = list.length === 0 ? 'No alarms.' : `${list.length} alarm${list.length === 1 ? '' : 's'}${state === 'open' ? `, ${firing} firing unacknowledged` : ''} · refreshed every 3 s`;
    $('#a-rows').innerHTML = list.length === 0 ? '<tr><td colspan="7" class="muted">Nothing to show.</td></tr>' : list.map((a) => `
      <tr data-id="${a.id}" data-kind="${esc(a.kind)}" class="a-row">
        <td>${severityBadge(a)}</td>
        <td>${esc(humanize(a.kind))}${a.occurrences > 1 ? ` <span class="muted">×${a.occurrences}</span>` : ''}</td>
        <td><a href="#/lockers/${encodeURIComponent(a.locker_id)}">${esc(a.locker_id)}</a>${a.cell ? ` · ${esc(a.cell)}` : ''}${mayWatch && (a.kind === 'door_forced' || a.kind === 'tamper')
          ? ` <a class="a-video" href="#/lockers/${encodeURIComponent(a.locker_id)}" title="Live camera and the clip of this alarm">camera</a>` : ''}</td>
        <td>${alarmState(a)}</td>
        <td title="${esc(a.started_at)}">${esc(fmtTime(a.started_at))} <span class="muted">(${esc(since(a.started_at))})</span></td>
        <td>${esc(a.summary)}</td>
        ${mayAct ? `<td class="a-actions">${a.state === 'firing' ? `<button type="button" class="btn-quiet a-ack">Acknowledge</button>` : ''}
          ${a.state !== 'resolved' && maySilence && !a.silenced ? `<button type="button" class="btn-quiet a-silence">Silence</button>` : ''}
          ${a.state !== 'resolved' ? `<button type="button" class="btn-quiet a-resolve">Resolve</button>` : ''}</td>` : ''}
      </tr>`).join('');
    $('#a-silences').innerHTML = silences.length === 0 ? '<p class="muted">No silences.</p>' : `<ul class="a-sil-list">${silences.map((s) => `
      <li data-id="${s.id}">${s.matchers.map((m) => `<code>${esc(m.name)}${esc(m.op)}${esc(m.value)}</code>`).join(' ')}
        <span class="muted">until ${esc(fmtTime(s.ends_at))} · by ${esc(s.created_by)}${s.comment ? ` · ${esc(s.comment)}` : ''}${s.active ? '' : ' · not started'}</span>
        ${maySilence ? '<button type="button" class="btn-quiet a-unsilence">End</button>' : ''}</li>`).join('')}</ul>`;
  }

  // An inline form under the row: note for an ack, duration for a silence.
  function openForm(tr, kind) {
    root.querySelectorAll('.a-form-row').forEach((r) => r.remove());
    busy = true;
    const id = tr.dataset.id;
    const row = document.createElement('tr');
    row.className = 'a-form-row';
    const field = kind === 'silence'
      ? `<label>Silence ${esc(humanize(tr.dataset.kind))} at this locker for <select name="for"><option value="30">30 min</option><option value="60" selected>1 h</option><option value="240">4 h</option><option value="1440">1 day</option></select></label>
         <label>Comment <input name="note" autocomplete="off"></label>`
      : `<label>Note <input name="note" autocomplete="off" placeholder="${kind === 'ack' ? 'On my way' : 'Why'}" maxlength="1000"></label>`;
    row.innerHTML = `<td colspan="7"><form class="a-form">${field}
      <button type="submit" class="btn">${kind === 'ack' ? 'Acknowledge' : kind === 'silence' ? 'Silence' : 'Resolve'}</button>
      <button type="button" class="btn-quiet a-cancel">Cancel</button><span class="a-form-msg" role="alert"></span></form></td>`;
    tr.after(row);
    const form = row.querySelector('form');
    form.elements.note.focus();
    row.querySelector('.a-cancel').addEventListener('click', () => { row.remove(); busy = false; load(); });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const note = form.elements.note.value.trim();
      try {
        if (kind === 'silence') {
          const a = (await get(`/api/v1/alarms/${id}`)).alarm;
          const ends = new Date(Date.now() + Number(form.elements.for.value) * 60000).toISOString();
          await api('POST', '/api/v1/alarms/silences', { matchers: [{ name: 'locker', op: '=', value: a.locker_id }, { name: 'kind', op: '=', value: a.kind }], ends_at: ends, comment: note });
        } else {
          await api('POST', `/api/v1/alarms/${id}/${kind}`, { note });
        }
        row.remove();
        busy = false;
        load();
      } catch (e) {
        row.querySelector('.a-form-msg').textContent = e.message;
      }
    });
  }

  root.addEventListener('click', async (ev) => {
    const tr = ev.target.closest('tr.a-row');
    if (tr && ev.target.classList.contains('a-ack')) openForm(tr, 'ack');
    else if (tr && ev.target.classList.contains('a-silence')) openForm(tr, 'silence');
    else if (tr && ev.target.classList.contains('a-resolve')) openForm(tr, 'resolve');
    else if (ev.target.classList.contains('a-unsilence')) {
      const li = ev.target.closest('li');
      try { await api('DELETE', `/api/v1/alarms/silences/${li.dataset.id}`); } catch (e) { $('#a-error').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`; }
      load();
    }
  });

  load();
  return { unmount() { gone = true; clearTimeout(timer); stopRules(); } };
}

// mountLockerAlarms fills el with a locker's alarm history (newest first),
// refreshed every 10 s; returns a stop function.
export function mountLockerAlarms(el, id) {
  let gone = false;
  let timer = null;
  async function load() {
    try {
      const r = await get(`/api/v1/lockers/${encodeURIComponent(id)}/alarms${query({ limit: 20 })}`);
      if (gone) return;
      const list = r.alarms || [];
      el.innerHTML = list.length === 0 ? '<p class="muted">No alarms.</p>' : `<ol class="timeline l-alarms">${list.map((a) => `
        <li data-id="${a.id}" data-kind="${esc(a.kind)}">${severityBadge(a)} <strong>${esc(humanize(a.kind))}</strong>${a.cell ? ` · ${esc(a.cell)}` : ''}
          ${alarmState(a)} <span class="muted">${esc(fmtTime(a.started_at))}${a.resolved_at ? ` – ${esc(fmtTime(a.resolved_at))}` : ''}</span></li>`).join('')}</ol>`;
    } catch (e) {
      if (!gone) el.innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
    }
    if (!gone) timer = setTimeout(load, 10000);
  }
  load();
  return () => { gone = true; clearTimeout(timer); };
}
