// Users (admins): the dashboard's users with role, carrier and state; add a
// user (the hub makes up a password when none is given, shown once);
// disable (ends the user's sessions at once) or enable again. Below, the API
// clients of delivery services: add one (its token is shown once), set how
// long its reservations wait for the drop-off, revoke; and each client's
// webhook delivery log (every attempt) with a replay of one delivery.
import { api, get } from './api.js';
import { esc, fmtTime } from './util.js';

const ROLES = ['admin', 'technician', 'courier', 'oncall', 'viewer'];
const SCOPES = ['lockers:read', 'telemetry:read', 'commands:read', 'commands:write', 'parcels:read', 'parcels:write'];

export function mountUsers(root, ctx) {
  document.title = 'Users · lockerhub';
  let gone = false;
  root.innerHTML = `
  <section class="users">
    <h1 class="page-title">Users</h1>
    <form class="filters card users-add" id="u-add" aria-label="Add a user">
      <div class="field"><label for="u-name">Username</label>
        <input id="u-name" name="username" required autocomplete="off" spellcheck="false"></div>
      <div class="field"><label for="u-role">Role</label>
        <select id="u-role" name="role">${ROLES.map((r) => `<option value="${r}"${r === 'viewer' ? ' selected' : ''}>${r}</option>`).join('')}</select></div>
      <div class="field"><label for="u-carrier">Carrier</label>
        <input id="u-carrier" name="carrier" placeholder="Whole fleet" autocomplete="off" spellcheck="false"></div>
      <div class="field"><label for="u-password">Password</label>
        <input id="u-password" name="password" type="password" placeholder="Made up by the hub" autocomplete="new-password"></div>
      <button type="submit" class="btn" id="u-submit">Add user</button>
    </form>
    <div id="u-msg" role="status" aria-live="polite"></div>
    <table class="audit-table users-table" aria-label="Users">
      <thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Carrier</th><th scope="col">Created</th><th scope="col">State</th><th scope="col">Actions</th></tr></thead>
      <tbody id="u-rows"><tr><td colspan="6" class="muted">Loading…</td></tr></tbody>
    </table>
    <h2 class="page-title">API clients</h2>
    <form class="filters card users-add" id="c-add" aria-label="Add an API client">
      <div class="field"><label for="c-name">Name</label>
        <input id="c-name" name="name" required autocomplete="off" spellcheck="false"></div>
      <div class="field"><label for="c-carrier">Carrier</label>
        <input id="c-carrier" name="carrier" required autocomplete="off" spellcheck="false"></div>
      <fieldset class="c-scopes"><legend>Scopes</legend>
        ${SCOPES.map((sc) => `<label><input type="checkbox" name="scope" value="${sc}"${sc === 'lockers:read' ? ' checked' : ''}> ${sc}</label>`).join('')}
      </fieldset>
      <div class="field"><label for="c-hours">Reservation (h)</label>
        <input id="c-hours" name="hours" type="number" min="0" max="720" placeholder="Hub default"></div>
      <button type="submit" class="btn" id="c-submit">Add client</button>
    </form>
    <div id="c-msg" role="status" aria-live="polite"></div>
    <table class="audit-table users-table" aria-label="API clients">
      <thead><tr><th scope="col">Client</th><th scope="col">Carrier</th><th scope="col">Scopes</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Reservation</th><th scope="col">Actions</th></tr></thead>
      <tbody id="c-rows"><tr><td colspan="7" class="muted">Loading…</td></tr></tbody>
    </table>
    <section id="d-panel" class="card" hidden aria-label="Webhook deliveries">
      <h2 class="page-title" id="d-title">Webhook deliveries</h2>
      <div class="filters"><div class="field"><label for="d-state">State</label>
        <select id="d-state"><option value="">Any</option><option>pending</option><option>sent</option><option>failed</option></select></div></div>
      <div id="d-msg" role="status" aria-live="polite"></div>
      <table class="audit-table users-table" aria-label="Deliveries">
        <thead><tr><th scope="col">Delivery</th><th scope="col">Event</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Next try</th><th scope="col">Actions</th></tr></thead>
        <tbody id="d-rows"></tbody>
      </table>
    </section>
  </section>`;
  const rows = root.querySelector('#u-rows');
  const msg = root.querySelector('#u-msg');
  const form = root.querySelector('#u-add');

  function say(kind, html) { msg.innerHTML = html ? `<p class="${kind}">${html}</p>` : ''; }

  async function load() {
    try {
      const { users } = await get('/api/v1/users');
      if (gone) return;
      const me = ctx.user()?.user;
      rows.innerHTML = users.map((u) => `
        <tr data-user="${esc(u.username)}" class="${u.disabled_at ? 'u-disabled' : ''}">
          <th scope="row">${esc(u.username)}</th>
          <td>${esc(u.role)}</td>
          <td>${u.carrier ? esc(u.carrier) : '<span class="muted">whole fleet</span>'}</td>
          <td>${esc(fmtTime(u.created_at))}</td>
          <td>${u.disabled_at ? `Disabled ${esc(fmtTime(u.disabled_at))}` : 'Active'}</td>
          <td>${u.username === me ? '' : `<button type="button" class="btn-quiet" data-act="${u.disabled_at ? 'enable' : 'disable'}">${u.disabled_at ? 'Enable' : 'Disable'}</button>`}</td>
        </tr>`).join('') || '<tr><td colspan="6" class="muted">No users.</td></tr>';
    } catch (e) {
      if (!gone) rows.innerHTML = `<tr><td colspan="6"><p class="error">${esc(e.message)}</p></td></tr>`;
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { username: form.elements.username.value.trim(), role: form.elements.role.value };
    if (form.elements.carrier.value.trim()) body.carrier = form.elements.carrier.value.trim();
    if (form.elements.password.value) body.password = form.elements.password.value;
    const btn = root.querySelector('#u-submit');
    btn.disabled = true;
    try {
      const u = await api('POST', '/api/v1/users', body);
      form.reset();
      form.elements.role.value = 'viewer';
      say('notice', u.password
        ? `User <strong>${esc(u.username)}</strong> added. Password: <code class="u-password">${esc(u.password)}</code> — shown this once; hand it over safely.`
        : `User <strong>${esc(u.username)}</strong> added.`);
      await load();
    } catch (e) {
      say('error', esc(e.message));
    } finally {
      btn.disabled = false;
    }
  });

  rows.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-act]');
    if (!b) return;
    const name = b.closest('tr').dataset.user;
    const disable = b.dataset.act === 'disable';
    if (disable && !window.confirm(`Disable ${name}? Their sessions end at once.`)) return;
    b.disabled = true;
    try {
      await api('PATCH', `/api/v1/users/${encodeURIComponent(name)}`, { disabled: disable });
      say('notice', disable ? `User <strong>${esc(name)}</strong> is disabled; their sessions have ended.` : `User <strong>${esc(name)}</strong> may log in again.`);
      await load();
    } catch (e) {
      say('error', esc(e.message));
      b.disabled = false;
    }
  });

  const crows = root.querySelector('#c-rows');
  const cmsg = root.querySelector('#c-msg');
  const cform = root.querySelector('#c-add');
  function csay(kind, html) { cmsg.innerHTML = html ? `<p class="${kind}">${html}</p>` : ''; }

  async function loadClients() {
    try {
      const { clients } = await get('/api/v1/clients');
      if (gone) return;
      crows.innerHTML = clients.map((c) => `
        <tr data-client="${esc(c.name)}" class="${c.revoked_at ? 'u-disabled' : ''}">
          <th scope="row">${esc(c.name)}</th>
          <td>${esc(c.carrier)}</td>
          <td>${esc(c.scopes.join(', '))}</td>
          <td>${esc(fmtTime(c.created_at))}</td>
          <td>${c.revoked_at ? `Revoked ${esc(fmtTime(c.revoked_at))}` : esc(fmtTime(c.last_used_at))}</td>
          <td class="c-reservation">${c.reservation_hours ? `${c.reservation_hours} h` : '<span class="muted">hub default</span>'}</td>
          <td><button type="button" class="btn-quiet" data-act="deliveries">Deliveries</button>
            ${c.revoked_at ? '' : '<button type="button" class="btn-quiet" data-act="reservation">Reservation…</button> <button type="button" class="btn-quiet" data-act="revoke">Revoke</button>'}</td>
        </tr>`).join('') || '<tr><td colspan="7" class="muted">No API clients.</td></tr>';
    } catch (e) {
      if (!gone) crows.innerHTML = `<tr><td colspan="7"><p class="error">${esc(e.message)}</p></td></tr>`;
    }
  }

  // The delivery log of one client: each webhook with every attempt.
  const dpanel = root.querySelector('#d-panel');
  const drows = root.querySelector('#d-rows');
  const dmsg = root.querySelector('#d-msg');
  const dstate = root.querySelector('#d-state');
  let dclient = '';
  function dsay(kind, html) { dmsg.innerHTML = html ? `<p class="${kind}">${html}</p>` : ''; }
  function attemptText(a) {
    const n = a.replay ? `replay ${a.replay}, attempt ${a.attempt}` : `attempt ${a.attempt}`;
    const res = a.http_status ? `HTTP ${a.http_status}` : (a.error || '');
    const next = a.next_attempt_at ? `, next ${fmtTime(a.next_attempt_at)}` : '';
    return `${fmtTime(a.at)} · ${n} · ${a.outcome}${res ? ` (${res})` : ''} · ${a.duration_ms} ms${next}`;
  }
  async function loadDeliveries() {
    if (!dclient) return;
    const q = dstate.value ? `?state=${encodeURIComponent(dstate.value)}` : '';
    try {
      const { deliveries } = await get(`/api/v1/clients/${encodeURIComponent(dclient)}/webhook-deliveries${q}`);
      if (gone) return;
      drows.innerHTML = deliveries.map((d) => `
        <tr data-delivery="${esc(d.id)}">
          <th scope="row"><code>${esc(d.id)}</code></th>
          <td>${esc(d.event)}</td>
          <td>${esc(d.state)}${d.replays ? ` <span class="muted">(replayed ${d.replays}×)</span>` : ''}</td>
          <td><ol class="d-log">${d.log.map((a) => `<li class="d-${esc(a.outcome)}">${esc(attemptText(a))}</li>`).join('')}</ol>
            ${d.last_error ? `<p class="muted">${esc(d.last_error)}</p>` : ''}</td>
          <td>${d.next_attempt_at ? esc(fmtTime(d.next_attempt_at)) : ''}</td>
          <td>${d.state === 'pending' ? '' : '<button type="button" class="btn-quiet" data-act="replay">Replay</button>'}</td>
        </tr>`).join('') || '<tr><td colspan="6" class="muted">No webhooks for this client.</td></tr>';
    } catch (e) {
      if (!gone) drows.innerHTML = `<tr><td colspan="6"><p class="error">${esc(e.message)}</p></td></tr>`;
    }
  }
  dstate.addEventListener('change', loadDeliveries);
  drows.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-act="replay"]');
    if (!b) return;
    const id = b.closest('tr').dataset.delivery;
    b.disabled = true;
    try {
      await api('POST', `/api/v1/clients/${encodeURIComponent(dclient)}/webhook-deliveries/${encodeURIComponent(id)}/replay`);
      dsay('notice', `Webhook <code>${esc(id)}</code> queued again with the same id.`);
      await loadDeliveries();
    } catch (e) {
      dsay('error', esc(e.message));
      b.disabled = false;
    }
  });

  cform.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const scopes = [...cform.querySelectorAll('input[name=scope]:checked')].map((i) => i.value);
    const btn = root.querySelector('#c-submit');
    btn.disabled = true;
    try {
      const body = { name: cform.elements.name.value.trim(), carrier: cform.elements.carrier.value.trim(), scopes };
      if (cform.elements.hours.value) body.reservation_hours = Number(cform.elements.hours.value);
      const c = await api('POST', '/api/v1/clients', body);
      cform.reset();
      csay('notice', `API client <strong>${esc(c.name)}</strong> added. Token: <code class="c-token">${esc(c.token)}</code> — shown this once; the client sends it as <code>Authorization: Bearer …</code>.`);
      await loadClients();
    } catch (e) {
      csay('error', esc(e.message));
    } finally {
      btn.disabled = false;
    }
  });

  crows.addEventListener('click', async (ev) => {
    const d = ev.target.closest('button[data-act="deliveries"]');
    if (d) {
      dclient = d.closest('tr').dataset.client;
      root.querySelector('#d-title').textContent = `Webhook deliveries of ${dclient}`;
      dpanel.hidden = false;
      dsay('', '');
      await loadDeliveries();
      dpanel.scrollIntoView({ block: 'start' });
      return;
    }
    const rb = ev.target.closest('button[data-act="reservation"]');
    if (rb) {
      const name = rb.closest('tr').dataset.client;
      const v = window.prompt(`Hours ${name}'s reservations wait for the drop-off (0: the hub's default)`, '');
      if (v === null || v.trim() === '') return;
      try {
        await api('PATCH', `/api/v1/clients/${encodeURIComponent(name)}`, { reservation_hours: Number(v) });
        csay('notice', `API client <strong>${esc(name)}</strong>: reservations now expire after ${Number(v) ? `${Number(v)} h` : "the hub's default"}.`);
        await loadClients();
      } catch (e) {
        csay('error', esc(e.message));
      }
      return;
    }
    const b = ev.target.closest('button[data-act="revoke"]');
    if (!b) return;
    const name = b.closest('tr').dataset.client;
    if (!window.confirm(`Revoke ${name}? Its token stops working at once.`)) return;
    b.disabled = true;
    try {
      await api('DELETE', `/api/v1/clients/${encodeURIComponent(name)}`);
      csay('notice', `API client <strong>${esc(name)}</strong> revoked.`);
      await loadClients();
    } catch (e) {
      csay('error', esc(e.message));
      b.disabled = false;
    }
  });

  load();
  loadClients();
  return { unmount() { gone = true; } };
}
