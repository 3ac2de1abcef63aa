// One WebSocket per browser tab to /api/v1/stream (authenticated by the
// session cookie), shared by the views. The view on screen says what it
// watches ({"watch":"fleet","filter":{…}} or {"watch":"locker","id":…}) at any
// time, over the same socket; the hub answers with a snapshot and then deltas.
// The socket reconnects with exponential backoff and full jitter and re-sends
// what is watched. Deltas that arrive between a change of watch and its
// snapshot belong to the old watch and are dropped.

export class Stream {
  constructor() {
    this.handlers = null;
    this.last = { state: 'connecting', everOpened: false };
    this.want = null;
    this.ws = null;
    this.stopped = true;
    this.attempt = 0;
    this.everOpened = false;
    this.awaitingSnapshot = true;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  // use makes h ({onMessage, onState}) the receiver of messages and state
  // changes, tells it the current state at once, and returns a release func.
  use(h) {
    this.handlers = h;
    h.onState?.(this.last);
    return () => { if (this.handlers === h) this.handlers = null; };
  }

  onMessage(m) { this.handlers?.onMessage?.(m); }

  onState(s) {
    this.last = s;
    this.handlers?.onState?.(s);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000, 'page closed');
      this.ws = null;
    }
  }

  // watch sets what the page wants and sends it when the socket is open.
  watch(msg) {
    this.want = msg;
    this.awaitingSnapshot = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  connect() {
    if (this.stopped) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/api/v1/stream`);
    } catch (e) {
      this.retry('');
      return;
    }
    this.ws = ws;
    this.onState({ state: 'connecting', everOpened: this.everOpened });
    ws.onopen = () => {
      this.attempt = 0;
      this.everOpened = true;
      this.awaitingSnapshot = true;
      this.onState({ state: 'live', everOpened: true });
      if (this.want) ws.send(JSON.stringify(this.want));
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.type === 'snapshot') this.awaitingSnapshot = false;
      else if (this.awaitingSnapshot) return;
      this.onMessage(m);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.retry(ev.reason);
    };
  }

  retry(reason) {
    if (this.stopped) return;
    this.attempt++;
    const cap = Math.min(30000, 1000 * 2 ** Math.min(this.attempt - 1, 5));
    const delay = Math.max(500, Math.random() * cap);
    this.onState({ state: 'retrying', everOpened: this.everOpened, reason, inMs: delay, attempt: this.attempt });
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

// Frame batches work per animation frame: schedule() as often as you like,
// fn runs at most once per frame (and not at all while the tab is hidden).
export class Frame {
  constructor(fn) { this.fn = fn; this.pending = false; }
  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.fn(); });
  }
}
