// Audit log (admins): who changed what, when and from where. Filters in
// the hash query (#/audit?actor=…&object_type=…&object_id=…&action=…&range=24h),
// a page of records at a time (newest first; "Older" follows the API's
// cursor), a row opens the change as a field-by-field diff of before and
// after, and the CSV link exports the whole selection.
import { get, query } from './api.js';
import { esc, fmtTime, humanize } from './util.js';

const FILTERS = ['actor', 'object_type', 'object_id', 'action', 'range'];
const PAGE = 50;
const OBJECT_TYPES = ['locker', 'model', 'desired', 'certificate', 'enroll_token', 'user', 'session', 'token', 'client', 'command', 'parcel'];
const ACTIONS = ['create', 'update', 'delete', 'command', 'revoke', 'issue', 'enroll', 'renew', 'login', 'login_failed', 'logout', 'set_password', 'disable'];
const RANGES = [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['168h', 'Last 7 days'], ['720h', 'Last 30 days'], ['', 'All time']];

// apiFilter is the API's query for the page's filters.
function apiFilter(f) {
  return { actor: f.actor, object_type: f.object_type, object_id: f.object_id, action: f.action, from: f.range };
}

export function mountAudit(root, ctx, params) {
  document.title = 'Audit · lockerhub';
  const f = {};
  for (const k of FILTERS) f[k] = params.get(k) ?? (k === 'range' ? '24h' : '');
  if (f.range === 'all') f.range = '';
  let cursors = ['']; // the cursor of each page seen; the last is the current page's
  let records = [];
  let next = '';
  let open = null; // id of the record whose diff is shown
  let gone = false;

  root.innerHTML = `
  <section class="audit">
    <h1 class="page-title">Audit log</h1>
    <form class="filters" id="a-filters" role="search" aria-label="Filter audit records">
      <div class="field">
        <label for="a-actor">Actor</label>
        <input id="a-actor" name="actor" placeholder="Anyone" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="a-object_type">Object</label>
        <select id="a-object_type" name="object_type"><option value="">Any</option>
          ${OBJECT_TYPES.map((t) => `<option value="${esc(t)}">${esc(humanize(t))}</option>`).join('')}</select>
      </div>
      <div class="field">
        <label for="a-object_id">Object ID</label>
        <input id="a-object_id" name="object_id" placeholder="Any" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="a-action">Action</label>
        <select id="a-action" name="action"><option value="">Any</option>
          ${ACTIONS.map((a) => `<option value="${esc(a)}">${esc(humanize(a))}</option>`).join('')}</select>
      </div>
      <div class="field">
        <label for="a-range">Time</label>
        <select id="a-range" name="range">${RANGES.map(([v, l]) => `<option value="${esc(v)}">${esc(l)}</option>`).join('')}</select>
      </div>
      <button type="button" class="btn-quiet" id="a-clear">Clear</button>
      <a class="btn-quiet" id="a-csv" download>Export CSV</a>
    </form>
    <div class="list-meta"><span id="a-count" role="status" aria-live="polite"></span></div>
    <div id="a-error"></div>
    <table class="audit-table" aria-label="Audit records">
      <thead><tr><th scope="col">Time</th><th scope="col">Actor</th><th scope="col">From</th><th scope="col">Action</th><th scope="col">Object</th><th scope="col">Change</th></tr></thead>
      <tbody id="a-rows"><tr><td colspan="6" class="muted">Loading…</td></tr></tbody>
    </table>
    <div class="pager">
      <button type="button" class="btn-quiet" id="a-newest" disabled>Newest</button>
      <button type="button" class="btn-quiet" id="a-newer" disabled>← Newer</button>
      <button type="button" class="btn-quiet" id="a-older" disabled>Older →</button>
    </div>
  </section>`;

  const form = root.querySelector('#a-filters');
  for (const k of FILTERS) form.elements[k].value = f[k];

  function syncHash() {
    const q = {};
    for (const k of FILTERS) q[k] = f[k];
    if (f.range === '') q.range = 'all';
    const h = `#/audit${query(q)}`;
    if (location.hash !== h) history.replaceState(null, '', h);
  }

  function csvLink() {
    root.querySelector('#a-csv').href = `/api/v1/audit${query({ ...apiFilter(f), format: 'csv' })}`;
  }

  async function load() {
    const cursor = cursors[cursors.length - 1];
    try {
      const p = await get(`/api/v1/audit${query({ ...apiFilter(f), limit: PAGE, cursor })}`);
      if (gone) return;
      records = p.records || [];
      next = p.next_cursor || '';
      root.querySelector('#a-error').innerHTML = '';
      render();
    } catch (e) {
      if (gone) return;
      root.querySelector('#a-error').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
    }
  }

  function render() {
    const tbody = root.querySelector('#a-rows');
    const page = cursors.length;
    root.querySelector('#a-count').textContent = records.length === 0 ? 'No records match.'
      : `Page ${page}: ${records.length} record${records.length === 1 ? '' : 's'}, newest first`;
    root.querySelector('#a-older').disabled = !next;
    root.querySelector('#a-newer').disabled = page <= 1;
    root.querySelector('#a-newest').disabled = page <= 1;
    if (records.length === 0) {
      tbody.innerHTML = '<tr><td colspan="6" class="muted">No records match these filters.</td></tr>';
      return;
    }
    tbody.innerHTML = records.map((r) => {
      const actor = r.actor || {};
      const obj = r.object_id ? `${r.object_type} ${r.object_id}` : r.object_type;
      const isOpen = open === r.id;
      const row = `<tr class="a-row${isOpen ? ' open' : ''}" data-id="${r.id}" tabindex="0" aria-expanded="${isOpen}">
        <td class="nowrap" title="${esc(r.at)}">${esc(fmtTime(r.at))}</td>
        <td><span class="a-actor">${esc(actor.name || actor.kind)}</span> <span class="chip">${esc(actor.kind)}${actor.role ? ` · ${esc(actor.role)}` : ''}</span></td>
        <td class="nowrap">${esc(actor.addr || '—')}</td>
        <td><span class="badge ${actionClass(r.action)}">${esc(humanize(r.action))}</span></td>
        <td class="a-object">${esc(obj)}</td>
        <td class="a-summary">${esc(summary(r))}</td>
      </tr>`;
      return isOpen ? row + `<tr class="a-detail"><td colspan="6">${diffView(r)}</td></tr>` : row;
    }).join('');
  }

  function apply() {
    for (const k of FILTERS) f[k] = form.elements[k].value.trim();
    cursors = [''];
    open = null;
    syncHash();
    csvLink();
    load();
  }

  let timer;
  form.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(apply, 300); });
  form.addEventListener('change', apply);
  form.addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  root.querySelector('#a-clear').addEventListener('click', () => {
    for (const k of FILTERS) form.elements[k].value = k === 'range' ? '24h' : '';
    apply();
  });
  root.querySelector('#a-older').addEventListener('click', () => { if (next) { cursors.push(next); open = null; load(); } });
  root.querySelector('#a-newer').addEventListener('click', () => { if (cursors.length > 1) { cursors.pop(); open = null; load(); } });
  root.querySelector('#a-newest').addEventListener('click', () => { cursors = ['']; open = null; load(); });
  const toggle = (tr) => {
    const id = Number(tr.dataset.id);
    open = open === id ? null : id;
    render();
  };
  root.querySelector('#a-rows').addEventListener('click', (e) => {
    const tr = e.target.closest('tr.a-row');
    if (tr) toggle(tr);
  });
  root.querySelector('#a-rows').addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr.a-row');
    if (tr && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); toggle(tr); }
  });

  syncHash();
  csvLink();
  load();
  return { unmount() { gone = true; clearTimeout(timer); } };
}

