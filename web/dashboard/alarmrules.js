// Alarm rules (docs/alarms.md, "Rules"): on the alarms page, the rule set
// with each kind's default, for everyone who may read alarms; admins and
// technicians (PUT /api/v1/alarms/rules) add, change and remove rules. The
// hub validates every change: a refused one shows its reason and changes
// nothing. Every accepted change replaces the whole set in one request (the
// API's contract) and is in the audit log.
//
// Data: GET /api/v1/alarms/rules (rules and kinds), PUT /api/v1/alarms/rules.
import { api, get } from './api.js';
import { esc, humanize } from './util.js';

const SEVERITIES = ['critical', 'major', 'minor', 'info'];
const SCOPES = ['fleet', 'segment', 'model', 'locker_id'];

function scopeOf(r) {
  if (r.locker_id) return ['locker_id', r.locker_id];
  if (r.segment) return ['segment', r.segment];
  if (r.model) return ['model', r.model];
  return ['fleet', ''];
}

function scopeText(r) {
  const [s, v] = scopeOf(r);
  return s === 'fleet' ? 'whole fleet' : `${s === 'locker_id' ? 'locker' : s} <code>${esc(v)}</code>`;
}

function defaultText(k) {
  if (!k) return '';
  const parts = [humanize(k.severity)];
  if (k.threshold !== undefined) parts.push(`threshold ${k.threshold}${k.unit ? ` ${k.unit}` : ''}`);
  if (k.for && k.for !== '0s') parts.push(`for ${k.for}`);
  return parts.join(', ');
}

