// lockerhub dashboard: a single page with hash routes.
//   #/login            log in
//   #/?segment=…       fleet overview (filters in the query)
//   #/lockers/ID       one locker
//   #/audit?actor=…    the audit log (admins)
//   #/users            users (admins)
//   #/parcels?locker=… parcels (filters in the query)
//   #/parcels/ID       one parcel
//   #/alarms?state=…   the live alarm feed and silences
//   #/ota?id=…         firmware rollouts, their waves, failures and lockers
//   #/templates        notification templates (admins edit, technicians read)
//   #/carriers         carriers: their lockers and cells used / quota per size
import { api, get, setCSRF, onLoggedOut } from './api.js';
import { mountLogin } from './login.js';
import { mountFleet } from './fleet.js';
import { mountLocker } from './locker.js';
import { mountAudit } from './audit.js';
import { mountUsers } from './users.js';
import { mountParcels, mountParcel, mountReturns } from './parcels.js';
import { mountAlarms } from './alarms.js';
import { mountOTA } from './ota.js';
import { mountTemplates } from './templates.js';
import { mountCarriers } from './carriers.js';
import { Stream } from './stream.js';
import { esc, fmtDuration } from './util.js';

const app = document.getElementById('app');
const topbar = document.getElementById('topbar');
let user = null;
let view = null;
let notice = '';
let stream = null; // one WebSocket for the whole tab, while logged in

function startStream() {
  if (!stream) { stream = new Stream(); stream.start(); }
  return stream;
}

function stopStream() {
  if (stream) { stream.stop(); stream = null; }
}

function parseHash() {
  const h = location.hash.replace(/^#/, '') || '/';
  const i = h.indexOf('?');
  const path = i < 0 ? h : h.slice(0, i);
  return { path, params: new URLSearchParams(i < 0 ? '' : h.slice(i + 1)) };
}

// ctx is what views may use of the shell.
const ctx = {
  setLive(s) {
    const el = document.getElementById('live');
    if (!el) return;
    const labels = {
      live: ['s-live', 'Live'],
      connecting: ['s-connecting', 'Connecting…'],
      retrying: ['s-down', `Reconnecting${s.inMs ? ` in ${fmtDuration(s.inMs + 999)}` : '…'}`],
      polling: ['s-polling', 'Live updates unavailable — refreshing every 10 s'],
      off: ['', ''],
    };
    const [cls, text] = labels[s.state] || labels.off;
    el.className = `live ${cls}`;
    el.textContent = text;
    el.title = s.reason ? `Last close: ${s.reason}` : '';
  },
  user: () => user,
  can: (route) => can(route),
  stream: startStream,
};

// can reports whether the logged-in user may call "METHOD /path".
function can(route) { return !!user && (user.can || []).includes(route); }

function showShell(on) {
  topbar.hidden = !on;
  if (on && user) {
    document.getElementById('who').innerHTML = `<span class="who-name">${esc(user.user)}</span> <span class="role">${esc(user.role)}</span>`;
  }
}

function route() {
  const { path, params } = parseHash();
  if (view) { view.unmount(); view = null; }
  ctx.setLive({ state: 'off' });
  if (!user) {
    showShell(false);
    const next = path === '/login' ? (params.get('next') || '#/') : location.hash || '#/';
    view = mountLogin(app, { notice, next, onLogin: loggedIn });
    notice = '';
    return;
  }
  if (path === '/login') { location.replace('#/'); return; }
  showShell(true);
  const m = path.match(/^\/lockers\/([^/]+)$/);
  // The nav shows only what the role can use (the session's "can" list,
  // from the hub's role matrix); a page the role cannot use is the fleet.
  const audit = path === '/audit' && can('GET /api/v1/audit');
  const users = path === '/users' && can('GET /api/v1/users');
  const mayParcels = can('GET /api/v1/parcels');
  const parcelsPage = path === '/parcels' && mayParcels;
  const pm = mayParcels ? path.match(/^\/parcels\/([^/]+)$/) : null;
  const returnsPage = path === '/returns' && can('GET /api/v1/returns');
  const mayAlarms = can('GET /api/v1/alarms');
  const alarmsPage = path === '/alarms' && mayAlarms;
  const mayTemplates = can('GET /api/v1/templates');
  const templatesPage = path === '/templates' && mayTemplates;
  const mayCarriers = can('GET /api/v1/carriers/usage');
  const carriersPage = path === '/carriers' && mayCarriers;
  document.getElementById('nav-carriers').hidden = !mayCarriers;
  document.getElementById('nav-carriers').classList.toggle('active', carriersPage);
  document.getElementById('nav-templates').hidden = !mayTemplates;
  document.getElementById('nav-templates').classList.toggle('active', templatesPage);
  document.getElementById('nav-alarms').hidden = !mayAlarms;
  document.getElementById('nav-alarms').classList.toggle('active', alarmsPage);
  const mayOTA = can('GET /api/v1/ota/rollouts');
  const otaPage = path === '/ota' && mayOTA;
  document.getElementById('nav-ota').hidden = !mayOTA;
  document.getElementById('nav-ota').classList.toggle('active', otaPage);
  document.getElementById('nav-fleet').classList.toggle('active', !m && !audit && !users && !parcelsPage && !pm && !returnsPage && !alarmsPage && !otaPage && !templatesPage && !carriersPage);
  document.getElementById('nav-parcels').classList.toggle('active', parcelsPage || !!pm || returnsPage);
  document.getElementById('nav-parcels').hidden = !mayParcels;
  document.getElementById('nav-audit').classList.toggle('active', audit);
  document.getElementById('nav-audit').hidden = !can('GET /api/v1/audit');
  document.getElementById('nav-users').classList.toggle('active', users);
  document.getElementById('nav-users').hidden = !can('GET /api/v1/users');
  if (m) view = mountLocker(app, ctx, decodeURIComponent(m[1]));
  else if (audit) view = mountAudit(app, ctx, params);
  else if (users) view = mountUsers(app, ctx);
  else if (parcelsPage) view = mountParcels(app, ctx, params);
  else if (pm) view = mountParcel(app, ctx, decodeURIComponent(pm[1]));
  else if (returnsPage) view = mountReturns(app, ctx, params);
  else if (alarmsPage) view = mountAlarms(app, ctx, params);
  else if (otaPage) view = mountOTA(app, ctx, params);
  else if (templatesPage) view = mountTemplates(app, ctx, params);
  else if (carriersPage) view = mountCarriers(app, ctx);
  else view = mountFleet(app, ctx, params);
  app.focus({ preventScroll: true });
}

function loggedIn(info, next) {
  user = info;
  stopStream(); // a socket of a former session would carry its cookie's fate
  setCSRF(info.csrf_token);
  if (next && next !== location.hash) location.hash = next;
  else route();
}

onLoggedOut(() => {
  if (!user) return;
  user = null;
  stopStream();
  setCSRF('');
  notice = 'Your session has ended. Please log in again.';
  route();
});

document.getElementById('logout').addEventListener('click', async () => {
  try { await api('DELETE', '/api/v1/session'); } catch { /* ended anyway */ }
  user = null;
  stopStream();
  setCSRF('');
  notice = 'You are logged out.';
  if (location.hash === '#/login') route();
  else location.hash = '#/login';
});

window.addEventListener('hashchange', route);

(async function start() {
  try {
    const info = await get('/api/v1/session', { quiet401: true });
    user = info;
    setCSRF(info.csrf_token);
  } catch {
    user = null;
  }
  route();
})();
