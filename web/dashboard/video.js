// A locker's camera on its page (docs/video.md): a WHEP viewer (the browser
// offers, the hub answers; POST …/video/whep, DELETE the Location to leave),
// a live indicator, and frame rate, latency and loss from getStats; the clips
// recorded on alarms, playable in place (WebM).
import { get, csrf, APIError } from './api.js';
import { esc, fmtTime } from './util.js';

export function mountLockerVideo(root, id) {
  const base = `/api/v1/lockers/${encodeURIComponent(id)}`;
  let pc = null;
  let location = '';
  let statsTimer = null;
  let last = null; // previous inbound-rtp report, for rates
  let gone = false;

  root.innerHTML = `
    <div class="v-bar">
      <button type="button" class="btn" id="v-watch">Watch live</button>
      <button type="button" class="btn-quiet" id="v-stop" hidden>Stop</button>
      <span class="v-live" id="v-live" data-state="off" aria-live="polite">Not watching</span>
    </div>
    <p class="error" id="v-error" role="alert" hidden></p>
    <video id="v-video" class="v-video" autoplay muted playsinline hidden aria-label="Live camera of ${esc(id)}"></video>
    <dl class="v-stats" id="v-stats" hidden>
      <div><dt>Frames per second</dt><dd id="v-fps">—</dd></div>
      <div><dt>Latency</dt><dd id="v-latency">—</dd></div>
      <div><dt>Frames decoded</dt><dd id="v-decoded">0</dd></div>
      <div><dt>Packets lost</dt><dd id="v-lost">0</dd></div>
    </dl>
    <h3 class="v-h">Recordings</h3>
    <div id="v-recordings"><p class="muted">Loading…</p></div>`;
  const $ = (s) => root.querySelector(s);

  function setLive(state, text) {
    const el = $('#v-live');
    el.dataset.state = state;
    el.textContent = text;
  }
  function showError(msg) {
    const el = $('#v-error');
    el.textContent = msg || '';
    el.hidden = !msg;
  }

  async function watch() {
    showError('');
    $('#v-watch').disabled = true;
    setLive('connecting', 'Connecting…');
    try {
      pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      const video = $('#v-video');
      pc.ontrack = (ev) => { video.srcObject = ev.streams[0] || new MediaStream([ev.track]); video.hidden = false; };
      pc.onconnectionstatechange = () => {
        if (!pc) return;
        const s = pc.connectionState;
        if (s === 'connected') setLive('live', 'Live');
        else if (s === 'disconnected') setLive('connecting', 'Reconnecting…');
        else if (s === 'failed') { setLive('off', 'Connection lost'); stop(false); showError('The video connection failed. Try again.'); }
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const headers = { 'Content-Type': 'application/sdp' };
      if (csrf()) headers['X-CSRF-Token'] = csrf();
      const resp = await fetch(`${base}/video/whep`, { method: 'POST', headers, body: pc.localDescription.sdp, credentials: 'same-origin' });
      if (resp.status !== 201) {
        let msg = `HTTP ${resp.status}`;
        try { msg = (await resp.json()).message || msg; } catch { /* not JSON */ }
        throw new APIError(resp.status, 'whep', msg);
      }
      location = resp.headers.get('Location') || '';
      await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
      $('#v-watch').hidden = true;
      $('#v-stop').hidden = false;
      $('#v-stats').hidden = false;
      statsTimer = setInterval(stats, 1000);
    } catch (e) {
      stop(false);
      setLive('off', 'Not watching');
      showError(e.message || String(e));
    } finally {
      $('#v-watch').disabled = false;
    }
  }

  function gathered(conn) {
    if (conn.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, 2000); // send what we have
      conn.addEventListener('icegatheringstatechange', () => {
        if (conn.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      });
    });
  }

  async function stats() {
    if (!pc) return;
    const report = await pc.getStats();
    report.forEach((r) => {
      if (r.type !== 'inbound-rtp' || r.kind !== 'video') return;
      const fps = r.framesPerSecond ?? (last ? ((r.framesDecoded - last.framesDecoded) * 1000) / (r.timestamp - last.timestamp) : 0);
      $('#v-fps').textContent = Number.isFinite(fps) ? fps.toFixed(0) : '—';
      $('#v-decoded').textContent = String(r.framesDecoded ?? 0);
      $('#v-lost').textContent = String(r.packetsLost ?? 0);
      // Latency as the browser sees it: jitter buffer delay per frame plus half the round trip.
      let ms = null;
      if (last && r.jitterBufferEmittedCount > last.jitterBufferEmittedCount) {
        ms = ((r.jitterBufferDelay - last.jitterBufferDelay) / (r.jitterBufferEmittedCount - last.jitterBufferEmittedCount)) * 1000;
      }
      report.forEach((p) => {
        if (p.type === 'candidate-pair' && p.nominated && p.currentRoundTripTime !== undefined) ms = (ms || 0) + (p.currentRoundTripTime * 1000) / 2;
      });
      $('#v-latency').textContent = ms === null ? '—' : `${ms.toFixed(0)} ms`;
      root.dataset.framesDecoded = String(r.framesDecoded ?? 0);
      last = r;
    });
  }

  function stop(leave = true) {
    clearInterval(statsTimer);
    statsTimer = null;
    last = null;
    if (leave && location) {
      const headers = {};
      if (csrf()) headers['X-CSRF-Token'] = csrf();
      fetch(location, { method: 'DELETE', headers, credentials: 'same-origin' }).catch(() => {});
    }
    location = '';
    if (pc) { pc.onconnectionstatechange = null; pc.close(); pc = null; }
    const video = $('#v-video');
    if (video) { video.srcObject = null; video.hidden = true; }
    if (!gone) {
      $('#v-watch').hidden = false;
      $('#v-stop').hidden = true;
      setLive('off', 'Not watching');
    }
  }

  async function loadRecordings() {
    const el = $('#v-recordings');
    try {
      const res = await get(`${base}/video`);
      if (gone) return;
      const recs = res.recordings || [];
      el.innerHTML = recs.length === 0 ? '<p class="muted">No recordings. A door-forced or tamper alarm records a clip.</p>' : `
        <ul class="v-recs">${recs.map((r) => `<li data-recording="${r.id}" data-state="${esc(r.state)}">
          <span>${esc(fmtTime(r.started_at))}</span>
          ${r.alarm_id ? `<a href="#/alarms">alarm ${r.alarm_id}</a>` : ''}
          <span class="muted">${esc(r.state)}${r.state === 'done' ? ` · ${(r.duration_ms / 1000).toFixed(0)} s · ${(r.bytes / 1024).toFixed(0)} KiB` : ''}${r.error ? ` · ${esc(r.error)}` : ''}</span>
          ${r.state === 'done' ? `<button type="button" class="btn-quiet v-play" data-id="${r.id}">Play</button>
            <a href="/api/v1/recordings/${r.id}/file" download>Download</a>` : ''}
        </li>`).join('')}</ul>`;
    } catch (e) {
      el.innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  }

  root.addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    if (b.id === 'v-watch') watch();
    else if (b.id === 'v-stop') stop();
    else if (b.classList.contains('v-play')) {
      const li = b.closest('li');
      if (li.querySelector('video')) return;
      const v = document.createElement('video');
      v.controls = true;
      v.className = 'v-clip';
      v.src = `/api/v1/recordings/${b.dataset.id}/file`;
      li.appendChild(v);
      v.play().catch(() => {});
    }
  });
  loadRecordings();
  const recTimer = setInterval(loadRecordings, 15000);
  const onHide = () => stop();
  window.addEventListener('pagehide', onHide);

  return () => {
    gone = true;
    clearInterval(recTimer);
    window.removeEventListener('pagehide', onHide);
    stop();
  };
}