function actionClass(a) {
  if (a === 'delete' || a === 'revoke' || a === 'login_failed' || a === 'disable') return 'off';
  if (a === 'create' || a === 'login') return 'on';
  if (a === 'update' || a === 'command') return 'warn';
  return 'unk';
}

const SKIP = new Set(['updated_at', 'created_at']);

// fields lists the top-level fields of before and after, changed ones first.
function fields(r) {
  const b = isObj(r.before) ? r.before : {};
  const a = isObj(r.after) ? r.after : {};
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])];
  return keys.map((k) => ({ k, b: b[k], a: a[k], changed: JSON.stringify(b[k]) !== JSON.stringify(a[k]) }))
    .sort((x, y) => (y.changed - x.changed) || x.k.localeCompare(y.k));
}

function isObj(v) { return v && typeof v === 'object' && !Array.isArray(v); }

function show(v) {
  if (v === undefined) return '—';
  return typeof v === 'string' ? (v === '' ? '""' : v) : JSON.stringify(v);
}

function summary(r) {
  if (r.before == null && r.after == null) return '';
  if (r.before == null && r.action === 'create') return 'created';
  if (r.after == null && r.action === 'delete') return 'deleted';
  if (r.before == null || r.after == null) {
    const obj = isObj(r.after) ? r.after : isObj(r.before) ? r.before : {};
    return Object.keys(obj).filter((k) => !SKIP.has(k)).slice(0, 3).map((k) => `${k}: ${short(show(obj[k]))}`).join('; ');
  }
  const ch = fields(r).filter((x) => x.changed && !SKIP.has(x.k));
  if (ch.length === 0) return 'no field changed';
  return ch.slice(0, 3).map((x) => `${x.k}: ${short(show(x.b))} → ${short(show(x.a))}`).join('; ') + (ch.length > 3 ? ` (+${ch.length - 3})` : '');
}

function short(s) { return s.length > 32 ? `${s.slice(0, 31)}…` : s; }

function diffView(r) {
  const actor = r.actor || {};
  const meta = `<p class="a-meta">${esc(actor.kind)} <b>${esc(actor.name || '—')}</b>${actor.id ? ` (id ${esc(actor.id)})` : ''}
    ${actor.role ? `as ${esc(actor.role)}` : ''} from ${esc(actor.addr || 'an unknown address')}, ${esc(new Date(r.at).toLocaleString())}
    ${actor.request_id ? `· request <code>${esc(actor.request_id)}</code>` : ''}</p>`;
  if (!isObj(r.before) && !isObj(r.after)) {
    return meta + '<p class="muted">No object state recorded for this action.</p>';
  }
  const rows = fields(r).map((x) => `<tr class="${x.changed ? 'changed' : ''}"><th scope="row">${esc(x.k)}</th>
    <td class="a-before">${esc(show(x.b))}</td><td class="a-after">${esc(show(x.a))}</td></tr>`).join('');
  return `${meta}<table class="a-diff" aria-label="Before and after"><thead><tr><th scope="col">Field</th><th scope="col">Before</th><th scope="col">After</th></tr></thead><tbody>${rows}</tbody></table>`;
}
