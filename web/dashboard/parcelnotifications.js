// A parcel's notifications (docs/parcels.md, "Notifications"): on the
// parcel page, what the recipient (and the creating API client) was sent:
// when, through which channel, to whom, whether it was delivered (sent,
// pending with its attempts and last error, failed) and the text as sent.
//
// Data: GET /api/v1/parcels/{id}/notifications.
import { get } from './api.js';
import { esc, fmtTime, humanize } from './util.js';

const CHANNELS = { sms: 'SMS', email: 'E-mail', webhook: 'Webhook' };
const STATE_BADGE = { sent: 'on', pending: 'warn', failed: 'off' };

export function mountParcelNotifications(el, id) {
  let gone = false;
  el.innerHTML = `
    <section class="panel p-notifications" aria-labelledby="h-notifications">
      <div class="panel-h"><h2 id="h-notifications">Notifications</h2><span class="muted">oldest first</span></div>
      <div class="p-scroll"><table class="audit-table" aria-label="Notifications">
        <thead><tr><th scope="col">Created</th><th scope="col">What</th><th scope="col">Channel</th><th scope="col">To</th>
          <th scope="col">State</th><th scope="col">Sent</th><th scope="col">Text</th></tr></thead>
        <tbody id="pn-rows"><tr><td colspan="7" class="muted">Loading…</td></tr></tbody>
      </table></div>
    </section>`;
  const rows = el.querySelector('#pn-rows');

  async function load() {
    try {
      const r = await get(`/api/v1/parcels/${encodeURIComponent(id)}/notifications`);
      if (gone) return;
      const ns = r.notifications || [];
      rows.innerHTML = ns.length === 0 ? '<tr><td colspan="7" class="muted">Nothing sent yet.</td></tr>' : ns.map((n) => `
        <tr class="pn-row" data-id="${esc(n.id)}" data-channel="${esc(n.channel)}" data-state="${esc(n.state)}">
          <td>${esc(fmtTime(n.created_at))}</td>
          <td>${esc(humanize(n.template.replace(/^parcel\./, '')))}${n.language ? ` <span class="muted">${esc(n.language)}</span>` : ''}</td>
          <td>${esc(CHANNELS[n.channel] || n.channel)}</td>
          <td>${esc(n.to || '—')}</td>
          <td><span class="badge ${STATE_BADGE[n.state] || 'unk'}">${esc(humanize(n.state))}</span>
            ${n.attempts > 1 || n.last_error ? `<span class="muted"> · ${esc(n.attempts)} attempts${n.last_error ? ` · ${esc(n.last_error)}` : ''}</span>` : ''}</td>
          <td>${esc(n.sent_at ? fmtTime(n.sent_at) : '—')}</td>
          <td class="pn-text">${n.subject ? `<strong>${esc(n.subject)}</strong><br>` : ''}${esc(n.text || '')}</td>
        </tr>`).join('');
    } catch (e) {
      if (!gone) rows.innerHTML = `<tr><td colspan="7" class="error" role="alert">${esc(e.message)}</td></tr>`;
    }
  }

  load();
  const timer = setInterval(load, 10000); // pending ones change on their own
  return { unmount() { gone = true; clearInterval(timer); }, reload: load };
}
