// The login page.
import { api, APIError } from './api.js';
import { esc } from './util.js';

export function mountLogin(root, { notice, next, onLogin }) {
  document.title = 'Log in · lockerhub';
  root.innerHTML = `
  <div class="login-wrap">
    <form class="login card" id="login-form" novalidate>
      <h1><img src="/assets/favicon.svg" alt="" width="28" height="28"> lockerhub</h1>
      <p class="muted">Log in to the fleet dashboard.</p>
      ${notice ? `<p class="notice" role="status">${esc(notice)}</p>` : ''}
      <label for="username">Username</label>
      <input id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required>
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required>
      <p class="error" id="login-error" role="alert" hidden></p>
      <button type="submit" class="btn" id="login-submit">Log in</button>
      <p class="hint muted">First start: user <code>admin</code>, password in the hub's data directory (<code>admin.password</code>).</p>
    </form>
  </div>`;
  const form = root.querySelector('#login-form');
  const err = root.querySelector('#login-error');
  const btn = root.querySelector('#login-submit');
  root.querySelector('#username').focus();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      showError('Enter your username and password.');
      return;
    }
    btn.disabled = true;
    btn.textContent = 'Logging in…';
    try {
      const info = await api('POST', '/api/v1/session', { username, password }, { quiet401: true });
      onLogin(info, next);
    } catch (e2) {
      const msg = e2 instanceof APIError && e2.code === 'bad_login' ? 'Unknown user or wrong password.' : e2.message;
      showError(msg);
      form.password.select();
    } finally {
      btn.disabled = false;
      btn.textContent = 'Log in';
    }
  });
  function showError(msg) {
    err.textContent = msg;
    err.hidden = false;
  }
  return { unmount() {} };
}
