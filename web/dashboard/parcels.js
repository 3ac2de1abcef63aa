// Parcels (docs/parcels.md): the list, searched by locker, state, tracking
// number, barcode, recipient phone or e-mail, carrier and creation date
// (#/parcels?locker=…&state=…&tracking=…&barcode=…&phone=…&email=…&carrier=…&from=…&to=…&offset=…),
// a page of 100 at a time, newest first; and one parcel (#/parcels/ID) with
// its history (who, where, what was behind each step), its declared contents
// and, for admins and technicians, "Edit", "Move to another cell" and
// "Cancel parcel". The pickup
// code is never shown: the API never returns it.
//
// Data: GET /api/v1/parcels, GET /api/v1/parcels/{id}, PATCH /api/v1/parcels/{id},
// POST …/{id}/move, POST …/{id}/cancel.
import { api, get, query, APIError } from './api.js';
import { esc, fmtTime, humanize } from './util.js';
import { mountParcelNotifications } from './parcelnotifications.js';

const FILTERS = ['locker', 'state', 'tracking', 'barcode', 'phone', 'email', 'carrier', 'from', 'to', 'reference'];
const PAGE = 100;
export const PARCEL_STATES = ['reserved', 'deposited', 'picked_up', 'cancelled', 'expired', 'returned', 'reservation_expired'];
const CANCELLABLE = new Set(['reserved', 'deposited']);

// stateBadge is a parcel's state as a badge with its name in words.
export function stateBadge(p, big = false) {
  const cls = { reserved: 'warn', deposited: 'on', picked_up: 'unk', cancelled: 'off', expired: 'off', returned: 'unk', reservation_expired: 'off' }[p.state] || 'unk';
  const ret = p.to_return && p.state !== 'returned' ? ' · to return' : '';
  return `<span class="badge ${cls}${big ? ' big' : ''} p-state" data-state="${esc(p.state)}">${esc(humanize(p.state))}${ret}</span>`;
}

// money writes minor units with two decimals and the currency.
function money(amount, currency) {
  return `${(amount / 100).toFixed(2)} ${currency || ''}`.trim();
}

function recipient(r) {
  const parts = [r?.phone, r?.email].filter(Boolean);
  return parts.length ? parts.join(' · ') : '—';
}