export function mountAlarmRules(el, ctx) {
  const mayEdit = ctx.can('PUT /api/v1/alarms/rules');
  let rules = [];
  let kinds = [];
  let editing = -1; // index of the rule in the form, -1 for a new one
  let gone = false;

  el.innerHTML = `
    <p class="muted">The most specific rule that matches a locker wins (locker, segment, model, whole fleet), else the kind's default.</p>
    <div id="r-error"></div>
    <div class="p-scroll">
    <table class="audit-table rules-table" aria-label="Alarm rules">
      <thead><tr><th scope="col">Kind</th><th scope="col">Applies to</th><th scope="col">Metric</th><th scope="col">Enabled</th>
        <th scope="col">Severity</th><th scope="col">Threshold</th><th scope="col">For</th>${mayEdit ? '<th scope="col">Actions</th>' : ''}</tr></thead>
      <tbody id="r-rows"><tr><td colspan="8" class="muted">Loading…</td></tr></tbody>
    </table>
    </div>
    ${mayEdit ? `
    <form id="r-form" class="filters r-form" aria-label="Alarm rule">
      <div class="field"><label for="r-kind">Kind</label><select id="r-kind" name="kind"></select></div>
      <div class="field"><label for="r-scope">Applies to</label><select id="r-scope" name="scope">
        ${SCOPES.map((s) => `<option value="${s}">${s === 'fleet' ? 'Whole fleet' : s === 'locker_id' ? 'One locker' : humanize(s)}</option>`).join('')}</select></div>
      <div class="field"><label for="r-value">Which one</label><input id="r-value" name="value" autocomplete="off" maxlength="200"></div>
      <div class="field"><label for="r-metric">Metric</label><input id="r-metric" name="metric" autocomplete="off" placeholder="temp_c" maxlength="64"></div>
      <div class="field"><label for="r-severity">Severity</label><select id="r-severity" name="severity">
        <option value="">Kind's default</option>${SEVERITIES.map((s) => `<option value="${s}">${humanize(s)}</option>`).join('')}</select></div>
      <div class="field"><label for="r-threshold">Threshold</label><input id="r-threshold" name="threshold" inputmode="decimal" autocomplete="off"></div>
      <div class="field"><label for="r-for">For</label><input id="r-for" name="for" autocomplete="off" placeholder="5m"></div>
      <div class="field"><label for="r-enabled">Enabled</label><select id="r-enabled" name="enabled"><option value="true">Yes</option><option value="false">No (switched off)</option></select></div>
      <button type="submit" class="btn" id="r-save">Add rule</button>
      <button type="button" class="btn-quiet" id="r-cancel" hidden>Cancel</button>
      <p class="muted r-default" id="r-default" role="status"></p>
    </form>` : ''}`;
  const $ = (s) => el.querySelector(s);

  function render() {
    const byKind = new Map(kinds.map((k) => [k.kind, k]));
    $('#r-rows').innerHTML = rules.length === 0
      ? `<tr><td colspan="8" class="muted">No rules: every kind runs with its default.</td></tr>`
      : rules.map((r, i) => `
      <tr class="r-row" data-i="${i}" data-kind="${esc(r.kind)}">
        <td>${esc(humanize(r.kind))}</td><td>${scopeText(r)}</td><td>${r.metric ? `<code>${esc(r.metric)}</code>` : ''}</td>
        <td>${r.enabled ? 'yes' : '<span class="badge unk">off</span>'}</td>
        <td>${r.severity ? esc(humanize(r.severity)) : '<span class="muted">default</span>'}</td>
        <td>${r.threshold !== undefined && r.threshold !== null ? esc(String(r.threshold)) : '<span class="muted">default</span>'}</td>
        <td>${r.for && r.for !== '0s' ? esc(r.for) : '<span class="muted">default</span>'}</td>
        ${mayEdit ? `<td class="a-actions"><button type="button" class="btn-quiet r-edit">Edit</button> <button type="button" class="btn-quiet r-remove">Remove</button></td>` : ''}
      </tr>`).join('');
    if (!mayEdit) return;
    const sel = $('#r-kind');
    if (!sel.options.length) {
      sel.innerHTML = kinds.map((k) => `<option value="${esc(k.kind)}">${esc(humanize(k.kind))}</option>`).join('');
    }
    showDefault(byKind);
  }

  function showDefault(byKind = new Map(kinds.map((k) => [k.kind, k]))) {
    const k = byKind.get($('#r-kind').value);
    $('#r-default').textContent = k ? `${k.doc.charAt(0).toUpperCase()}${k.doc.slice(1)}. Default: ${defaultText(k)}.` : '';
    $('#r-metric').disabled = !(k && k.kind.startsWith('telemetry_'));
    $('#r-value').disabled = $('#r-scope').value === 'fleet';
  }

  async function load() {
    try {
      const r = await get('/api/v1/alarms/rules');
      if (gone) return;
      rules = r.rules || [];
      kinds = r.kinds || [];
      render();
    } catch (e) {
      if (!gone) $('#r-error').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
    }
  }

  // save replaces the rule set; on a refusal nothing changed and the form
  // keeps what the user typed.
  async function save(next) {
    try {
      const r = await api('PUT', '/api/v1/alarms/rules', { rules: next });
      rules = r.rules || [];
      $('#r-error').innerHTML = '';
      render();
      return true;
    } catch (e) {
      $('#r-error').innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
      return false;
    }
  }

  function resetForm() {
    editing = -1;
    const f = $('#r-form');
    f.reset();
    $('#r-save').textContent = 'Add rule';
    $('#r-cancel').hidden = true;
    showDefault();
  }

  function ruleFromForm() {
    const f = $('#r-form').elements;
    const r = { kind: f.kind.value, enabled: f.enabled.value === 'true' };
    const v = f.value.value.trim();
    if (f.scope.value !== 'fleet') r[f.scope.value] = v;
    if (!f.metric.disabled && f.metric.value.trim()) r.metric = f.metric.value.trim();
    if (f.severity.value) r.severity = f.severity.value;
    const t = f.threshold.value.trim();
    if (t !== '') r.threshold = Number(t.replace(',', '.'));
    if (f.for.value.trim()) r.for = f.for.value.trim();
    return r;
  }

  function fillForm(r) {
    const f = $('#r-form').elements;
    f.kind.value = r.kind;
    const [s, v] = scopeOf(r);
    f.scope.value = s;
    f.value.value = v;
    f.metric.value = r.metric || '';
    f.severity.value = r.severity || '';
    f.threshold.value = r.threshold !== undefined && r.threshold !== null ? String(r.threshold) : '';
    f.for.value = r.for && r.for !== '0s' ? r.for : '';
    f.enabled.value = r.enabled ? 'true' : 'false';
    $('#r-save').textContent = 'Save rule';
    $('#r-cancel').hidden = false;
    showDefault();
  }

  if (mayEdit) {
    $('#r-kind').addEventListener('change', () => showDefault());
    $('#r-scope').addEventListener('change', () => showDefault());
    $('#r-cancel').addEventListener('click', resetForm);
    $('#r-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const r = ruleFromForm();
      if (Number.isNaN(r.threshold)) {
        $('#r-error').innerHTML = '<p class="error" role="alert">The threshold must be a number.</p>';
        return;
      }
      const next = rules.map(({ id, ...rest }) => rest); // eslint-disable-line no-unused-vars
      if (editing >= 0) next[editing] = r; else next.push(r);
      if (await save(next)) resetForm();
    });
    el.addEventListener('click', async (ev) => {
      const tr = ev.target.closest('tr.r-row');
      if (!tr) return;
      const i = Number(tr.dataset.i);
      if (ev.target.classList.contains('r-edit')) {
        editing = i;
        fillForm(rules[i]);
        $('#r-kind').focus();
      } else if (ev.target.classList.contains('r-remove')) {
        const next = rules.filter((_, j) => j !== i).map(({ id, ...rest }) => rest); // eslint-disable-line no-unused-vars
        if (await save(next)) resetForm(); // the indices moved
      }
    });
  }

  load();
  return () => { gone = true; };
}
