// One locker: identity, power, firmware, its cell grid (door, lock and
// occupancy live, in colour and in words), connectivity history, events and
// telemetry charts (telemetry.js).
//
// Data: GET /api/v1/lockers/{id}, …/cells (layout), …/twin, …/events,
// …/connectivity, and the stream ({"watch":"locker","id":…}), whose snapshot
// and deltas carry the whole twin. Without the stream the page polls.
import { get, APIError } from './api.js';
import { Frame } from './stream.js';
import { mountTelemetry } from './telemetry.js';
import { mountLockerAlarms } from './alarms.js';
import { mountLockerVideo } from './video.js';
import { stateBadge, mountService } from './parcels.js';
import { esc, fmtTime, fmtDuration, since, humanize, naturalCompare, debounce, SIZES } from './util.js';

const POLL_MS = 5000;
const DAY = 24 * 3600 * 1000;

export function mountLocker(root, ctx, id) {
  document.title = `${id} · lockerhub`;
  const base = `/api/v1/lockers/${encodeURIComponent(id)}`;
  let info = null;
  let layout = null; // [{name,size,col,row}]
  let twin = null;
  let reserved = new Map(); // cell → parcel id: reserved for a delivery, not free for loading
  let events = null;
  let periods = null;
  let gone = false;
  let mode = 'stream';
  let pollTimer = null;
  let stopAlarms = () => {};
  let stopVideo = () => {};
  let dirty = { head: true, cells: true, conn: true, events: true };
  let lastConn = '';
  let lastVersion = -1;
  let telemetry = null;

  root.innerHTML = `
  <section class="locker">
    <a class="back" href="#/">← Fleet</a>
    <div id="l-head" class="l-head"><h1>${esc(id)}</h1></div>
    <p class="error" id="l-error" role="alert" hidden></p>
    <div class="facts" id="l-facts"></div>
    <div class="l-body">
      <section class="panel cells-panel" aria-labelledby="h-cells">
        <div class="panel-h"><h2 id="h-cells">Cells</h2><span class="muted" id="cells-sum"></span></div>
        <ul class="legend" aria-label="Legend">
          <li><span class="swatch free"></span>Free</li>
          <li><span class="swatch occupied"></span>Occupied</li>
          <li><span class="swatch open"></span>Door open</li>
          <li><span class="swatch jammed"></span>Lock jammed</li>
          <li><span class="swatch unknown"></span>Not reported</li>
        </ul>
        <div class="cellgrid" id="cells" role="list" aria-label="Cells of ${esc(id)}"></div>
      </section>
      <div class="side">
        ${ctx.can('GET /api/v1/parcels') ? `<section class="panel" aria-labelledby="h-parcels" id="l-parcels-panel">
          <div class="panel-h"><h2 id="h-parcels">Parcels</h2><span class="muted">open: reserved, deposited, expired</span>
            <a href="#/parcels?locker=${encodeURIComponent(id)}" id="l-parcels-all">Parcels at this locker</a></div>
          <div id="l-parcels"><p class="muted">Loading…</p></div>
        </section>` : ''}
        ${ctx.can('POST /api/v1/lockers/{id}/cells/{cell}/service-open') ? `<section class="panel" aria-labelledby="h-service" id="l-service-panel">
          <div class="panel-h"><h2 id="h-service">Service access</h2></div>
          <div id="l-service"></div>
        </section>` : ''}
        ${ctx.can('POST /api/v1/lockers/{id}/video/whep') ? `<section class="panel" aria-labelledby="h-video">
          <div class="panel-h"><h2 id="h-video">Camera</h2><span class="muted">live over WebRTC</span></div>
          <div id="l-video"></div>
        </section>` : ''}
        ${ctx.can('GET /api/v1/lockers/{id}/alarms') ? `<section class="panel" aria-labelledby="h-alarms">
          <div class="panel-h"><h2 id="h-alarms">Alarms</h2><span class="muted">newest first</span>
            <a href="#/alarms">All alarms</a></div>
          <div id="l-alarms"><p class="muted">Loading…</p></div>
        </section>` : ''}
        <section class="panel" aria-labelledby="h-conn">
          <div class="panel-h"><h2 id="h-conn">Connectivity</h2></div>
          <div id="conn"></div>
        </section>
        <section class="panel" aria-labelledby="h-events">
          <div class="panel-h"><h2 id="h-events">Events</h2><span class="muted">newest first</span></div>
          <ol class="timeline" id="events"></ol>
        </section>
      </div>
    </div>
    <section class="panel tele" id="telemetry" aria-labelledby="h-tele"></section>
  </section>`;
  const $ = (s) => root.querySelector(s);
  if ($('#l-service')) mountService($('#l-service'), id);
  const frame = new Frame(render);

  // --- data ------------------------------------------------------------------

  async function loadInfo() {
    try {
      info = await get(base);
      dirty.head = dirty.cells = dirty.conn = true;
    } catch (e) {
      if (e instanceof APIError && e.status === 404) {
        showError(`There is no locker ${id}.`);
        stop();
        return false;
      }
      showError(e.message);
    }
    frame.schedule();
    return true;
  }
  async function loadLayout() {
    try {
      const res = await get(`${base}/cells`);
      layout = res.cells || null;
      dirty.cells = true;
      frame.schedule();
    } catch { /* older hub: the twin's cells are the layout */ }
  }
  async function loadTwin() {
    try { setTwin(await get(`${base}/twin`)); } catch { /* not yet reported */ }
  }
  async function loadEvents() {
    try {
      const res = await get(`${base}/events?limit=100`);
      events = res.events || [];
    } catch (e) {
      events = events || { error: e.status === 404 ? 'No event history on this hub yet.' : e.message };
    }
    dirty.events = true;
    frame.schedule();
  }
  async function loadConnectivity() {
    try {
      const res = await get(`${base}/connectivity?limit=50`);
      periods = res.periods || [];
    } catch (e) {
      periods = periods || { error: e.status === 404 ? null : e.message };
    }
    dirty.conn = true;
    frame.schedule();
  }
  // The locker's open parcels (reserved, deposited, expired), newest first,
  // at most 20 of each state; the link shows them all.
  const OPEN = ['reserved', 'deposited', 'expired'];
  async function loadParcels() {
    const el = $('#l-parcels');
    if (gone || !el) return;
    try {
      // Every reserved parcel (a locker has at most a few hundred cells), to
      // mark their cells; 20 of the other states for the panel.
      const pages = await Promise.all(OPEN.map((st) => get(`/api/v1/parcels?locker=${encodeURIComponent(id)}&state=${st}&limit=${st === 'reserved' ? 1000 : 20}`)));
      if (gone) return;
      reserved = new Map((pages[0].parcels || []).filter((p) => p.cell).map((p) => [p.cell, p.id]));
      dirty.cells = true;
      frame.schedule();
      pages[0] = { ...pages[0], parcels: (pages[0].parcels || []).slice(0, 20) };
      const list = pages.flatMap((p) => p.parcels || []).sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
      const total = pages.reduce((n, p) => n + (p.total || 0), 0);
      el.innerHTML = list.length === 0 ? '<p class="muted">No open parcels.</p>' : `
        <table class="periods l-parcels" aria-label="Open parcels of ${esc(id)}">
          <thead><tr><th scope="col">Parcel</th><th scope="col">State</th><th scope="col">Cell</th><th scope="col">Reference</th></tr></thead>
          <tbody>${list.map((p) => `<tr data-parcel="${esc(p.id)}"><td><a href="#/parcels/${encodeURIComponent(p.id)}">${esc(p.id)}</a></td>
            <td>${stateBadge(p)}</td><td>${esc(p.cell || '—')} <span class="muted">${esc(p.size)}</span></td><td>${esc(p.reference || '—')}</td></tr>`).join('')}</tbody>
        </table>${total > list.length ? `<p class="muted">${total - list.length} more: see all parcels at this locker.</p>` : ''}`;
    } catch (e) {
      if (!gone) el.innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  }
  const parcelsSoon = debounce(loadParcels, 500);
  const eventsSoon = debounce(() => { loadEvents(); parcelsSoon(); }, 300);
  const connSoon = debounce(loadConnectivity, 500);
  const infoSoon = debounce(loadInfo, 300);

  function setTwin(t) {
    if (!t || (t.locker_id && t.locker_id !== id)) return;
    const v = t.version ?? 0;
    if (twin && v < (twin.version ?? 0)) return; // never backwards
    twin = t;
    dirty.head = dirty.cells = true;
    const c = t.connectivity ? `${t.connectivity.online}|${t.connectivity.since}` : '';
    if (c !== lastConn) {
      if (lastConn) infoSoon();
      lastConn = c;
      dirty.conn = true;
    }
    // Any later message may come with new events or a connection change (a
    // quick reconnect can leave "online" as it was): fetch both, debounced.
    if (lastVersion >= 0) { eventsSoon(); connSoon(); }
    lastVersion = v;
    frame.schedule();
  }

  const handlers = {
    onMessage(m) { if (m.twin) setTwin(m.twin); },
    onState(s) {
      if (gone) return;
      if (s.state === 'retrying' && !s.everOpened) startPolling();
      else if (s.state === 'live') { stopPolling(); ctx.setLive(s); }
      else if (mode !== 'poll') ctx.setLive(s);
    },
  };
  let release = () => {};

  function startPolling() {
    if (mode === 'poll' || gone) return;
    mode = 'poll';
    ctx.setLive({ state: 'polling' });
    const tick = async () => {
      await Promise.all([loadTwin(), loadEvents(), loadConnectivity(), loadInfo()]);
      if (!gone && mode === 'poll') pollTimer = setTimeout(tick, POLL_MS);
    };
    pollTimer = setTimeout(tick, POLL_MS);
  }
  function stopPolling() {
    mode = 'stream';
    clearTimeout(pollTimer);
  }
  function stop() {
    gone = true;
    release();
    clearTimeout(pollTimer);
  }

  // --- derived state -----------------------------------------------------------

  function online() {
    const c = twin?.connectivity;
    const on = c && typeof c.online === 'boolean' ? c.online : info ? info.online : null;
    let at = c?.since;
    if (!at && info && on === info.online) at = on ? info.connected_at : info.disconnected_at;
    return { online: on, since: at };
  }

  function cellList() {
    const reported = twin?.reported?.cells || {};
    const byName = new Map();
    for (const c of layout || []) byName.set(c.name, { name: c.name, size: c.size, col: c.col, row: c.row, hold: c.hold });
    for (const [name, c] of Object.entries(reported)) {
      const old = byName.get(name) || { name };
      byName.set(name, { ...old, ...c, size: old.size || c.size, reported: true });
    }
    if (!layout && info?.cells && byName.size === 0) {
      // Nothing reported yet: columns of ten, as the hub names cells by default.
      for (let i = 0; i < info.cells; i++) {
        const name = colName(Math.floor(i / 10) + 1) + String((i % 10) + 1).padStart(2, '0');
        byName.set(name, { name });
      }
    }
    for (const c of byName.values()) {
      if (c.col == null || c.row == null) {
        const m = /^([A-Z]+)(\d+)$/.exec(c.name);
        c.col = m ? colNumber(m[1]) : 0;
        c.row = m ? Number(m[2]) : 0;
      }
    }
    return [...byName.values()];
  }

  // --- render ------------------------------------------------------------------

  // clockText shows the hub's estimate of the locker's clock offset (DESIGN
  // decision 15): commands' not_after and pickup codes are checked on it.
  function clockText() {
    const ms = twin?.connectivity?.clock_offset_ms;
    if (ms == null) return '';
    const s = Math.abs(ms) / 1000;
    const word = Math.abs(ms) < 500 ? 'in time' : `${s.toFixed(1)} s ${ms > 0 ? 'ahead' : 'behind'}`;
    const cls = Math.abs(ms) > 5000 ? 'badge warn' : 'muted';
    return `<span class="${cls}" id="f-clock" title="The locker's clock against the hub's">Clock ${esc(word)}</span>`;
  }

  function renderHead() {
    const o = online();
    const badge = o.online === true ? `<span class="badge on big"><span class="dot on" aria-hidden="true"></span>Online</span>`
      : o.online === false ? `<span class="badge off big"><span class="dot off" aria-hidden="true"></span>Offline</span>`
        : `<span class="badge unk big"><span class="dot unk" aria-hidden="true"></span>Unknown</span>`;
    const segs = (info?.segments || (info?.segment ? [info.segment] : [])).map((s) => `<span class="chip">${esc(s)}</span>`).join('');
    const carriers = (info?.carriers || []).map((s) => `<span class="chip alt">${esc(s)}</span>`).join('');
    $('#l-head').innerHTML = `
      <h1>${esc(id)}</h1> <span id="l-status">${badge}</span>
      ${info && info.enabled === false ? '<span class="badge off">Disabled</span>' : ''}
      <p class="sub">${esc(info?.address || '')}${info?.time_zone ? ` <span class="muted">· ${esc(info.time_zone)}</span>` : ''}${info?.lat != null && info?.lon != null ? ` <span class="muted">· ${Number(info.lat).toFixed(4)}, ${Number(info.lon).toFixed(4)}</span>` : ''}</p>
      <p class="sub">${info?.model ? `<span class="muted">Model</span> ${esc(info.model)} ` : ''}${segs ? `<span class="muted">Segments</span> ${segs} ` : ''}${carriers ? `<span class="muted">Carriers</span> ${carriers}` : ''}</p>`;

    const r = twin?.reported || {};
    const p = r.power || {};
    const mains = p.mains === true ? '<span class="badge on">Mains on</span>' : p.mains === false ? '<span class="badge warn">On battery</span>' : '<span class="muted">Not reported</span>';
    const batt = p.battery_v != null ? `${Number(p.battery_v).toFixed(1)} V` : '—';
    const desired = twin?.desired?.version;
    const applied = r.desired_version;
    let cfg = 'none set';
    if (desired != null && desired > 0) {
      cfg = applied != null && applied >= desired ? `v${desired} <span class="badge on">applied</span>` : `v${desired} <span class="badge warn">pending</span> <span class="muted">(locker has v${applied ?? 0})</span>`;
    }
    const delta = twin?.delta && Object.keys(twin.delta).length ? `<span class="muted">Differs: ${esc(Object.keys(twin.delta).join(', '))}</span>` : '';
    $('#l-facts').innerHTML = `
      <div class="card fact"><span class="k">Connection</span><span class="v" id="f-conn">${o.online === true ? 'Online' : o.online === false ? 'Offline' : 'Unknown'}</span><span class="muted">${o.since ? `since ${esc(fmtTime(o.since))} (${esc(since(o.since))})` : ''}</span>${clockText()}</div>
      <div class="card fact"><span class="k">Power</span><span class="v" id="f-power">${mains}</span><span class="muted">Battery ${esc(batt)}</span></div>
      <div class="card fact"><span class="k">Firmware</span><span class="v" id="f-fw">${esc(r.firmware || '—')}</span><span class="muted">Config ${cfg}</span></div>
      <div class="card fact"><span class="k">Twin</span><span class="v">${twin ? `v${esc(twin.version)}` : '—'}</span><span class="muted">${r.updated_at ? `updated ${esc(fmtTime(r.updated_at))}` : 'no report yet'} ${delta}</span></div>`;
  }

  function cellHTML(c) {
    const known = c.reported || c.door || c.lock || c.occupied != null;
    const classes = ['cell'];
    const door = c.door === 'open' ? 'Door open' : c.door === 'closed' ? 'Closed' : '—';
    const lock = c.lock === 'jammed' ? '⚠ Jammed' : c.lock === 'unlocked' ? 'Unlocked' : c.lock === 'locked' ? 'Locked' : '—';
    const held = reserved.has(c.name);
    const occ = c.occupied === true ? 'Occupied' : c.occupied === false ? (c.hold === 'returns' ? 'For returns' : held ? 'Reserved' : 'Free') : '—';
    if (!known) classes.push('unknown');
    if (c.occupied === true) classes.push('occupied'); else if (c.occupied === false && !held) classes.push('free');
    if (held) classes.push('reserved');
    if (c.door === 'open') classes.push('open');
    if (c.lock === 'jammed') classes.push('jammed');
    const label = `${c.name}${c.size ? `, size ${c.size}` : ''}: ${known ? `${door.toLowerCase()}, ${lock.replace('⚠ ', '').toLowerCase()}, ${occ.toLowerCase()}` : 'not reported'}`;
    return `<div class="${classes.join(' ')}" role="listitem" data-cell="${esc(c.name)}" data-door="${esc(c.door || '')}" data-lock="${esc(c.lock || '')}" aria-label="${esc(label)}">
      <div class="cell-h"><b>${esc(c.name)}</b>${c.size ? `<span class="size">${esc(c.size)}</span>` : ''}</div>
      <div class="cell-s s-door">${door}</div><div class="cell-s s-more"><span class="s-lock">${lock}</span><span class="s-occ">${occ}</span></div></div>`;
  }

  function renderCells() {
    const cells = cellList();
    const cols = new Map();
    for (const c of cells) {
      if (!cols.has(c.col)) cols.set(c.col, []);
      cols.get(c.col).push(c);
    }
    const html = [...cols.keys()].sort((a, b) => a - b).map((k) => {
      const list = cols.get(k).sort((a, b) => a.row - b.row || naturalCompare(a.name, b.name));
      return `<div class="cellcol" role="presentation">${list.map(cellHTML).join('')}</div>`;
    }).join('');
    const grid = $('#cells');
    if (grid._html !== html) { grid.innerHTML = html || '<p class="muted">No cells known yet.</p>'; grid._html = html; }
    const open = cells.filter((c) => c.door === 'open').length;
    const occ = cells.filter((c) => c.occupied === true).length;
    const jam = cells.filter((c) => c.lock === 'jammed').length;
    const free = {};
    let held = 0;
    let booked = 0;
    for (const c of cells) {
      if (c.occupied !== false || c.door === 'open' || c.lock === 'jammed' || !c.size) continue;
      if (c.hold === 'returns') held++;
      else if (reserved.has(c.name)) booked++;
      else free[c.size] = (free[c.size] || 0) + 1;
    }
    const freeTxt = SIZES.filter((z) => free[z]).map((z) => `${z} ${free[z]}`).join(' · ');
    $('#cells-sum').textContent = `${cells.length} cells · ${open} open · ${occ} occupied${jam ? ` · ${jam} jammed` : ''}${freeTxt ? ` · free ${freeTxt}` : ''}${booked ? ` · ${booked} reserved` : ''}${held ? ` · ${held} held for returns` : ''}`;
  }

  function renderConn() {
    const el = $('#conn');
    if (!periods || periods.error === null) {
      const o = online();
      el.innerHTML = `<p>${o.online === true ? 'Online' : o.online === false ? 'Offline' : 'Unknown'}${o.since ? ` since ${esc(fmtTime(o.since))}` : ''}.</p><p class="muted">No connection history on this hub yet.</p>`;
      return;
    }
    if (periods.error) { el.innerHTML = `<p class="error">${esc(periods.error)}</p>`; return; }
    const now = Date.now();
    const from = now - DAY;
    let onMs = 0;
    let knownMs = 0;
    let earliest = now;
    const segs = [];
    for (const p of periods) {
      const a = Math.max(from, new Date(p.from).getTime());
      const b = Math.min(now, p.to ? new Date(p.to).getTime() : now);
      if (b <= a) continue;
      earliest = Math.min(earliest, a);
      knownMs += b - a;
      if (p.online) onMs += b - a;
      segs.push(`<span class="seg ${p.online ? 'on' : 'off'}" data-left="${((a - from) / DAY) * 100}" data-width="${((b - a) / DAY) * 100}" title="${p.online ? 'Online' : 'Offline'} ${esc(fmtTime(p.from))} – ${p.to ? esc(fmtTime(p.to)) : 'now'}"></span>`);
    }
    // Of the time the history covers: a locker registered an hour ago has no 23 h of outage.
    const pct = knownMs ? Math.round((onMs / knownMs) * 1000) / 10 : 0;
    const span = earliest > from ? `since ${fmtTime(new Date(earliest).toISOString())}` : 'of the last 24 h';
    const rowsHTML = periods.slice(0, 50).map((p) => {
      const end = p.to ? new Date(p.to).getTime() : now;
      return `<tr><td>${p.online ? '<span class="badge on"><span class="dot on" aria-hidden="true"></span>Online</span>' : '<span class="badge off"><span class="dot off" aria-hidden="true"></span>Offline</span>'}</td><td>${esc(fmtTime(p.from))}</td><td>${p.to ? esc(fmtTime(p.to)) : '<b>now</b>'}</td><td class="num">${esc(fmtDuration(end - new Date(p.from).getTime()))}</td></tr>`;
    }).join('');
    el.innerHTML = `
      <div class="strip" role="img" aria-label="Online ${pct}% ${esc(span)}">${segs.join('')}</div>
      <div class="strip-axis"><span>24 h ago</span><span>Online ${pct}% ${esc(span)}</span><span>now</span></div>
      ${rowsHTML ? `<div class="table-scroll"><table class="periods"><thead><tr><th>State</th><th>From</th><th>To</th><th class="num">Duration</th></tr></thead><tbody>${rowsHTML}</tbody></table></div>` : '<p class="muted">No periods recorded yet.</p>'}`;
    placeSegments(el);
  }

  function placeSegments(el) {
    // Positions go through the CSSOM: the page's CSP allows no inline styles.
    for (const seg of el.querySelectorAll('.seg')) {
      seg.style.left = `${seg.dataset.left}%`;
      seg.style.width = `${seg.dataset.width}%`;
    }
  }

  function renderEvents() {
    const el = $('#events');
    if (!events) { el.innerHTML = '<li class="muted">Loading…</li>'; return; }
    if (events.error) { el.innerHTML = `<li class="muted">${esc(events.error)}</li>`; return; }
    if (!events.length) { el.innerHTML = '<li class="muted">No events yet.</li>'; return; }
    el.innerHTML = events.map((e) => {
      const alert = /forced|tamper|jam|power_lost/.test(e.type || '');
      return `<li class="${alert ? 'alert' : ''}" data-event="${esc(e.type)}">
        <time datetime="${esc(e.ts)}" title="received ${esc(fmtTime(e.received_at))}">${esc(fmtTime(e.ts))}</time>
        <span class="ev">${alert ? '⚠ ' : ''}${esc(humanize(e.type))}${e.cell ? ` <span class="chip">${esc(e.cell)}</span>` : ''}</span>
        <span class="cause muted">${esc(cause(e))}</span></li>`;
    }).join('');
  }

  function render() {
    if (gone) return;
    if (dirty.head) renderHead();
    if (dirty.cells) renderCells();
    if (dirty.conn) renderConn();
    if (dirty.events) renderEvents();
    dirty = { head: false, cells: false, conn: false, events: false };
  }

  function showError(msg) {
    const el = $('#l-error');
    el.textContent = msg;
    el.hidden = false;
  }

  // "since" texts age: refresh the head every 30 s.
  const ageTimer = setInterval(() => { dirty.head = true; frame.schedule(); }, 30000);

  frame.schedule();
  loadInfo().then((ok) => {
    if (!ok) return;
    loadLayout();
    loadTwin();
    loadEvents();
    loadConnectivity();
    loadParcels();
    if (!gone && $('#l-alarms')) stopAlarms = mountLockerAlarms($('#l-alarms'), id);
    if (!gone && $('#l-video')) stopVideo = mountLockerVideo($('#l-video'), id);
    if (!gone) telemetry = mountTelemetry($('#telemetry'), id, base);
    release = ctx.stream().use(handlers);
    ctx.stream().watch({ watch: 'locker', id });
  });

  return { unmount() { stop(); clearInterval(ageTimer); telemetry?.unmount(); stopAlarms(); stopVideo(); } };
}

function cause(e) {
  const c = e.cause || '';
  const [kind, ref] = c.includes(':') ? [c.slice(0, c.indexOf(':')), c.slice(c.indexOf(':') + 1)] : [c, ''];
  switch (kind) {
    case 'command': return `by command ${ref}`;
    case 'code': return `by pickup code (parcel ${ref})`;
    case 'service': return `by technician ${ref}`;
    case '': return e.type === 'door_opened' ? 'no cause given' : '';
    default: return c;
  }
}

function colName(n) {
  let s = '';
  while (n > 0) { n--; s = String.fromCharCode(65 + (n % 26)) + s; n = Math.floor(n / 26); }
  return s;
}

function colNumber(s) {
  let n = 0;
  for (const ch of s) n = n * 26 + (ch.charCodeAt(0) - 64);
  return n;
}