export function mountParcels(root, ctx, params) {
  document.title = 'Parcels · lockerhub';
  const f = {};
  for (const k of FILTERS) f[k] = (params.get(k) || '').trim();
  let offset = Math.max(0, Number.parseInt(params.get('offset') || '0', 10) || 0);
  let total = 0;
  let list = [];
  let gone = false;
  let seq = 0; // the answer of the latest request only

  root.innerHTML = `
  <section class="audit parcels">
    <h1 class="page-title">Parcels</h1>
    ${ctx.can('GET /api/v1/returns') ? '<p class="p-links"><a href="#/returns" id="p-returns-link">To collect →</a></p>' : ''}
    <form class="filters" id="p-filters" role="search" aria-label="Search parcels">
      <div class="field">
        <label for="p-locker">Locker</label>
        <input id="p-locker" name="locker" placeholder="Any" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="p-state">State</label>
        <select id="p-state" name="state"><option value="">Any</option>
          ${PARCEL_STATES.map((s) => `<option value="${esc(s)}">${esc(humanize(s))}</option>`).join('')}</select>
      </div>
      <div class="field grow">
        <label for="p-tracking">Tracking number</label>
        <input id="p-tracking" name="tracking" type="search" placeholder="Parcel ID or reference" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="p-barcode">Barcode</label>
        <input id="p-barcode" name="barcode" type="search" placeholder="Any" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="p-phone">Recipient phone</label>
        <input id="p-phone" name="phone" type="search" placeholder="Any" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="p-email">Recipient e-mail</label>
        <input id="p-email" name="email" type="search" placeholder="Any" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="p-carrier">Carrier</label>
        <input id="p-carrier" name="carrier" placeholder="Any" autocomplete="off" spellcheck="false">
      </div>
      <div class="field">
        <label for="p-from">Created from</label>
        <input id="p-from" name="from" type="date">
      </div>
      <div class="field">
        <label for="p-to">Created before</label>
        <input id="p-to" name="to" type="date">
      </div>
      <input type="hidden" id="p-reference" name="reference">
      <button type="button" class="btn-quiet" id="p-clear">Clear</button>
    </form>
    <div class="list-meta"><span id="p-count" role="status" aria-live="polite"></span></div>
    <div id="p-error"></div>
    <div class="p-scroll">
    <table class="audit-table parcels-table" aria-label="Parcels">
      <thead><tr><th scope="col">Parcel</th><th scope="col">State</th><th scope="col">Locker · cell</th><th scope="col" class="p-c-size">Size</th>
        <th scope="col">Reference</th><th scope="col">Recipient</th><th scope="col">Created</th><th scope="col" class="p-c-dep">Deposited</th><th scope="col">Expires</th></tr></thead>
      <tbody id="p-rows"><tr><td colspan="9" class="muted">Loading…</td></tr></tbody>
    </table>
    </div>
    <div class="pager">
      <button type="button" class="btn-quiet" id="p-prev" disabled>← Previous</button>
      <button type="button" class="btn-quiet" id="p-next" disabled>Next →</button>
    </div>
  </section>`;

  const $ = (s) => root.querySelector(s);
  const form = $('#p-filters');
  for (const k of FILTERS) form.elements[k].value = f[k];

  function syncHash() {
    const h = `#/parcels${query({ ...f, offset: offset || '' })}`;
    if (location.hash !== h) history.replaceState(null, '', h);
  }

  async function load() {
    const my = ++seq;
    try {
      const p = await get(`/api/v1/parcels${query({ ...f, limit: PAGE, offset })}`);
      if (gone || my !== seq) return;
      list = p.parcels || [];
      total = p.total ?? list.length;
      if (list.length === 0 && offset > 0 && total > 0) { // the page went away (a reload after changes)
        offset = Math.floor((total - 1) / PAGE) * PAGE;
        syncHash();
        load();
        return;
      }
      $('#p-error').innerHTML = '';
      render();
    } catch (e) {
      if (gone || my !== seq) return;
      $('#p-error').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
      $('#p-count').textContent = '';
      $('#p-rows').innerHTML = '<tr><td colspan="9" class="muted">The parcels could not be loaded.</td></tr>';
      shown = '';
      $('#p-prev').disabled = $('#p-next').disabled = true;
    }
  }

  let shown = ''; // the rows' HTML last put in the table
  function render() {
    const tbody = $('#p-rows');
    const filtered = FILTERS.some((k) => f[k]);
    $('#p-count').textContent = list.length === 0 ? (filtered ? 'No parcels match.' : 'No parcels yet.')
      : `Showing ${(offset + 1).toLocaleString()}–${(offset + list.length).toLocaleString()} of ${total.toLocaleString()}, newest first`;
    $('#p-prev').disabled = offset <= 0;
    $('#p-next').disabled = offset + list.length >= total;
    if (list.length === 0) {
      tbody.innerHTML = `<tr><td colspan="9" class="muted">${filtered ? 'No parcels match these filters.' : 'There are no parcels yet.'}</td></tr>`;
      shown = '';
      return;
    }
    const html = list.map((p) => `
      <tr data-parcel="${esc(p.id)}">
        <td class="nowrap"><a href="#/parcels/${encodeURIComponent(p.id)}" class="p-id">${esc(p.id)}</a></td>
        <td>${stateBadge(p)}</td>
        <td class="nowrap"><a href="#/lockers/${encodeURIComponent(p.locker_id)}">${esc(p.locker_id)}</a>${p.cell ? ` · ${esc(p.cell)}` : ''}<span class="p-size-inline muted"> · ${esc(p.size)}</span></td>
        <td class="p-c-size">${esc(p.size)}</td>
        <td class="p-ref">${esc(p.reference || '—')}</td>
        <td class="p-recipient">${esc(recipient(p.recipient))}</td>
        <td class="nowrap" title="${esc(p.created_at)}">${esc(fmtTime(p.created_at))}</td>
        <td class="nowrap p-c-dep" title="${esc(p.deposited_at || '')}">${esc(fmtTime(p.deposited_at))}</td>
        <td class="nowrap" title="${esc(p.expires_at || '')}">${esc(fmtTime(p.expires_at))}</td>
      </tr>`).join('');
    // The same rows again (a filter typed on to the same result, a reload):
    // leave the DOM alone, so a click that is under way is not lost.
    if (html !== shown) tbody.innerHTML = shown = html;
  }

  function apply() {
    for (const k of FILTERS) f[k] = form.elements[k].value.trim();
    offset = 0;
    syncHash();
    load();
  }

  let timer;
  form.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(apply, 300); });
  form.addEventListener('change', () => { clearTimeout(timer); apply(); });
  form.addEventListener('submit', (e) => { e.preventDefault(); clearTimeout(timer); apply(); });
  $('#p-clear').addEventListener('click', () => {
    for (const k of FILTERS) form.elements[k].value = '';
    clearTimeout(timer);
    apply();
  });
  $('#p-prev').addEventListener('click', () => { offset = Math.max(0, offset - PAGE); syncHash(); load(); });
  $('#p-next').addEventListener('click', () => { if (offset + list.length < total) { offset += PAGE; syncHash(); load(); } });

  syncHash();
  load();
  return { unmount() { gone = true; clearTimeout(timer); } };
}

