// Notification templates (docs/outbox.md, "Templates"): what recipients
// read by SMS and e-mail for each event, with overrides per carrier and per
// language. Pick the event, channel, carrier and language; the editor shows
// the stored override of exactly that choice, or the text a message of that
// carrier and language gets now (and where it comes from). While typing, a
// debounced preview renders the text with sample data; a refusal (an
// unknown field, a syntax error, a text too long) shows inline with its
// code, exactly as a save would refuse it. Admins save and revert to the
// default (remove the override); technicians read and preview.
//
// Data: GET /api/v1/templates, GET/PUT/DELETE /api/v1/templates/{event}/{channel}
// ?carrier=&language=, POST /api/v1/templates/preview.
import { api, get, query } from './api.js';
import { esc, humanize, debounce, fmtTime } from './util.js';

export function mountTemplates(root, ctx, params) {
  document.title = 'Templates · lockerhub';
  const mayEdit = ctx.can('PUT /api/v1/templates/{event}/{channel}');
  let gone = false;
  let events = [];
  let stored = [];
  let seq = 0; // the newest preview request; older answers are dropped

  root.innerHTML = `
  <section class="locker templates">
    <div class="l-head"><h1>Notification templates</h1></div>
    <p class="muted">What recipients read. The most specific template wins: carrier and language, carrier, language, then the default.
      Texts are Go templates over the fields listed; a field that is not listed is refused.</p>
    <div id="t-msg" role="status" aria-live="polite"></div>
    <form class="filters t-pick" id="t-pick" aria-label="Which template">
      <div class="field"><label for="t-event">Event</label><select id="t-event" name="event"></select></div>
      <div class="field"><label for="t-channel">Channel</label><select id="t-channel" name="channel">
        <option value="sms">SMS</option><option value="email">E-mail</option></select></div>
      <div class="field"><label for="t-carrier">Carrier</label><input id="t-carrier" name="carrier" placeholder="every carrier" autocomplete="off" maxlength="64"></div>
      <div class="field"><label for="t-language">Language</label><input id="t-language" name="language" placeholder="every language (de, de-AT)" autocomplete="off" maxlength="35"></div>
    </form>
    <div class="l-body t-body">
      <section class="panel" aria-labelledby="h-edit">
        <div class="panel-h"><h2 id="h-edit">Text</h2><span class="muted" id="t-source" role="status"></span></div>
        <form id="t-form" class="t-form">
          <div class="field" id="t-subject-field"><label for="t-subject">Subject</label>
            <input id="t-subject" name="subject" autocomplete="off" maxlength="200" ${mayEdit ? '' : 'readonly'}></div>
          <div class="field"><label for="t-body">Body</label>
            <textarea id="t-body" name="body" rows="10" spellcheck="true" ${mayEdit ? '' : 'readonly'}></textarea></div>
          <div id="t-error" class="t-error" aria-live="polite"></div>
          ${mayEdit ? `<p class="t-actions"><button type="submit" class="btn" id="t-save">Save</button>
            <button type="button" class="btn-quiet" id="t-revert">Revert to default</button></p>` : ''}
        </form>
      </section>
      <div class="side">
        <section class="panel" aria-labelledby="h-preview">
          <div class="panel-h"><h2 id="h-preview">Preview</h2><span class="muted">sample data</span></div>
          <div id="t-preview" class="t-preview" aria-live="polite"></div>
        </section>
        <section class="panel" aria-labelledby="h-fields">
          <div class="panel-h"><h2 id="h-fields">Fields</h2></div>
          <dl id="t-fields" class="t-fields"></dl>
        </section>
      </div>
    </div>
    <section class="panel" aria-labelledby="h-overrides">
      <div class="panel-h"><h2 id="h-overrides">Stored templates</h2></div>
      <div class="p-scroll"><table class="audit-table" aria-label="Stored templates">
        <thead><tr><th scope="col">Event</th><th scope="col">Channel</th><th scope="col">Carrier</th><th scope="col">Language</th><th scope="col">Updated</th></tr></thead>
        <tbody id="t-rows"></tbody></table></div>
    </section>
  </section>`;
  const $ = (s) => root.querySelector(s);

  function say(kind, text) { $('#t-msg').innerHTML = text ? `<p class="${kind}"${kind === 'error' ? ' role="alert"' : ''}>${esc(text)}</p>` : ''; }

  function choice() {
    const f = $('#t-pick').elements;
    return { event: f.event.value, channel: f.channel.value, carrier: f.carrier.value.trim(), language: f.language.value.trim() };
  }

  function path(c) {
    return `/api/v1/templates/${encodeURIComponent(c.event)}/${encodeURIComponent(c.channel)}${query({ carrier: c.carrier, language: c.language })}`;
  }

  function showError(e) {
    const part = e.part ? `${humanize(e.part)}: ` : '';
    $('#t-error').innerHTML = `<p class="error" role="alert"><code class="t-code">${esc(e.code)}</code> ${esc(part ? e.message.replace(/^(subject|body): /, '') : e.message)}</p>`;
    $('#t-error').dataset.code = e.code;
    for (const id of ['#t-subject', '#t-body']) $(id).removeAttribute('aria-invalid');
    if (e.part === 'subject') $('#t-subject').setAttribute('aria-invalid', 'true');
    if (e.part === 'body') $('#t-body').setAttribute('aria-invalid', 'true');
  }

  function clearError() {
    $('#t-error').innerHTML = '';
    delete $('#t-error').dataset.code;
    for (const id of ['#t-subject', '#t-body']) $(id).removeAttribute('aria-invalid');
  }

  function renderFields() {
    const ev = events.find((e) => e.name === $('#t-event').value);
    $('#t-fields').innerHTML = (ev?.fields || []).map((f) => `<dt><code>{{.${esc(f.name)}}}</code></dt>
      <dd>${esc(f.description)} <span class="muted">e.g. ${esc(f.example)}</span></dd>`).join('');
  }

  function renderStored() {
    $('#t-rows').innerHTML = stored.length === 0
      ? '<tr><td colspan="5" class="muted">None: every message gets the built-in text.</td></tr>'
      : stored.map((t) => `<tr class="t-row" data-event="${esc(t.event)}" data-channel="${esc(t.channel)}" data-carrier="${esc(t.carrier || '')}" data-language="${esc(t.language || '')}">
        <td><a href="#" class="t-open">${esc(humanize(t.event))}</a></td><td>${esc(t.channel)}</td><td>${esc(t.carrier || 'every')}</td>
        <td>${esc(t.language || 'every')}</td><td>${esc(fmtTime(t.updated_at))} <span class="muted">by ${esc(t.updated_by || '—')}</span></td></tr>`).join('');
  }

  // preview renders what is in the editor; only the newest answer counts.
  async function preview() {
    const c = choice();
    const my = ++seq;
    const body = { ...c, body: $('#t-body').value };
    if (c.channel === 'email') body.subject = $('#t-subject').value;
    try {
      const r = await api('POST', '/api/v1/templates/preview', body);
      if (gone || my !== seq) return;
      clearError();
      $('#t-preview').innerHTML = `${r.subject ? `<p class="t-subj"><strong>${esc(r.subject)}</strong></p>` : ''}<pre class="t-text">${esc(r.text)}</pre>`;
      $('#t-preview').dataset.state = 'ok';
    } catch (e) {
      if (gone || my !== seq) return;
      if (e.status === 400) {
        let part = '';
        const m = /^(subject|body): /.exec(e.message);
        if (m) part = m[1];
        showError({ code: e.code, part, message: e.message });
        $('#t-preview').dataset.state = 'error';
      } else {
        say('error', e.message);
      }
    }
  }
  const previewSoon = debounce(preview, 300);

  // load shows the stored override of the choice, else the text a message
  // of that carrier and language gets now.
  async function load() {
    const c = choice();
    $('#t-subject-field').hidden = c.channel !== 'email';
    renderFields();
    try {
      const r = await get(path(c));
      if (gone) return;
      const t = r.template || r.effective;
      $('#t-subject').value = t.subject || '';
      $('#t-body').value = t.body || '';
      $('#t-source').textContent = r.template
        ? 'stored for exactly this choice'
        : `not stored: now ${r.effective.source === 'built-in' ? 'the built-in default' : `from the ${r.effective.source} template`}`;
      $('#t-source').dataset.stored = r.template ? 'yes' : 'no';
      $('#t-source').dataset.key = [c.event, c.channel, c.carrier, c.language].join('/'); // what the editor holds
      if (mayEdit) $('#t-revert').disabled = !r.template;
      say('', '');
      clearError();
      preview();
    } catch (e) {
      if (gone) return;
      if (e.status === 400) showError({ code: e.code, message: e.message });
      else say('error', e.message);
    }
  }
  const loadSoon = debounce(load, 300);

  async function loadAll() {
    try {
      const r = await get('/api/v1/templates');
      if (gone) return;
      events = r.events || [];
      stored = r.templates || [];
      const sel = $('#t-event');
      if (!sel.options.length) {
        sel.innerHTML = events.map((e) => `<option value="${esc(e.name)}">${esc(humanize(e.name))}</option>`).join('');
        if (params.get('event')) sel.value = params.get('event');
      }
      renderStored();
    } catch (e) {
      if (!gone) say('error', e.message);
    }
  }

  async function save(ev) {
    ev.preventDefault();
    const c = choice();
    const btn = $('#t-save');
    btn.disabled = true;
    try {
      const body = { body: $('#t-body').value };
      if (c.channel === 'email') body.subject = $('#t-subject').value;
      await api('PUT', path(c), body);
      if (gone) return;
      say('notice', `Saved: ${humanize(c.event)} by ${c.channel === 'sms' ? 'SMS' : 'e-mail'}${c.carrier ? ` for ${c.carrier}` : ''}${c.language ? ` in ${c.language}` : ''}.`);
      clearError();
      await loadAll();
      await load();
      say('notice', `Saved: ${humanize(c.event)} by ${c.channel === 'sms' ? 'SMS' : 'e-mail'}${c.carrier ? ` for ${c.carrier}` : ''}${c.language ? ` in ${c.language}` : ''}.`);
    } catch (e) {
      if (gone) return;
      if (e.status === 400) {
        const m = /^(subject|body): /.exec(e.message);
        showError({ code: e.code, part: m ? m[1] : '', message: e.message });
        say('error', 'Not saved: the template is refused (see below). Nothing changed.');
      } else say('error', e.message);
    } finally {
      btn.disabled = false;
    }
  }

  async function revert() {
    const c = choice();
    if (!window.confirm('Remove this template? Messages get the next more general one again.')) return;
    try {
      await api('DELETE', path(c));
      if (gone) return;
      await loadAll();
      await load();
      say('notice', 'Reverted: this choice has no stored template any more.');
    } catch (e) {
      if (!gone) say('error', e.message);
    }
  }

  // Selects load at once; the text fields as typed (not on their change at
  // blur, which would overwrite what the user is typing in the editor).
  $('#t-event').addEventListener('change', load);
  $('#t-channel').addEventListener('change', load);
  $('#t-carrier').addEventListener('input', loadSoon);
  $('#t-language').addEventListener('input', loadSoon);
  $('#t-body').addEventListener('input', previewSoon);
  $('#t-subject').addEventListener('input', previewSoon);
  $('#t-rows').addEventListener('click', (ev) => {
    const a = ev.target.closest('.t-open');
    if (!a) return;
    ev.preventDefault();
    const row = a.closest('tr');
    const f = $('#t-pick').elements;
    f.event.value = row.dataset.event;
    f.channel.value = row.dataset.channel;
    f.carrier.value = row.dataset.carrier;
    f.language.value = row.dataset.language;
    load();
  });
  if (mayEdit) {
    $('#t-form').addEventListener('submit', save);
    $('#t-revert').addEventListener('click', revert);
  }
  if (params.get('channel')) $('#t-channel').value = params.get('channel');
  if (params.get('carrier')) $('#t-carrier').value = params.get('carrier');
  if (params.get('language')) $('#t-language').value = params.get('language');
  loadAll().then(() => { if (!gone) load(); });
  return { unmount() { gone = true; } };
}
