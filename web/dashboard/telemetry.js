// The locker page's Telemetry section: one chart per main metric
// (temperature, humidity, battery voltage, signal), mains power as an on/off
// strip, a range picker and CSV downloads, all on the telemetry API:
//
//   GET …/telemetry/latest        the newest sample (every refresh)
//   GET …/telemetry/metrics       what the locker reports (once; extra charts)
//   GET …/telemetry?metric=&from=&to=   a series; the hub picks raw samples or
//                                 1-minute / 1-hour rollups (avg, min, max)
//
// Charts are uPlot (vendor/uplot), loaded on first use. Rollups draw the
// average as a line over a min–max band; raw samples draw a line. Every
// chart has its title with the unit, the latest value and the range's
// minimum and maximum as text beside it, so nothing is told by the line
// alone. The section refreshes every 10 s (every minute for 7 d and 30 d)
// while the tab is visible; responses land in state and the DOM is patched
// once per animation frame.
import { get, APIError } from './api.js';
import { Frame } from './stream.js';
import { esc, fmtTime, fmtDuration } from './util.js';

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
export const RANGES = [
  { key: '1h', label: '1 h', ms: HOUR },
  { key: '6h', label: '6 h', ms: 6 * HOUR },
  { key: '24h', label: '24 h', ms: DAY },
  { key: '7d', label: '7 d', ms: 7 * DAY },
  { key: '30d', label: '30 d', ms: 30 * DAY },
];
const DEFAULT_RANGE = '6h';
const REFRESH_MS = 10000;
const REFRESH_LONG_MS = 60000; // 7 d and 30 d: hourly rollups change slowly
const MAX_EXTRA = 8;

// The main metrics, in the order shown. color is the line; the band is the
// same colour, light.
const MAIN = [
  { key: 'temp_c', title: 'Temperature', unit: '°C', digits: 1, color: '#c2410c' },
  { key: 'humidity_pct', title: 'Humidity', unit: '%', digits: 0, color: '#0e7490' },
  { key: 'battery_v', title: 'Battery voltage', unit: 'V', digits: 2, color: '#6d28d9' },
  { key: 'rssi_dbm', title: 'Signal strength', unit: 'dBm', digits: 0, color: '#1f4fd1' },
];
const MAINS = 'mains';
const EXTRA_COLORS = ['#047857', '#a21caf', '#b45309', '#334155'];

// Units guessed from a metric's suffix, for metrics beyond the main ones.
const SUFFIX_UNITS = [['_c', '°C'], ['_pct', '%'], ['_v', 'V'], ['_dbm', 'dBm'], ['_a', 'A'], ['_w', 'W'], ['_s', 's'], ['_ms', 'ms']];

function extraMetric(key, i) {
  const u = SUFFIX_UNITS.find(([s]) => key.endsWith(s));
  const words = key.replace(/_(c|pct|v|dbm|a|w|s|ms)$/, '').replace(/_/g, ' ');
  return { key, title: words.charAt(0).toUpperCase() + words.slice(1), unit: u ? u[1] : '', digits: null, color: EXTRA_COLORS[i % EXTRA_COLORS.length], extra: true };
}

// describe says what a series' points are, e.g. "15-minute averages with
// min–max band (from 1-minute rollups)".
function describe(s) {
  if (!s) return '';
  if (s.source === 'raw' && !s.step_ms) return 'raw samples';
  const from = s.source === 'raw' ? 'raw samples' : s.source === '1m' ? '1-minute rollups' : s.source === '1h' ? '1-hour rollups' : s.source;
  return `${fmtStep(s.step_ms)} averages with min–max band (from ${from})`;
}

function fmtStep(ms) {
  const units = [[86400000, 'day'], [3600000, 'hour'], [60000, 'minute'], [1000, 'second']];
  for (const [u, name] of units) if (ms >= u && ms % u === 0) return `${ms / u}-${name}`;
  return `${ms} ms`;
}

// --- uPlot, loaded once, on demand --------------------------------------------

let uplotLoading = null;
function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!uplotLoading) {
    uplotLoading = new Promise((resolve, reject) => {
      const css = document.createElement('link');
      css.rel = 'stylesheet';
      css.href = '/assets/vendor/uplot/uPlot.min.css';
      document.head.appendChild(css);
      const s = document.createElement('script');
      s.src = '/assets/vendor/uplot/uPlot.iife.min.js';
      s.onload = () => resolve(window.uPlot);
      s.onerror = () => { uplotLoading = null; s.remove(); reject(new Error('The chart library could not be loaded.')); };
      document.head.appendChild(s);
    });
  }
  return uplotLoading;
}