export function mountParcel(root, ctx, id) {
  document.title = `Parcel ${id} · lockerhub`;
  const base = `/api/v1/parcels/${encodeURIComponent(id)}`;
  const role = ctx.user()?.role;
  const mayCancel = (role === 'admin' || role === 'technician') && ctx.can('POST /api/v1/parcels/{id}/cancel');
  const mayEdit = ctx.can('PATCH /api/v1/parcels/{id}');
  const mayMove = ctx.can('POST /api/v1/parcels/{id}/move');
  let gone = false;
  let parcel = null;

  root.innerHTML = `
  <section class="locker parcel">
    <a class="back" href="#/parcels">← Parcels</a>
    <div class="l-head" id="p-head"><h1>Parcel ${esc(id)}</h1></div>
    <div id="p-msg" role="status" aria-live="polite"></div>
    <div class="facts" id="p-facts"></div>
    <div class="l-body p-body">
      <section class="panel" aria-labelledby="h-history">
        <div class="panel-h"><h2 id="h-history">History</h2><span class="muted">oldest first</span></div>
        <ol class="timeline p-history" id="p-history"><li class="muted">Loading…</li></ol>
      </section>
      <div class="side" id="p-side"></div>
    </div>
    <div id="p-payments"></div>
    <div id="p-notifications"></div>
  </section>`;
  const $ = (s) => root.querySelector(s);

  function say(kind, text) { $('#p-msg').innerHTML = text ? `<p class="${kind}"${kind === 'error' ? ' role="alert"' : ''}>${esc(text)}</p>` : ''; }

  async function load() {
    try {
      const p = await get(base);
      if (gone) return;
      parcel = p;
      render();
    } catch (e) {
      if (gone) return;
      if (e instanceof APIError && e.status === 404) {
        $('#p-head').innerHTML = `<h1>Parcel ${esc(id)}</h1>`;
        say('error', `There is no parcel ${id}.`);
        $('#p-history').innerHTML = '';
        return;
      }
      say('error', e.message);
    }
  }

  function render() {
    const p = parcel;
    $('#p-head').innerHTML = `<h1>Parcel ${esc(p.id)}</h1> ${stateBadge(p, true)}
      <p class="sub muted">${esc(p.size)} parcel at <a href="#/lockers/${encodeURIComponent(p.locker_id)}" id="p-locker-link">${esc(p.locker_id)}</a>${p.cell ? `, cell ${esc(p.cell)}` : ''}</p>`;
    const fact = (k, v, cls = '') => `<div class="fact card ${cls}"><span class="k">${esc(k)}</span><span class="v">${v}</span></div>`;
    const r = p.recipient || {};
    $('#p-facts').innerHTML = [
      fact('Locker · cell', `<a href="#/lockers/${encodeURIComponent(p.locker_id)}">${esc(p.locker_id)}</a>${p.cell ? ` · ${esc(p.cell)}` : ''}`),
      fact('Reference', esc(p.reference || '—')),
      fact('Carrier', esc(p.carrier || '—')),
      fact('Barcode', `<span class="p-barcode">${esc(p.barcode || '—')}</span>`),
      fact('Contents', `<span class="p-contents">${esc(p.contents || '—')}</span>`
        + (p.declared_value ? `<span class="muted p-value"> · declared ${esc((p.declared_value / 100).toFixed(2))} ${esc(p.currency || '')}</span>` : '')),
      ...(p.move_from ? [fact('Moving', `<span class="p-moving">${esc(p.move_from)} → ${esc(p.cell)}</span><span class="muted"> · ${p.move_stage === 'from' ? `cell ${esc(p.move_from)} is open: take the parcel out and close it` : `cell ${esc(p.cell)} is open: put the parcel in and close it`}</span>`)] : []),
      ...(p.amount_due ? [fact('Amount due', `<span class="p-due">${esc(money(p.amount_due.amount, p.amount_due.currency))}</span><span class="muted"> · paid at the locker before pickup</span>`)] : []),
      fact('Recipient', `${esc(r.name || '')}${r.name ? '<br>' : ''}<span class="p-contact">${esc(recipient(r))}</span>`),
      fact('Created', `${esc(fmtTime(p.created_at))}<span class="muted"> by ${esc(p.created_by || '—')}</span>`),
      ...(p.reserved_until && (p.state === 'reserved' || p.state === 'reservation_expired') ? [fact('Drop-off by', `<span class="p-reserved-until">${esc(fmtTime(p.reserved_until))}</span>${p.state === 'reservation_expired' ? '<span class="muted"> · not dropped off in time: reservation expired, cell released</span>' : ''}`)] : []),
      fact('Deposited', esc(fmtTime(p.deposited_at))),
      fact('Expires', `${esc(fmtTime(p.expires_at))}<span class="muted"> · storage ${esc(p.storage_hours)} h</span>`),
      fact(p.state === 'picked_up' ? 'Picked up' : p.state === 'returned' ? 'Returned' : p.cancelled_at ? 'Cancelled' : 'Updated',
        esc(fmtTime(p.picked_up_at || p.returned_at || p.cancelled_at || p.updated_at))
        + (p.cancel_reason ? `<span class="muted p-reason"> · ${esc(p.cancel_reason)}</span>` : '')
        + (p.to_return && p.state !== 'returned' ? '<span class="muted"> · marked for return</span>' : '')),
    ].join('');
    const steps = p.history || [];
    $('#p-history').innerHTML = steps.length === 0 ? '<li class="muted">No history recorded.</li>' : steps.map((s) => `
      <li>
        <time datetime="${esc(s.at)}" title="${esc(new Date(s.at).toLocaleString())}">${esc(fmtTime(s.at))}</time>
        <span class="ev">${s.from && s.from !== s.to ? `${esc(humanize(s.from))} → ` : ''}${esc(humanize(s.to))}</span>
        <span class="cause muted">by ${esc(s.by || '—')}${s.locker ? ` · at ${esc(s.locker)}${s.cell ? ` ${esc(s.cell)}` : ''}` : ''}${s.note ? ` · ${esc(s.note)}` : ''}</span>
        ${s.source ? `<span class="src muted p-source">${esc(s.source)}</span>` : ''}
      </li>`).join('');
    renderPayments();
    renderSide();
  }

  // Charges at the locker's POS terminal and refunds, each approved one
  // with its fiscal receipt (docs/parcels.md "Payment at the locker").
  function renderPayments() {
    const pays = parcel.payments || [];
    if (!parcel.amount_due && pays.length === 0) { $('#p-payments').innerHTML = ''; return; }
    const receipt = (rc) => {
      if (!rc) return '—';
      let t = `${rc.type} ${rc.state}`;
      if (rc.number) t += ` · ${rc.number}`;
      if (rc.state === 'pending' && rc.attempts > 0) t += ` · ${rc.attempts} attempts${rc.last_error ? `: ${rc.last_error}` : ''}`;
      return esc(t);
    };
    $('#p-payments').innerHTML = `
      <section class="panel p-notifications" aria-labelledby="h-payments">
        <div class="panel-h"><h2 id="h-payments">Payments</h2><span class="muted">charges at the locker and refunds, oldest first</span></div>
        ${pays.length === 0 ? '<p class="muted p-nopay">Not charged yet: the locker charges it when the recipient types the code.</p>' : `
        <div class="p-scroll"><table class="audit-table p-payments" aria-label="Payments"><thead><tr><th>Payment</th><th>Kind</th><th>Amount</th><th>State</th><th>Terminal</th><th>Receipt</th><th>When</th></tr></thead>
        <tbody>${pays.map((x) => `<tr class="pay-${esc(x.state)}">
          <td class="mono">${esc(x.id)}</td>
          <td>${esc(x.kind)}${x.refund_of ? ` <span class="muted">of ${esc(x.refund_of)}</span>` : ''}</td>
          <td>${esc(money(x.amount, x.currency))}</td>
          <td class="p-pay-state">${esc(x.state)}${x.reason ? `<span class="muted"> · ${esc(x.reason)}</span>` : ''}</td>
          <td class="mono">${esc(x.terminal_reference || '—')}</td>
          <td class="p-receipt">${receipt(x.receipt)}</td>
          <td>${esc(fmtTime(x.decided_at || x.created_at))}</td></tr>`).join('')}</tbody></table></div>`}
      </section>`;
  }

  function renderSide() {
    const side = $('#p-side');
    const links = `<section class="panel" aria-labelledby="h-links"><div class="panel-h"><h2 id="h-links">Locker</h2></div>
      <p class="p-links"><a href="#/lockers/${encodeURIComponent(parcel.locker_id)}">Locker ${esc(parcel.locker_id)}</a> ·
      <a href="#/parcels${query({ locker: parcel.locker_id })}">Parcels at this locker</a></p></section>`;
    const open = !['picked_up', 'returned', 'reservation_expired'].includes(parcel.state) && !(parcel.state === 'cancelled' && !parcel.to_return);
    let html = '';
    if (mayEdit && open) {
      const r = parcel.recipient || {};
      const stored = parcel.state === 'reserved' || parcel.state === 'deposited';
      const sizeFree = parcel.state === 'reserved' && !parcel.dropoff_at;
      html += `
      <section class="panel" aria-labelledby="h-edit">
        <div class="panel-h"><h2 id="h-edit">Edit</h2></div>
        <form class="p-edit" id="p-edit">
          <label for="p-e-name">Recipient name</label>
          <input id="p-e-name" name="name" maxlength="200" value="${esc(r.name || '')}" autocomplete="off">
          <label for="p-e-phone">Recipient phone</label>
          <input id="p-e-phone" name="phone" value="${esc(r.phone || '')}" autocomplete="off">
          <label for="p-e-email">Recipient e-mail</label>
          <input id="p-e-email" name="email" type="email" value="${esc(r.email || '')}" autocomplete="off">
          ${stored ? `<label for="p-e-hours">Storage period (hours, longer only)</label>
          <input id="p-e-hours" name="storage_hours" type="number" min="${esc(parcel.storage_hours)}" value="${esc(parcel.storage_hours)}">` : ''}
          ${sizeFree ? `<label for="p-e-size">Size</label>
          <select id="p-e-size" name="size">${['S', 'M', 'L', 'XL'].map((z) => `<option${z === parcel.size ? ' selected' : ''}>${z}</option>`).join('')}</select>` : ''}
          <button type="submit" class="btn" id="p-edit-btn">Save changes</button>
        </form>
      </section>`;
    }
    if (mayMove && open && parcel.state !== 'reserved' && !parcel.move_from && !parcel.collect_at) {
      html += `
      <section class="panel" aria-labelledby="h-move">
        <div class="panel-h"><h2 id="h-move">Move to another cell</h2></div>
        <form class="p-move" id="p-move">
          <label for="p-m-cell">Free cell of size ${esc(parcel.size)}</label>
          <input id="p-m-cell" name="cell" placeholder="B02" autocomplete="off" spellcheck="false" required>
          <p class="muted p-hint">Cell ${esc(parcel.cell)} opens first; once it is closed empty, the new cell opens for the parcel.</p>
          <button type="submit" class="btn" id="p-move-btn">Move parcel</button>
        </form>
      </section>`;
    }
    if (!mayCancel || !CANCELLABLE.has(parcel.state)) {
      side.innerHTML = html + links;
      bindForms();
      return;
    }
    side.innerHTML = html + `
      <section class="panel" aria-labelledby="h-cancel">
        <div class="panel-h"><h2 id="h-cancel">Cancel</h2></div>
        <form class="p-cancel" id="p-cancel">
          <label for="p-reason">Reason</label>
          <input id="p-reason" name="reason" maxlength="500" placeholder="Why the parcel is cancelled" autocomplete="off">
          <p class="muted p-hint">${parcel.state === 'deposited' ? 'The parcel is in the cell: it is marked for return and the cell stays held until it is collected.' : 'The reserved cell is released.'}</p>
          <button type="submit" class="btn btn-danger" id="p-cancel-btn">Cancel parcel</button>
        </form>
      </section>${links}`;
    $('#p-cancel').addEventListener('submit', cancel);
    bindForms();
  }

  function bindForms() {
    $('#p-edit')?.addEventListener('submit', edit);
    $('#p-move')?.addEventListener('submit', move);
  }

  async function edit(ev) {
    ev.preventDefault();
    const form = ev.target;
    const body = {};
    const r = parcel.recipient || {};
    const rec = { name: form.elements.name.value.trim(), phone: form.elements.phone.value.trim(), email: form.elements.email.value.trim() };
    if (rec.name !== (r.name || '') || rec.phone !== (r.phone || '') || rec.email !== (r.email || '')) body.recipient = rec;
    const hours = form.elements.storage_hours ? Number(form.elements.storage_hours.value) : parcel.storage_hours;
    if (hours !== parcel.storage_hours) body.storage_hours = hours;
    const size = form.elements.size ? form.elements.size.value : parcel.size;
    if (size !== parcel.size) body.size = size;
    if (Object.keys(body).length === 0) { say('notice', 'Nothing changed.'); return; }
    const btn = $('#p-edit-btn');
    btn.disabled = true;
    try {
      parcel = await api('PATCH', base, body);
      if (gone) return;
      say('notice', `Parcel ${id} is updated.`);
      await load();
    } catch (e) {
      if (gone) return;
      say('error', e.code ? `${e.message} (${e.code})` : e.message);
      btn.disabled = false;
    }
  }

  async function move(ev) {
    ev.preventDefault();
    const cell = $('#p-m-cell').value.trim().toUpperCase();
    if (!cell || !window.confirm(`Move parcel ${id} from ${parcel.cell} to ${cell}? Cell ${parcel.cell} opens now.`)) return;
    const btn = $('#p-move-btn');
    btn.disabled = true;
    try {
      const out = await api('POST', `${base}/move`, { cell });
      if (gone) return;
      say('notice', `Moving parcel ${id} to ${cell}: cell ${out.parcel.move_from} is opening.`);
      await load();
    } catch (e) {
      if (gone) return;
      say('error', e.code ? `${e.message} (${e.code})` : e.message);
      btn.disabled = false;
    }
  }

  async function cancel(ev) {
    ev.preventDefault();
    const reason = $('#p-reason').value.trim();
    if (!window.confirm(`Cancel parcel ${id}?${reason ? ` Reason: ${reason}` : ''}`)) return;
    const btn = $('#p-cancel-btn');
    btn.disabled = true;
    try {
      parcel = await api('POST', `${base}/cancel`, { reason });
      if (gone) return;
      say('notice', `Parcel ${id} is cancelled.`);
      await load();
    } catch (e) {
      if (gone) return;
      say('error', e.message);
      btn.disabled = false;
      if (e instanceof APIError && e.status === 409) load(); // show the state that refused it
    }
  }

  load();
  const notes = mountParcelNotifications($('#p-notifications'), id);
  return { unmount() { gone = true; notes.unmount(); } };
}

