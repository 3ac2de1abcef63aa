// Fleet overview: summary cards, filters, and a virtualised list of every
// locker that matches them, kept live by the stream.
//
// Data: the stream's fleet snapshot (summary + one row per locker) and its
// deltas (changed rows). Every message is applied to the in-memory rows at
// once; the DOM is updated at most once per animation frame, and only the
// rows in view exist in the DOM, so 10,000 lockers stay smooth. When the
// stream cannot be opened the page falls back to the REST API
// (/api/v1/fleet/summary, /api/v1/lockers), refreshed every 10 s.
import { get, query } from './api.js';
import { Frame } from './stream.js';
import { esc, naturalCompare, num, debounce, fmtTime, SIZES } from './util.js';

const ROW_H = 44;
const OVERSCAN = 10;
const POLL_MS = 10000;
const SNAPSHOT_WAIT_MS = 2500;
const FILTERS = ['q', 'segment', 'model', 'carrier', 'status', 'sort'];

// statusOf is a row's presence: online, offline, or unknown (after a hub
// start, until the lockers had time to reconnect).
function statusOf(r) {
  if (r.presence) return r.presence;
  return r.online === true ? 'online' : r.online === false ? 'offline' : 'unknown';
}

export function mountFleet(root, ctx, params) {
  document.title = 'Fleet · lockerhub';
  const f = {};
  for (const k of FILTERS) f[k] = params.get(k) || '';

  root.innerHTML = `
  <section class="fleet">
    <div class="cards" id="cards" aria-label="Fleet summary"></div>
    <form class="filters" id="filters" role="search" aria-label="Filter lockers">
      <div class="field grow">
        <label for="f-q">Search</label>
        <input id="f-q" name="q" type="search" placeholder="Locker ID or address" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="f-status">Status</label>
        <select id="f-status" name="status">
          <option value="">All</option><option value="online">Online</option><option value="offline">Offline</option><option value="unknown">Unknown</option>
        </select>
      </div>
      <div class="field">
        <label for="f-segment">Segment</label>
        <input id="f-segment" name="segment" list="dl-segment" placeholder="Any" autocomplete="off">
        <datalist id="dl-segment"></datalist>
      </div>
      <div class="field">
        <label for="f-model">Model</label>
        <input id="f-model" name="model" list="dl-model" placeholder="Any" autocomplete="off">
        <datalist id="dl-model"></datalist>
      </div>
      <div class="field">
        <label for="f-carrier">Carrier</label>
        <input id="f-carrier" name="carrier" list="dl-carrier" placeholder="Any" autocomplete="off">
        <datalist id="dl-carrier"></datalist>
      </div>
      <div class="field">
        <label for="f-sort">Sort</label>
        <select id="f-sort" name="sort">
          <option value="">Locker ID</option><option value="attention">Needs attention</option>
          <option value="doors">Open doors</option><option value="free">Free cells</option>
        </select>
      </div>
      <button type="button" class="btn-quiet" id="f-clear">Clear</button>
    </form>
    <div class="list-meta"><span id="count" role="status" aria-live="polite"></span><span class="muted" id="updated"></span></div>
    <div class="table fleet-table" role="table" aria-label="Lockers" id="table">
      <div class="tr thead" role="row">
        <span role="columnheader" class="c-id">Locker</span>
        <span role="columnheader" class="c-status">Status</span>
        <span role="columnheader" class="c-addr">Address</span>
        <span role="columnheader" class="c-seg">Segments</span>
        <span role="columnheader" class="c-fw">Firmware</span>
        <span role="columnheader" class="c-power">Power</span>
        <span role="columnheader" class="c-doors">Doors</span>
        <span role="columnheader" class="c-free" title="Free cells by size: S · M · L · XL">Free S·M·L·XL</span>
      </div>
      <div class="vlist" id="vlist" role="rowgroup" tabindex="0" aria-label="Locker rows">
        <div class="vspace" id="vspace"><div class="vrows" id="vrows"></div></div>
        <p class="empty" id="empty" hidden></p>
      </div>
    </div>
  </section>`;

  const $ = (s) => root.querySelector(s);
  const form = $('#filters');
  const vlist = $('#vlist');
  const vspace = $('#vspace');
  const vrows = $('#vrows');
  for (const k of FILTERS) if (form.elements[k]) form.elements[k].value = f[k];

  const rows = new Map(); // id → row
  let order = []; // every id, natural order
  let visible = []; // rows shown, in display order
  let summary = null;
  let needSort = false;
  let needFilter = true;
  let summaryDirty = true;
  let optionsDirty = true;
  let changed = new Set();
  let updatedAt = null;
  let loaded = false;
  let mode = 'stream'; // or 'poll'
  let pollTimer = null;
  let polling = false;
  let pollAgain = false;
  let snapshotTimer = null;
  let gone = false;
  const slots = [];
  const models = new Map();

  const frame = new Frame(render);

  // --- data in -------------------------------------------------------------

  function normalize(r) {
    const out = { ...r };
    if (!out.segments && typeof out.segment === 'string') out.segments = out.segment ? [out.segment] : [];
    delete out.segment;
    return out;
  }

  function replaceAll(list) {
    rows.clear();
    for (const r of list || []) rows.set(r.id, normalize(r));
    needSort = needFilter = optionsDirty = true;
    changed = new Set();
  }

  function merge(list) {
    for (const r of list || []) {
      if (r.deleted) { // left the filter, or the locker is gone
        if (rows.delete(r.id)) needSort = true;
        continue;
      }
      const old = rows.get(r.id);
      if (!old) needSort = true;
      rows.set(r.id, old ? { ...old, ...normalize(r) } : normalize(r));
      changed.add(r.id);
    }
    needFilter = true;
  }

  function onMessage(m) {
    if (m.type === 'snapshot' && m.rows) {
      clearTimeout(snapshotTimer);
      stopPolling();
      replaceAll(m.rows);
      loaded = true;
    } else if (m.type === 'delta' && m.rows) {
      merge(m.rows);
    } else {
      return;
    }
    if (m.summary) { summary = m.summary; summaryDirty = true; }
    updatedAt = new Date();
    frame.schedule();
  }

  function onState(s) {
    if (gone) return;
    if (s.state === 'live') {
      ctx.setLive(s);
      clearTimeout(snapshotTimer);
      snapshotTimer = setTimeout(() => { if (!loaded) startPolling(); }, SNAPSHOT_WAIT_MS);
    } else if (s.state === 'retrying' && !s.everOpened) {
      startPolling();
    } else if (mode !== 'poll') {
      ctx.setLive(s);
    }
  }

  function filterForServer() {
    const out = {};
    for (const k of ['q', 'segment', 'model', 'carrier', 'status']) if (f[k]) out[k] = f[k];
    return out;
  }

  function watch() {
    ctx.stream().watch({ watch: 'fleet', filter: filterForServer() });
  }

  // REST fallback.
  function startPolling() {
    if (gone) return;
    if (mode !== 'poll') {
      mode = 'poll';
      ctx.setLive({ state: 'polling' });
    }
    if (!pollTimer && !polling) poll();
  }

  function stopPolling() {
    if (mode === 'poll') ctx.setLive({ state: 'live' });
    mode = 'stream';
    clearTimeout(pollTimer);
    pollTimer = null;
  }

  async function poll() {
    clearTimeout(pollTimer);
    pollTimer = null;
    if (polling) { pollAgain = true; return; }
    polling = true;
    try {
      await loadREST();
    } catch (e) {
      if (!gone) showError(e.message);
    }
    polling = false;
    if (pollAgain) { pollAgain = false; poll(); return; }
    if (!gone && mode === 'poll') pollTimer = setTimeout(poll, POLL_MS);
  }

  async function loadREST() {
    const flt = filterForServer();
    const sumP = get('/api/v1/fleet/summary' + query(flt)).catch(() => null);
    const list = [];
    const limit = 500;
    for (let offset = 0; offset < 20000; offset += limit) {
      const page = await get('/api/v1/lockers' + query({ ...flt, limit, offset }));
      const got = page.lockers || [];
      list.push(...got);
      const total = page.total ?? got.length;
      if (got.length < limit || list.length >= total) break;
    }
    if (gone || mode !== 'poll') return;
    replaceAll(list.map((l) => ({ ...(rows.get(l.id) || {}), ...l })));
    summary = await sumP;
    summaryDirty = true;
    loaded = true;
    updatedAt = new Date();
    frame.schedule();
  }

  async function loadModels() {
    try {
      const res = await get('/api/v1/models');
      for (const m of res.models || []) models.set(m.id, m);
      optionsDirty = true;
      frame.schedule();
    } catch { /* optional */ }
  }

  // --- filters ---------------------------------------------------------------

  function matches(r) {
    if (f.status && statusOf(r) !== f.status) return false;
    if (f.segment && Array.isArray(r.segments) && !r.segments.includes(f.segment)) return false;
    if (f.model && typeof r.model === 'string' && r.model !== f.model) return false;
    if (f.carrier && Array.isArray(r.carriers) && !r.carriers.includes(f.carrier)) return false;
    if (f.q) {
      const q = f.q.toLowerCase();
      if (!r.id.toLowerCase().includes(q) && !(r.address || '').toLowerCase().includes(q)) return false;
    }
    return true;
  }

  const freeTotal = (r) => SIZES.reduce((a, s) => a + (r.free_cells?.[s] || 0), 0);
  const attention = (r) => (statusOf(r) === 'offline' ? 4 : 0) + (r.on_battery ? 2 : 0) + ((r.open_doors || 0) > 0 ? 1 : 0);
  const sorters = {
    attention: (a, b) => attention(b) - attention(a),
    doors: (a, b) => (b.open_doors || 0) - (a.open_doors || 0),
    free: (a, b) => freeTotal(b) - freeTotal(a),
  };

  function refilter() {
    if (needSort) {
      order = [...rows.keys()].sort(naturalCompare);
      needSort = false;
    }
    const out = [];
    for (const id of order) {
      const r = rows.get(id);
      if (matches(r)) out.push(r);
    }
    const s = sorters[f.sort];
    if (s) out.sort(s); // stable: ties keep the ID order
    visible = out;
    needFilter = false;
  }

  function syncHash() {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (f[k]) q.set(k, f[k]);
    const s = q.toString();
    history.replaceState(null, '', s ? `#/?${s}` : '#/');
  }

  function setFilter(k, v) {
    if (f[k] === v) return;
    f[k] = v;
    syncHash();
    needFilter = true;
    vlist.scrollTop = 0;
    frame.schedule();
    if (k === 'sort') return; // client-side only
    if (mode === 'poll') pollSoon();
    else watch();
  }
  const pollSoon = debounce(() => poll(), 250);
  const setQ = debounce((v) => setFilter('q', v), 150);

  form.addEventListener('submit', (e) => e.preventDefault());
  form.addEventListener('input', (e) => {
    const t = e.target;
    if (t.name === 'q') setQ(t.value.trim());
    else if (t.tagName === 'INPUT') setFilter(t.name, t.value.trim());
  });
  form.addEventListener('change', (e) => {
    const t = e.target;
    if (t.tagName === 'SELECT') setFilter(t.name, t.value);
  });
  $('#f-clear').addEventListener('click', () => {
    for (const k of FILTERS) { form.elements[k].value = ''; }
    for (const k of FILTERS) f[k] = '';
    syncHash();
    needFilter = true;
    frame.schedule();
    if (mode === 'poll') pollSoon(); else watch();
  });

  $('#cards').addEventListener('click', (e) => {
    const b = e.target.closest('[data-status]');
    if (!b) return;
    const v = f.status === b.dataset.status ? '' : b.dataset.status;
    form.elements.status.value = v;
    setFilter('status', v);
  });

  vrows.addEventListener('click', (e) => {
    if (e.target.closest('a')) return;
    const row = e.target.closest('[data-locker]');
    if (row) location.hash = `#/lockers/${encodeURIComponent(row.dataset.locker)}`;
  });
  vlist.addEventListener('scroll', () => frame.schedule(), { passive: true });
  const onResize = () => frame.schedule();
  window.addEventListener('resize', onResize);
  const clock = setInterval(() => { if (updatedAt) $('#updated').textContent = `Updated ${fmtTime(updatedAt.toISOString())}`; }, 1000);

  // --- render ----------------------------------------------------------------

  function computedSummary() {
    // Without the hub's summary (REST fallback against an older hub) count what we have.
    const s = { lockers: rows.size, online: 0, offline: 0, unknown: 0, on_battery: 0, open_doors: 0, free_cells: {} };
    for (const r of rows.values()) {
      s[statusOf(r)]++;
      if (r.on_battery) s.on_battery++;
      s.open_doors += r.open_doors || 0;
      for (const z of SIZES) if (r.free_cells?.[z] != null) s.free_cells[z] = (s.free_cells[z] || 0) + r.free_cells[z];
    }
    return s;
  }

  function renderCards() {
    const s = summary || (loaded ? computedSummary() : null);
    const v = (k) => (s ? num(s[k]) : '…');
    const fc = s?.free_cells || {};
    const active = (st) => (f.status === st ? ' active' : '');
    $('#cards').innerHTML = `
      <div class="card stat"><span class="k">Lockers</span><span class="v" id="sum-lockers">${v('lockers')}</span></div>
      <button type="button" class="card stat ok${active('online')}" data-status="online" aria-pressed="${f.status === 'online'}" title="Show only online lockers"><span class="k"><span class="dot on" aria-hidden="true"></span>Online</span><span class="v" id="sum-online">${v('online')}</span></button>
      <button type="button" class="card stat bad${active('offline')}" data-status="offline" aria-pressed="${f.status === 'offline'}" title="Show only offline lockers"><span class="k"><span class="dot off" aria-hidden="true"></span>Offline</span><span class="v" id="sum-offline">${v('offline')}</span>${s && s.unknown ? `<span class="sub">${num(s.unknown)} unknown</span>` : ''}</button>
      <div class="card stat warn"><span class="k">On battery</span><span class="v" id="sum-battery">${v('on_battery')}</span></div>
      <div class="card stat warn"><span class="k">Open doors</span><span class="v" id="sum-doors">${v('open_doors')}</span></div>
      <div class="card stat free"><span class="k">Free cells</span><span class="sizes" id="sum-free">${SIZES.map((z) => `<span><b>${s ? num(fc[z] ?? 0) : '…'}</b> ${z}</span>`).join('')}</span></div>`;
  }

  function renderOptions() {
    const seg = new Set();
    const car = new Set();
    for (const r of rows.values()) {
      for (const x of r.segments || []) seg.add(x);
      for (const x of r.carriers || []) car.add(x);
    }
    const opts = (set) => [...set].sort(naturalCompare).slice(0, 500).map((x) => `<option value="${esc(x)}"></option>`).join('');
    $('#dl-segment').innerHTML = opts(seg);
    $('#dl-carrier').innerHTML = opts(car);
    $('#dl-model').innerHTML = [...models.values()].sort((a, b) => naturalCompare(a.id, b.id))
      .map((m) => `<option value="${esc(m.id)}">${esc([m.manufacturer, m.name].filter(Boolean).join(' '))}</option>`).join('');
  }

  function statusBadge(r) {
    const st = statusOf(r);
    if (st === 'online') return '<span class="badge on"><span class="dot on" aria-hidden="true"></span>Online</span>';
    if (st === 'offline') return '<span class="badge off"><span class="dot off" aria-hidden="true"></span>Offline</span>';
    return '<span class="badge unk"><span class="dot unk" aria-hidden="true"></span>Unknown</span>';
  }

  function rowHTML(r) {
    // A locker that never reported (twin version 0) has no door, power or
    // cell state yet: show that, not zeros.
    if (r.version === 0) r = { ...r, open_doors: null, on_battery: null, free_cells: null };
    const doors = r.open_doors == null ? '<span class="muted">—</span>'
      : r.open_doors > 0 ? `<span class="badge warn">${num(r.open_doors)} open</span>` : '<span class="muted">All closed</span>';
    const power = r.on_battery == null ? '<span class="muted">—</span>'
      : r.on_battery ? '<span class="badge warn">On battery</span>' : '<span class="muted">Mains</span>';
    const free = r.free_cells ? SIZES.map((z) => `<span title="${z}">${r.free_cells[z] ?? 0}</span>`).join('<span class="sep">·</span>') : '<span class="muted">—</span>';
    const segs = (r.segments || []).map((s) => `<span class="chip">${esc(s)}</span>`).join('');
    const id = esc(r.id);
    return `<span role="cell" class="c-id"><a href="#/lockers/${encodeURIComponent(r.id)}">${id}</a></span>`
      + `<span role="cell" class="c-status">${statusBadge(r)}</span>`
      + `<span role="cell" class="c-addr" title="${esc(r.address)}">${esc(r.address) || '<span class="muted">—</span>'}</span>`
      + `<span role="cell" class="c-seg">${segs || '<span class="muted">—</span>'}</span>`
      + `<span role="cell" class="c-fw">${esc(r.firmware) || '<span class="muted">—</span>'}</span>`
      + `<span role="cell" class="c-power">${power}</span>`
      + `<span role="cell" class="c-doors">${doors}</span>`
      + `<span role="cell" class="c-free num">${free}</span>`;
  }

  function renderList() {
    const n = visible.length;
    vspace.style.height = `${n * ROW_H}px`;
    const top = vlist.scrollTop;
    const h = vlist.clientHeight || 600;
    const start = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const end = Math.min(n, Math.ceil((top + h) / ROW_H) + OVERSCAN);
    vrows.style.transform = `translateY(${start * ROW_H}px)`;
    const count = end - start;
    for (let i = 0; i < count; i++) {
      const r = visible[start + i];
      let el = slots[i];
      if (!el) {
        el = document.createElement('div');
        el.setAttribute('role', 'row');
        slots[i] = el;
        vrows.appendChild(el);
      }
      const markup = rowHTML(r);
      const cls = `tr${statusOf(r) === 'offline' ? ' is-off' : ''}${(r.open_doors || 0) > 0 ? ' has-open' : ''}`;
      if (el._html !== markup || el.dataset.locker !== r.id) {
        const flash = el.dataset.locker === r.id && changed.has(r.id);
        el.innerHTML = markup;
        el._html = markup;
        el.dataset.locker = r.id;
        el.dataset.presence = statusOf(r);
        el.setAttribute('aria-rowindex', String(start + i + 2));
        el.className = cls;
        if (flash) { el.classList.remove('flash'); void el.offsetWidth; el.classList.add('flash'); }
      }
    }
    while (slots.length > count) slots.pop().remove();
    $('#table').setAttribute('aria-rowcount', String(n + 1));

    const empty = $('#empty');
    if (!loaded) {
      empty.textContent = 'Loading lockers…';
    } else if (rows.size === 0 && !Object.values(filterForServer()).length) {
      empty.innerHTML = 'No lockers registered yet. Add one with <code>hubctl locker add</code> or import a CSV.';
    } else if (n === 0) {
      empty.textContent = 'No lockers match these filters.';
    }
    empty.hidden = loaded && n > 0;
    $('#count').textContent = loaded ? `${num(n)} locker${n === 1 ? '' : 's'}` : '';
  }

  function render() {
    if (gone) return;
    if (needFilter || needSort) refilter();
    if (summaryDirty) { renderCards(); summaryDirty = false; }
    if (optionsDirty) { renderOptions(); optionsDirty = false; }
    renderList();
    changed = new Set();
    if (updatedAt) $('#updated').textContent = `Updated ${fmtTime(updatedAt.toISOString())}`;
  }

  function showError(msg) {
    const empty = $('#empty');
    empty.textContent = msg;
    empty.hidden = false;
  }

  renderCards();
  frame.schedule();
  const release = ctx.stream().use({ onMessage, onState });
  watch();
  loadModels();

  return {
    unmount() {
      gone = true;
      release();
      clearTimeout(pollTimer);
      clearTimeout(snapshotTimer);
      clearInterval(clock);
      window.removeEventListener('resize', onResize);
    },
  };
}