// --- the section ------------------------------------------------------------------

// mountTelemetry fills el with the section for locker id; base is its API path.
export function mountTelemetry(el, id, base) {
  let range = rangeFromHash() || DEFAULT_RANGE;
  let gen = 0; // responses of an older range or refresh are dropped
  let win = window_(range); // {from, to} of the current request
  const series = new Map(); // metric → {series|null, error, gen}
  let latest; // undefined: not loaded; null: none; else the sample
  let latestError = '';
  let extras = []; // metric descriptions beyond the main ones
  let unavailable = '';
  let gone = false;
  let timer = null;
  let uPlot = null;
  let libError = '';
  const charts = new Map(); // metric → {u, box, observer}
  const dirty = new Set(); // metrics whose chart needs new data
  let dirtyHead = true;
  const frame = new Frame(render);

  el.innerHTML = `
    <div class="panel-h tele-h">
      <h2 id="h-tele">Telemetry</h2>
      <span class="muted" id="t-meta"></span>
      <span class="spacer"></span>
      <div class="seg-ctl" id="t-range" role="group" aria-label="Time range">
        ${RANGES.map((r) => `<button type="button" data-range="${r.key}" aria-pressed="${r.key === range}" title="The last ${r.label}">${r.label}</button>`).join('')}
      </div>
    </div>
    <p class="error" id="t-error" role="alert" hidden></p>
    <p class="muted" id="t-off" hidden></p>
    <div class="tele-grid" id="t-charts">
      ${MAIN.map(cardHTML).join('')}
      ${mainsHTML()}
    </div>
    <div class="tele-grid" id="t-extra"></div>`;
  const $ = (s) => el.querySelector(s);

  $('#t-range').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-range]');
    if (!b || b.dataset.range === range) return;
    range = b.dataset.range;
    for (const x of el.querySelectorAll('#t-range button')) x.setAttribute('aria-pressed', String(x.dataset.range === range));
    rememberRange(range);
    // The old range's lines go at once; the new ones follow.
    series.clear();
    for (const m of allMetrics()) dirty.add(m.key);
    dirty.add(MAINS);
    dirtyHead = true;
    frame.schedule();
    refresh();
  });

  function cardHTML(m) {
    const cap = `${m.title}${m.unit ? ` (${m.unit})` : ''}`;
    return `
    <figure class="tchart" data-metric="${esc(m.key)}">
      <figcaption class="tchart-h">
        <h3>${esc(m.title)}${m.unit ? ` <span class="unit">${esc(m.unit)}</span>` : ''}</h3>
        <a class="t-csv" href="${esc(csvHref(m.key))}" download="" aria-label="Download ${esc(cap)} as CSV">CSV</a>
      </figcaption>
      <div class="tchart-b">
        <div class="t-now">
          <span class="k">Latest</span>
          <span class="t-latest num" data-value="">—</span>
          <span class="t-at muted"></span>
          <span class="t-span muted"></span>
        </div>
        <div class="t-plot" role="img" aria-label="${esc(cap)}: no data yet">
          <p class="t-nodata" hidden>No data</p>
        </div>
      </div>
      <p class="t-readout muted" aria-hidden="true">&nbsp;</p>
    </figure>`;
  }

  function mainsHTML() {
    return `
    <figure class="tchart tmains" data-metric="${MAINS}">
      <figcaption class="tchart-h">
        <h3>Mains power <span class="unit">on / off</span></h3>
        <a class="t-csv" href="${esc(csvHref(MAINS))}" download="" aria-label="Download mains power as CSV">CSV</a>
      </figcaption>
      <div class="tchart-b">
        <div class="t-now">
          <span class="k">Latest</span>
          <span class="t-latest" data-value="">—</span>
          <span class="t-at muted"></span>
        </div>
        <div class="t-mains">
          <div class="strip mains-strip" role="img" aria-label="Mains power: no data yet"></div>
          <div class="strip-axis"><span class="t-from"></span><span class="t-share"></span><span>now</span></div>
          <ul class="legend mains-legend" aria-label="Legend">
            <li><span class="swatch m-on"></span>On mains</li>
            <li><span class="swatch m-off"></span>On battery</li>
            <li><span class="swatch m-mixed"></span>Both within the interval</li>
            <li><span class="swatch unknown"></span>No data</li>
          </ul>
        </div>
      </div>
    </figure>`;
  }

  function allMetrics() { return [...MAIN, ...extras]; }

  // --- data ------------------------------------------------------------------------

  async function loadLatest(g) {
    try {
      const s = await get(`${base}/telemetry/latest`);
      if (g !== gen) return;
      latest = s;
      latestError = '';
    } catch (e) {
      if (g !== gen) return;
      if (e instanceof APIError && e.status === 404) latest = null;
      else if (e instanceof APIError && e.status === 503) unavailable = e.message;
      else latestError = e.message;
    }
    dirtyHead = true;
    for (const m of allMetrics()) dirty.add(m.key);
    dirty.add(MAINS);
    frame.schedule();
  }

  async function loadSeries(metric, g, w) {
    const q = `metric=${encodeURIComponent(metric)}&from=${encodeURIComponent(w.from.toISOString())}&to=${encodeURIComponent(w.to.toISOString())}`;
    let entry;
    try {
      entry = { series: await get(`${base}/telemetry?${q}`), error: '' };
    } catch (e) {
      if (e instanceof APIError && e.status === 503) unavailable = e.message;
      entry = { series: series.get(metric)?.series || null, error: e.message };
    }
    if (g !== gen) return;
    series.set(metric, entry);
    dirty.add(metric);
    dirtyHead = true;
    frame.schedule();
  }

  async function loadMetrics() {
    try {
      const res = await get(`${base}/telemetry/metrics`);
      const known = new Set([...MAIN.map((m) => m.key), MAINS]);
      const more = (res.metrics || []).filter((k) => !known.has(k)).sort().slice(0, MAX_EXTRA);
      if (more.join() === extras.map((m) => m.key).join()) return;
      const had = new Set(extras.map((m) => m.key));
      for (const m of extras) { // their cards are rebuilt: so are their charts
        const ch = charts.get(m.key);
        if (ch) { ch.observer.disconnect(); ch.u.destroy(); charts.delete(m.key); }
      }
      extras = more.map(extraMetric);
      $('#t-extra').innerHTML = extras.map(cardHTML).join('');
      for (const m of extras) {
        dirty.add(m.key);
        if (!had.has(m.key)) loadSeries(m.key, gen, win); // not in the refresh under way
      }
      frame.schedule();
    } catch { /* the main charts do without */ }
  }

  let refreshing = false;
  async function refresh() {
    clearTimeout(timer);
    if (gone) return;
    const g = ++gen;
    win = window_(range);
    refreshing = true;
    dirtyHead = true;
    frame.schedule();
    const w = win;
    await Promise.all([loadLatest(g), ...[...allMetrics().map((m) => m.key), MAINS].map((k) => loadSeries(k, g, w))]);
    if (g !== gen || gone) return;
    refreshing = false;
    dirtyHead = true;
    frame.schedule();
    if (unavailable) return; // not wired on this hub: nothing will change
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (gone) return;
    const long = RANGES.find((r) => r.key === range).ms > DAY;
    timer = setTimeout(() => { if (!document.hidden) refresh(); else schedule(); }, long ? REFRESH_LONG_MS : REFRESH_MS);
  }

  function onVisible() { if (!document.hidden && !gone && !unavailable) refresh(); }
  document.addEventListener('visibilitychange', onVisible);

  // --- render ------------------------------------------------------------------------

  function render() {
    if (gone) return;
    if (unavailable) {
      $('#t-off').textContent = `No telemetry here: ${unavailable}.`;
      $('#t-off').hidden = false;
      $('#t-error').hidden = true;
      $('#t-range').hidden = true;
      $('#t-charts').hidden = true;
      $('#t-extra').hidden = true;
      $('#t-meta').textContent = '';
      return;
    }
    if (dirtyHead) renderHead();
    if (!uPlot) {
      if (!libError) loadUPlot().then((u) => { uPlot = u; for (const m of allMetrics()) dirty.add(m.key); frame.schedule(); })
        .catch((e) => { libError = e.message; frame.schedule(); });
      else { $('#t-error').textContent = libError; $('#t-error').hidden = false; }
    }
    for (const key of dirty) {
      if (key === MAINS) renderMains();
      else {
        const m = allMetrics().find((x) => x.key === key);
        if (m) renderChart(m);
      }
    }
    dirty.clear();
  }

  function renderHead() {
    dirtyHead = false;
    const r = RANGES.find((x) => x.key === range);
    const kinds = new Set([...series.values()].map((e) => describe(e.series)).filter(Boolean));
    const src = kinds.size === 1 ? [...kinds][0] : kinds.size ? 'mixed sources' : '';
    let meta = `Last ${r.label}`;
    if (src) meta += ` · ${src}`;
    if (latest) meta += ` · last sample ${fmtTime(latest.ts)} (${fmtDuration(Date.now() - new Date(latest.ts).getTime())} ago)`;
    else if (latest === null) meta += ' · no sample received yet';
    if (refreshing && !series.size) meta += ' · loading…';
    $('#t-meta').textContent = meta;
    const errs = [latestError, ...[...series.values()].map((e) => e.error)].filter(Boolean);
    $('#t-error').hidden = !errs.length;
    if (errs.length) $('#t-error').textContent = `Telemetry could not be refreshed: ${errs[0]}`;
  }

  function card(key) { return el.querySelector(`.tchart[data-metric="${CSS.escape(key)}"]`); }

  function csvHref(metric) {
    return `${base}/telemetry?metric=${encodeURIComponent(metric)}&from=${encodeURIComponent(win.from.toISOString())}&to=${encodeURIComponent(win.to.toISOString())}&format=csv`;
  }

  function renderChart(m) {
    const c = card(m.key);
    if (!c) return;
    const entry = series.get(m.key);
    const s = entry?.series;
    const points = s?.points || [];
    const v = latest?.m?.[m.key];
    const latestEl = c.querySelector('.t-latest');
    const text = v == null ? '—' : `${fmtNum(v, m.digits)}${m.unit ? ` ${m.unit}` : ''}`;
    if (latestEl.textContent !== text) latestEl.textContent = text;
    latestEl.dataset.value = v == null ? '' : String(v);
    c.querySelector('.t-at').textContent = v == null ? (latest === null ? 'nothing received yet' : '') : `at ${fmtTime(latest.ts)}`;
    c.querySelector('.t-csv').href = csvHref(m.key);

    const lo = minOf(points, 'min');
    const hi = maxOf(points, 'max');
    const r = RANGES.find((x) => x.key === range);
    const unit = m.unit ? ` ${m.unit}` : '';
    const spanHTML = points.length ? `<span class="k2">Range, ${esc(r.label)}</span> ${esc(fmtNum(lo, m.digits))} – ${esc(fmtNum(hi, m.digits))}${esc(unit)}` : '';
    const spanEl = c.querySelector('.t-span');
    if (spanEl._html !== spanHTML) { spanEl.innerHTML = spanHTML; spanEl._html = spanHTML; }
    const plot = c.querySelector('.t-plot');
    const nodata = c.querySelector('.t-nodata');
    const loaded = entry !== undefined;
    nodata.hidden = !loaded || points.length > 0;
    nodata.textContent = entry?.error && !points.length ? 'Could not load' : `No data in the last ${r.label}`;
    plot.setAttribute('aria-label', points.length
      ? `${m.title}${unit ? ` in${unit}` : ''}, last ${r.label}: ${points.length} points from ${fmtNum(lo, m.digits)} to ${fmtNum(hi, m.digits)}${unit}${v != null ? `, latest ${text}` : ''}`
      : `${m.title}: no data in the last ${r.label}`);
    c.dataset.points = String(points.length);
    c.dataset.source = s?.source || '';
    if (!uPlot) return;
    let ch = charts.get(m.key);
    if (!ch) ch = createChart(m, plot, c);
    ch.points = points;
    ch.u.setData(toData(points, s?.step_ms || 0), true);
    ch.u.setScale('x', { min: win.from.getTime() / 1000, max: win.to.getTime() / 1000 });
    showReadout(ch, m);
  }

  function createChart(m, plot, c) {
    const css = getComputedStyle(document.documentElement);
    const muted = css.getPropertyValue('--muted').trim() || '#5d6778';
    const grid = css.getPropertyValue('--line').trim() || '#dde2ea';
    const ch = { points: [], readout: c.querySelector('.t-readout') };
    const opts = {
      width: Math.max(plot.clientWidth, 200),
      height: plotHeight(plot),
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      scales: {
        x: { time: true, range: () => [win.from.getTime() / 1000, win.to.getTime() / 1000] },
        y: { range: (u, min, max) => yRange(min, max) },
      },
      series: [
        {},
        { label: 'avg', stroke: m.color, width: 1.75, spanGaps: false },
        { label: 'min', stroke: 'transparent', width: 0, points: { show: false }, spanGaps: false },
        { label: 'max', stroke: 'transparent', width: 0, points: { show: false }, spanGaps: false },
      ],
      bands: [{ series: [3, 2], fill: `${m.color}2e` }],
      axes: [
        { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: '11px system-ui, sans-serif' },
        { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { show: false }, size: 46, font: '11px system-ui, sans-serif', values: (u, vals) => vals.map((x) => fmtAxis(x)) },
      ],
      hooks: { setCursor: [() => showReadout(ch, m)] },
    };
    ch.u = new uPlot(opts, [[], [], [], []], plot);
    ch.observer = new ResizeObserver(() => {
      const w = Math.max(plot.clientWidth, 200);
      const h = plotHeight(plot);
      if (w !== ch.u.width || h !== ch.u.height) ch.u.setSize({ width: w, height: h });
    });
    ch.observer.observe(plot);
    charts.set(m.key, ch);
    return ch;
  }

  function showReadout(ch, m) {
    const idx = ch.u.cursor.idx;
    const t = idx == null ? null : ch.u.data[0][idx];
    const avg = idx == null ? null : ch.u.data[1][idx];
    let text = '\u00a0';
    if (t != null && avg != null) {
      const mn = ch.u.data[2][idx];
      const mx = ch.u.data[3][idx];
      const unit = m.unit ? ` ${m.unit}` : '';
      text = `${fmtTime(new Date(t * 1000).toISOString())}: ${fmtNum(avg, m.digits)}${unit}`;
      if (mn != null && mx != null && mn !== mx) text += ` (min ${fmtNum(mn, m.digits)}, max ${fmtNum(mx, m.digits)})`;
    }
    if (ch.readout.textContent !== text) ch.readout.textContent = text;
  }

  function renderMains() {
    const c = card(MAINS);
    if (!c) return;
    const entry = series.get(MAINS);
    const s = entry?.series;
    const points = s?.points || [];
    const v = latest?.m?.[MAINS];
    const latestEl = c.querySelector('.t-latest');
    latestEl.innerHTML = v == null ? '—' : v >= 0.5 ? '<span class="badge on">Mains on</span>' : '<span class="badge warn">On battery</span>';
    latestEl.dataset.value = v == null ? '' : String(v);
    c.querySelector('.t-at').textContent = v == null ? '' : `at ${fmtTime(latest.ts)}`;
    c.querySelector('.t-csv').href = csvHref(MAINS);
    const r = RANGES.find((x) => x.key === range);
    const from = win.from.getTime();
    const to = win.to.getTime();
    const span = to - from;
    const step = s?.step_ms || typicalStep(points);
    const segs = [];
    let onMs = 0;
    let knownMs = 0;
    for (let i = 0; i < points.length; i++) {
      const p = points[i];
      const a = Math.max(from, new Date(p.t).getTime());
      const next = i + 1 < points.length ? new Date(points[i + 1].t).getTime() : to;
      const b = Math.min(to, next, a + Math.max(step, 1000) * 2.5); // a lone sample covers no more than its interval
      if (b <= a) continue;
      const cls = p.min >= 0.5 ? 'on' : p.max < 0.5 ? 'off' : 'mixed';
      knownMs += b - a;
      onMs += (b - a) * Math.min(Math.max(p.avg, 0), 1);
      const last = segs[segs.length - 1];
      if (last && last.cls === cls && Math.abs(last.b - a) < 1) last.b = b;
      else segs.push({ a, b, cls });
    }
    const strip = c.querySelector('.mains-strip');
    strip.innerHTML = segs.map((g) => `<span class="seg m-${g.cls}" title="${g.cls === 'on' ? 'On mains' : g.cls === 'off' ? 'On battery' : 'On mains part of the time'} ${esc(fmtTime(new Date(g.a).toISOString()))} – ${esc(fmtTime(new Date(g.b).toISOString()))}"></span>`).join('');
    // Positions go through the CSSOM: the page's CSP allows no inline styles.
    [...strip.children].forEach((e, i) => {
      e.style.left = `${((segs[i].a - from) / span) * 100}%`;
      e.style.width = `${((segs[i].b - segs[i].a) / span) * 100}%`;
    });
    const pct = knownMs ? Math.round((onMs / knownMs) * 1000) / 10 : null;
    const share = pct == null ? (entry ? `No data in the last ${r.label}` : '') : `On mains ${pct}% of the time with data`;
    c.querySelector('.t-share').textContent = share;
    c.querySelector('.t-from').textContent = `${r.label} ago`;
    strip.setAttribute('aria-label', `Mains power, last ${r.label}: ${share || 'loading'}`);
    c.dataset.points = String(points.length);
    c.dataset.source = s?.source || '';
  }

  // --- lifecycle ------------------------------------------------------------------

  loadMetrics();
  refresh();
  frame.schedule();

  return {
    unmount() {
      gone = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisible);
      for (const ch of charts.values()) { ch.observer.disconnect(); ch.u.destroy(); }
      charts.clear();
    },
  };
}