// mountService is the locker page's "Service access" panel for technicians:
// open any cell in service mode (a cell.open command created by
// service:<user>, audited), or get a one-time code for a cell to type at the
// locker's keypad (shown once, valid 15 minutes).
// Data: POST /api/v1/lockers/{id}/cells/{cell}/service-open, POST /api/v1/lockers/{id}/service-codes.
export function mountService(el, lockerID) {
  const base = `/api/v1/lockers/${encodeURIComponent(lockerID)}`;
  el.innerHTML = `
    <form class="p-service" id="l-service-form">
      <label for="l-service-cell">Cell</label>
      <input id="l-service-cell" name="cell" placeholder="A01" autocomplete="off" spellcheck="false" required>
      <div class="p-service-actions">
        <button type="submit" class="btn" id="l-service-open">Open in service mode</button>
        <button type="button" class="btn-quiet" id="l-service-code">One-time code</button>
      </div>
      <p class="muted p-hint">Recorded as service:you and audited.</p>
      <div id="l-service-msg" role="status" aria-live="polite"></div>
    </form>`;
  const $ = (s) => el.querySelector(s);
  const say = (kind, html) => { $('#l-service-msg').innerHTML = `<p class="${kind}"${kind === 'error' ? ' role="alert"' : ''}>${html}</p>`; };
  const cell = () => $('#l-service-cell').value.trim().toUpperCase();
  $('#l-service-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const c = cell();
    if (!c || !window.confirm(`Open cell ${c} of ${lockerID} in service mode?`)) return;
    try {
      const cmd = await api('POST', `${base}/cells/${encodeURIComponent(c)}/service-open`);
      say('notice', `Cell ${esc(c)} is opening (command <span class="l-service-cmd">${esc(cmd.id)}</span>, ${esc(humanize(cmd.state || 'pending'))}).`);
    } catch (e) {
      say('error', esc(e.code ? `${e.message} (${e.code})` : e.message));
    }
  });
  $('#l-service-code').addEventListener('click', async () => {
    const c = cell();
    if (!c) { $('#l-service-cell').reportValidity(); return; }
    try {
      const sc = await api('POST', `${base}/service-codes`, { cell: c });
      say('notice', `Code for cell ${esc(sc.cell)}: <strong class="l-service-code">${esc(sc.code)}</strong>, once, until ${esc(fmtTime(sc.expires_at))}.`);
    } catch (e) {
      say('error', esc(e.code ? `${e.message} (${e.code})` : e.message));
    }
  });
}

