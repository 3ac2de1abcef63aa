// Small helpers shared by the views. No framework: the views build HTML
// strings from escaped values and patch the DOM where it changes.

const escapes = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

// esc makes any value safe to put into HTML text or a quoted attribute.
export function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => escapes[c]);
}

// html is a tagged template that escapes every interpolated value except
// those wrapped with raw().
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => {
    out += (v && v.__raw !== undefined) ? v.__raw : Array.isArray(v) ? v.map((x) => (x && x.__raw !== undefined ? x.__raw : esc(x))).join('') : esc(v);
    out += strings[i + 1];
  });
  return { __raw: out };
}

export function raw(s) { return { __raw: s }; }

export function $(sel, root = document) { return root.querySelector(sel); }

// naturalCompare orders "L2" before "L10".
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
export function naturalCompare(a, b) { return collator.compare(a, b); }

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  if (sameDay) return t;
  return d.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' }) + ' ' + t;
}

export function fmtDuration(ms) {
  if (ms == null || ms < 0) return '';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function since(iso) {
  if (!iso) return '';
  return fmtDuration(Date.now() - new Date(iso).getTime());
}

export function num(n) {
  return n == null ? '—' : Number(n).toLocaleString();
}

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// humanize turns "door_opened" into "Door opened".
export function humanize(s) {
  if (!s) return '';
  const t = String(s).replace(/[_.]+/g, ' ');
  return t.charAt(0).toUpperCase() + t.slice(1);
}

export const SIZES = ['S', 'M', 'L', 'XL'];