// --- helpers ---------------------------------------------------------------------

function window_(range) {
  const r = RANGES.find((x) => x.key === range) || RANGES[1];
  const to = new Date();
  return { from: new Date(to.getTime() - r.ms), to };
}

// The range lives in the page's address (#/lockers/ID?range=24h), so a reload
// or a shared link keeps it; replaceState changes it without a new route.
function rangeFromHash() {
  const i = location.hash.indexOf('?');
  const r = i < 0 ? null : new URLSearchParams(location.hash.slice(i + 1)).get('range');
  return RANGES.some((x) => x.key === r) ? r : null;
}

function rememberRange(range) {
  const h = location.hash;
  const i = h.indexOf('?');
  const params = new URLSearchParams(i < 0 ? '' : h.slice(i + 1));
  if (range === DEFAULT_RANGE) params.delete('range'); else params.set('range', range);
  const q = params.toString();
  history.replaceState(history.state, '', `${i < 0 ? h : h.slice(0, i)}${q ? `?${q}` : ''}`);
}

// toData makes uPlot's columns (seconds, avg, min, max), with a null where
// samples stop for longer than a few intervals, so a gap shows as a gap.
function toData(points, stepMs) {
  const step = stepMs > 0 ? stepMs : typicalStep(points);
  const xs = [];
  const avg = [];
  const mn = [];
  const mx = [];
  let prev = null;
  for (const p of points) {
    const t = new Date(p.t).getTime();
    if (prev != null && step > 0 && t - prev > step * 3) {
      xs.push((prev + step) / 1000); avg.push(null); mn.push(null); mx.push(null);
    }
    xs.push(t / 1000); avg.push(p.avg); mn.push(p.min); mx.push(p.max);
    prev = t;
  }
  return [xs, avg, mn, mx];
}