// mountReturns is #/returns?locker=…&carrier=…: what couriers collect
// (expired, cancelled after deposit, customer returns dropped off), grouped
// by locker and carrier, each with "Collect" (the cell opens by command; the
// door closed with the cell empty makes it returned).
// Data: GET /api/v1/returns, POST /api/v1/parcels/{id}/collect.
export function mountReturns(root, ctx, params) {
  document.title = 'To collect · lockerhub';
  const f = { locker: (params.get('locker') || '').trim(), carrier: (params.get('carrier') || '').trim() };
  const mayCollect = ctx.can('POST /api/v1/parcels/{id}/collect');
  let gone = false;
  root.innerHTML = `
  <section class="audit parcels returns">
    <a class="back" href="#/parcels">← Parcels</a>
    <h1 class="page-title">To collect</h1>
    <form class="filters" id="r-filters" role="search" aria-label="Filter returns">
      <div class="field"><label for="r-locker">Locker</label><input id="r-locker" name="locker" placeholder="Any" autocomplete="off"></div>
      <div class="field"><label for="r-carrier">Carrier</label><input id="r-carrier" name="carrier" placeholder="Any" autocomplete="off"></div>
    </form>
    <div id="r-msg" role="status" aria-live="polite"></div>
    <div id="r-groups"><p class="muted">Loading…</p></div>
  </section>`;
  const $ = (s) => root.querySelector(s);
  const form = $('#r-filters');
  form.elements.locker.value = f.locker;
  form.elements.carrier.value = f.carrier;

  async function load() {
    try {
      const out = await get(`/api/v1/returns${query(f)}`);
      if (gone) return;
      const groups = out.groups || [];
      $('#r-groups').innerHTML = groups.length === 0 ? '<p class="muted" id="r-empty">Nothing to collect.</p>' : groups.map((g) => `
        <section class="panel r-group" data-locker="${esc(g.locker_id)}" data-carrier="${esc(g.carrier)}">
          <div class="panel-h"><h2><a href="#/lockers/${encodeURIComponent(g.locker_id)}">${esc(g.locker_id)}</a> · ${esc(g.carrier || 'no carrier')}</h2>
            <span class="muted">${g.parcels.length} parcel${g.parcels.length === 1 ? '' : 's'}</span></div>
          <table class="audit-table" aria-label="To collect at ${esc(g.locker_id)}">
            <thead><tr><th scope="col">Cell</th><th scope="col">Parcel</th><th scope="col">Why</th><th scope="col">Reference</th><th scope="col"></th></tr></thead>
            <tbody>${g.parcels.map((p) => `<tr data-parcel="${esc(p.id)}">
              <td>${esc(p.cell)}</td><td><a href="#/parcels/${encodeURIComponent(p.id)}">${esc(p.id)}</a></td>
              <td>${p.kind === 'return' ? 'customer return' : esc(humanize(p.state))}</td><td>${esc(p.reference || '—')}</td>
              <td>${mayCollect ? (p.collect_at ? '<span class="muted">cell opened</span>' : `<button type="button" class="btn r-collect" data-id="${esc(p.id)}">Collect</button>`) : ''}</td></tr>`).join('')}</tbody>
          </table>
        </section>`).join('');
      for (const b of root.querySelectorAll('.r-collect')) b.addEventListener('click', () => collectOne(b));
    } catch (e) {
      if (gone) return;
      $('#r-groups').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
    }
  }

  async function collectOne(btn) {
    btn.disabled = true;
    try {
      const out = await api('POST', `/api/v1/parcels/${encodeURIComponent(btn.dataset.id)}/collect`);
      if (gone) return;
      $('#r-msg').innerHTML = `<p class="notice">Cell ${esc(out.parcel.cell)} of ${esc(out.parcel.locker_id)} is opening for ${esc(out.parcel.id)}.</p>`;
      load();
    } catch (e) {
      if (gone) return;
      $('#r-msg').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
      btn.disabled = false;
    }
  }

  let timer;
  form.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      f.locker = form.elements.locker.value.trim();
      f.carrier = form.elements.carrier.value.trim();
      history.replaceState(null, '', `#/returns${query(f)}`);
      load();
    }, 300);
  });
  load();
  return { unmount() { gone = true; clearTimeout(timer); } };
}
