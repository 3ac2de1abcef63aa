// Carriers: each transport company's share of the network and its use —
// the lockers it may use, its segments, and per cell size the cells its
// open parcels hold against its quotas ("used / quota"), then each quota in
// a shared locker with what is held and still free for the carrier. Admins
// add carriers and set quotas here; a courier sees its own carrier.
import { api, get } from './api.js';
import { esc } from './util.js';

const SIZES = ['S', 'M', 'L', 'XL'];

// sizeCell shows "used" or, with quotas of the size, "used / quota".
function sizeCell(s) {
  if (!s) return '<span class="muted">0</span>';
  if (s.quota === undefined) return esc(String(s.used));
  const extra = s.used !== s.quota_used ? ` <span class="muted" title="cells held in all its lockers">(${esc(String(s.used))} in all)</span>` : '';
  const full = s.quota_used >= s.quota ? ' cr-full' : '';
  return `<span class="cr-quota${full}">${esc(String(s.quota_used))} / ${esc(String(s.quota))}</span>${extra}`;
}

export function mountCarriers(root, ctx) {
  document.title = 'Carriers · lockerhub';
  let gone = false;
  const admin = ctx.can('POST /api/v1/carriers');
  root.innerHTML = `
  <section class="carriers">
    <h1 class="page-title">Carriers</h1>
    ${admin ? `
    <form class="filters card users-add" id="cr-add" aria-label="Add a carrier">
      <div class="field"><label for="cr-id">Id</label><input id="cr-id" name="id" required autocomplete="off" spellcheck="false"></div>
      <div class="field"><label for="cr-name">Name</label><input id="cr-name" name="name" autocomplete="off"></div>
      <div class="field"><label for="cr-contact">Contact</label><input id="cr-contact" name="contact" autocomplete="off"></div>
      <button type="submit" class="btn">Add carrier</button>
    </form>
    <form class="filters card users-add" id="cr-quota" aria-label="Set a quota">
      <div class="field"><label for="q-carrier">Carrier</label><input id="q-carrier" name="carrier" required autocomplete="off" spellcheck="false"></div>
      <div class="field"><label for="q-locker">Locker</label><input id="q-locker" name="locker" required autocomplete="off" spellcheck="false"></div>
      ${SIZES.map((s) => `<div class="field"><label for="q-${s}">${s} cells</label><input id="q-${s}" name="${s}" type="number" min="0" inputmode="numeric"></div>`).join('')}
      <button type="submit" class="btn">Set quota</button>
    </form>` : ''}
    <div id="cr-msg" role="status" aria-live="polite"></div>
    <table class="audit-table carriers-table" aria-label="Carriers">
      <thead><tr><th scope="col">Carrier</th><th scope="col">Lockers</th><th scope="col">Segments</th>${SIZES.map((s) => `<th scope="col">${s} used / quota</th>`).join('')}</tr></thead>
      <tbody id="cr-rows"><tr><td colspan="${3 + SIZES.length}" class="muted">Loading…</td></tr></tbody>
    </table>
    <h2 class="page-title">Quotas in shared lockers</h2>
    <table class="audit-table quotas-table" aria-label="Quotas">
      <thead><tr><th scope="col">Carrier</th><th scope="col">Locker</th><th scope="col">Size</th><th scope="col">Quota</th><th scope="col">Used</th><th scope="col">Free for it</th></tr></thead>
      <tbody id="q-rows"></tbody>
    </table>
  </section>`;
  const rows = root.querySelector('#cr-rows');
  const qrows = root.querySelector('#q-rows');
  const msg = root.querySelector('#cr-msg');
  function say(kind, h) { msg.innerHTML = h ? `<p class="${kind}">${h}</p>` : ''; }

  async function load() {
    try {
      const { carriers } = await get('/api/v1/carriers/usage');
      if (gone) return;
      rows.innerHTML = carriers.map((c) => `
        <tr data-carrier="${esc(c.id)}">
          <th scope="row">${esc(c.name)}${c.name !== c.id ? ` <span class="muted">${esc(c.id)}</span>` : ''}</th>
          <td class="cr-lockers">${esc(String(c.lockers))}</td>
          <td>${c.segments.length ? esc(c.segments.join(', ')) : '<span class="muted">none</span>'}</td>
          ${SIZES.map((s) => `<td data-size="${s}">${sizeCell(c.sizes[s])}</td>`).join('')}
        </tr>`).join('') || `<tr><td colspan="${3 + SIZES.length}" class="muted">No carriers.</td></tr>`;
      const quotas = carriers.flatMap((c) => c.quotas.map((q) => ({ ...q, carrier: c.id })));
      qrows.innerHTML = quotas.map((q) => `
        <tr data-carrier="${esc(q.carrier)}" data-locker="${esc(q.locker)}" data-size="${esc(q.size)}">
          <td>${esc(q.carrier)}</td><td><a href="#/lockers/${encodeURIComponent(q.locker)}">${esc(q.locker)}</a></td><td>${esc(q.size)}</td>
          <td>${esc(String(q.cells))}</td><td class="q-used">${esc(String(q.used))}</td><td class="q-free">${esc(String(q.free))}</td>
        </tr>`).join('') || '<tr><td colspan="6" class="muted">No quotas: carriers use whole lockers and segments.</td></tr>';
    } catch (e) {
      if (!gone) rows.innerHTML = `<tr><td colspan="${3 + SIZES.length}"><p class="error">${esc(e.message)}</p></td></tr>`;
    }
  }

  if (admin) {
    const add = root.querySelector('#cr-add');
    add.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = { id: add.elements.id.value.trim() };
      if (add.elements.name.value.trim()) body.name = add.elements.name.value.trim();
      if (add.elements.contact.value.trim()) body.contact = add.elements.contact.value.trim();
      try {
        const c = await api('POST', '/api/v1/carriers', body);
        add.reset();
        say('notice', `Carrier <strong>${esc(c.name)}</strong> added.`);
        await load();
      } catch (e) { say('error', esc(e.message)); }
    });
    const qf = root.querySelector('#cr-quota');
    qf.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const cells = {};
      for (const s of SIZES) if (qf.elements[s].value !== '') cells[s] = Number(qf.elements[s].value);
      const carrier = qf.elements.carrier.value.trim();
      const locker = qf.elements.locker.value.trim();
      try {
        if (Object.keys(cells).length === 0) await api('DELETE', `/api/v1/carriers/${encodeURIComponent(carrier)}/quotas/${encodeURIComponent(locker)}`);
        else await api('PUT', `/api/v1/carriers/${encodeURIComponent(carrier)}/quotas/${encodeURIComponent(locker)}`, { cells });
        say('notice', `Quota of <strong>${esc(carrier)}</strong> at ${esc(locker)} ${Object.keys(cells).length ? 'set' : 'removed'}.`);
        await load();
      } catch (e) { say('error', esc(e.message)); }
    });
  }

  load();
  const timer = setInterval(load, 10000);
  return { unmount() { gone = true; clearInterval(timer); } };
}