// typicalStep is the median interval between points (raw samples have no step).
function typicalStep(points) {
  if (points.length < 2) return 0;
  const d = [];
  for (let i = 1; i < points.length; i++) d.push(new Date(points[i].t).getTime() - new Date(points[i - 1].t).getTime());
  d.sort((a, b) => a - b);
  return d[Math.floor(d.length / 2)];
}

function yRange(min, max) {
  if (min == null || max == null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  const pad = Math.max((max - min) * 0.12, Math.abs(max) * 0.005, 0.05);
  return [min - pad, max + pad];
}

function minOf(points, k) { let v = Infinity; for (const p of points) if (p[k] < v) v = p[k]; return v; }
function maxOf(points, k) { let v = -Infinity; for (const p of points) if (p[k] > v) v = p[k]; return v; }

// fmtNum formats with a fixed number of decimals (the same in every locale,
// as the API and its CSV are); digits null: none for whole numbers, else 2.
function fmtNum(v, digits) {
  if (v == null || !Number.isFinite(Number(v))) return '—';
  if (digits == null) digits = Number.isInteger(Number(v)) ? 0 : 2; // counters stay whole
  return Number(v).toFixed(digits).replace(/^-(0\.?0*)$/, '$1');
}

function fmtAxis(v) {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1);
  return Number.isInteger(v) ? v.toFixed(0) : String(Number(v.toFixed(2)));
}

function plotHeight(plot) { return plot.clientHeight > 80 ? plot.clientHeight : 170; }
