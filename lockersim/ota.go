package lockersim

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// Firmware updates (docs/protocol.md 7.4 and 8, docs/ota.md). ota.install
// is answered at once with {"accepted":true}; a goroutine then downloads
// the artifact over HTTPS with the locker's client certificate, hashing as
// it goes (nothing is written to disk: a real locker would keep the partial
// file; the simulator keeps the hash state and the offset in memory, which
// is what it needs to resume with a Range request), checks the SHA-256 and
// the hub's Ed25519 signature (the key is fetched once from the device
// listener, GET /api/v1/ota/key, standing in for the key put on the locker
// at provisioning), "installs" (stores the new version on disk), reboots,
// and after the reconnect reports the new firmware in its full state and
// ota/status installed. Each step is published on ota/status.

// OTAFault selects lockers for an injected update failure: a percentage of
// attempts, or given locker IDs (every attempt).
type OTAFault struct {
	Pct     float64
	Lockers map[string]bool
}

// String is the flag form.
func (f *OTAFault) String() string {
	if f == nil {
		return ""
	}
	if len(f.Lockers) > 0 {
		ids := make([]string, 0, len(f.Lockers))
		for id := range f.Lockers {
			ids = append(ids, id)
		}
		return strings.Join(ids, ",")
	}
	if f.Pct == 0 {
		return ""
	}
	return strconv.FormatFloat(f.Pct, 'g', -1, 64)
}

// Set parses "30" (percent of attempts) or "SIM-00001,SIM-00007" (those lockers).
func (f *OTAFault) Set(s string) error {
	s = strings.TrimSpace(s)
	if p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64); err == nil {
		if p < 0 || p > 100 {
			return errors.New("a percentage must be 0–100")
		}
		f.Pct, f.Lockers = p, nil
		return nil
	}
	f.Pct, f.Lockers = 0, map[string]bool{}
	for _, id := range strings.Split(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			if err := protocol.ValidateLockerID(id); err != nil {
				return err
			}
			f.Lockers[id] = true
		}
	}
	return nil
}

// hits reports whether the fault strikes this attempt of locker id.
func (f OTAFault) hits(id string) bool {
	if f.Lockers[id] {
		return true
	}
	return f.Pct > 0 && mrand.Float64()*100 < f.Pct
}

// OTAFaults are the injectable update failures.
type OTAFaults struct {
	DownloadError OTAFault // the download fails
	BadHash       OTAFault // the downloaded file's hash does not match
	InstallFail   OTAFault // the install fails
	NeverReturn   OTAFault // the locker installs, reboots and never comes back
	Interrupt     OTAFault // the connection drops half-way through the download (it resumes with Range)
}

// otaJob is one update in progress at a locker.
type otaJob struct {
	p protocol.OTAInstallParams
}

// otaEnv is what the lockers' updates share.
type otaEnv struct {
	mu  sync.Mutex
	pub ed25519.PublicKey
	sem chan struct{} // concurrent downloads of the simulation
}

func (e *lockerEnv) otaSlots() chan struct{} {
	e.otaOnce.Do(func() {
		n := e.cfg.OTAMaxDownloads
		if n <= 0 {
			n = 64
		}
		e.ota.sem = make(chan struct{}, n)
	})
	return e.ota.sem
}

// execOTAInstallLocked answers ota.install and starts the update.
func (l *Locker) execOTAInstallLocked(raw json.RawMessage) (any, *protocol.Error, func()) {
	var p protocol.OTAInstallParams
	if err := json.Unmarshal(orEmpty(raw), &p); err != nil || p.Rollout <= 0 || !protocol.ValidVersion(p.Version) ||
		len(p.SHA256) != 64 || p.Size <= 0 || p.Signature == "" || !strings.HasPrefix(p.URL, "https://") {
		return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: "params must carry rollout, version, an https url, size, sha256 and signature"}, nil
	}
	if l.tls == nil {
		return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "no client certificate (--plain): cannot download"}, nil
	}
	if err := CheckLoopback(p.URL); err != nil {
		return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: "url: " + err.Error()}, nil
	}
	if l.firmware == p.Version {
		st := protocol.OTAStatus{Header: l.headerLocked(), Rollout: p.Rollout, Version: p.Version, Step: protocol.OTAInstalled}
		l.publishLocked(protocol.KindOTAStatus, st)
		return map[string]any{"accepted": true, "installed": true}, nil, nil
	}
	if j := l.otaJob; j != nil {
		if j.p.Rollout == p.Rollout && j.p.Version == p.Version {
			return map[string]any{"accepted": true}, nil, nil // already under way
		}
		return nil, &protocol.Error{Code: protocol.ErrCodeBusy, Message: "another update is under way (" + j.p.Version + ")"}, nil
	}
	j := &otaJob{p: p}
	l.otaJob = j
	l.env.stats.OTAStarted.Add(1)
	return map[string]any{"accepted": true}, nil, func() {
		l.env.wg.Go(func() { l.runOTA(l.env.ctx, j) })
	}
}

// otaStatus publishes a step of job j; nothing once j is no longer the
// locker's update (a reboot ended it).
func (l *Locker) otaStatus(j *otaJob, step, reason string, bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.otaJob != j {
		return
	}
	l.publishLocked(protocol.KindOTAStatus, protocol.OTAStatus{Header: l.headerLocked(), Rollout: j.p.Rollout, Version: j.p.Version,
		Step: step, Reason: reason, Bytes: bytes})
}

func (l *Locker) otaFail(j *otaJob, reason string) {
	if !l.otaCurrent(j) {
		return
	}
	l.env.stats.OTAFailed.Add(1)
	l.log.Info("update failed", "version", j.p.Version, "reason", reason)
	l.otaStatus(j, protocol.OTAFailed, clipReason(reason), 0)
	l.mu.Lock()
	if l.otaJob == j {
		l.otaJob = nil
	}
	l.mu.Unlock()
}

func (l *Locker) otaCurrent(j *otaJob) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.otaJob == j
}

func clipReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > protocol.MaxOTAReasonLen {
		s = s[:protocol.MaxOTAReasonLen]
	}
	return s
}

// runOTA is the update of one job; it ends when ctx does.
func (l *Locker) runOTA(ctx context.Context, j *otaJob) {
	faults := l.env.cfg.OTA
	l.otaStatus(j, protocol.OTADownloading, "", 0)
	if faults.DownloadError.hits(l.id) {
		l.otaFail(j, "download: injected download error")
		return
	}
	sum, n, err := l.download(ctx, j)
	if ctx.Err() != nil || !l.otaCurrent(j) {
		return
	}
	if err != nil {
		l.otaFail(j, "download: "+err.Error())
		return
	}
	l.otaStatus(j, protocol.OTADownloaded, "", n)
	if faults.BadHash.hits(l.id) {
		sum = strings.Repeat("0", 64)
	}
	if sum != j.p.SHA256 {
		l.otaFail(j, "hash_mismatch: got "+sum)
		return
	}
	pub, err := l.otaKey(ctx, j.p.URL)
	if err != nil {
		l.otaFail(j, "bad_signature: no signing key: "+err.Error())
		return
	}
	sig, err := base64.StdEncoding.DecodeString(j.p.Signature)
	if err != nil || !ed25519.Verify(pub, protocol.OTASignedMessage(j.p.Version, sum, n), sig) {
		l.otaFail(j, "bad_signature: the artifact's signature does not verify")
		return
	}
	l.otaStatus(j, protocol.OTAVerified, "", 0)
	l.otaStatus(j, protocol.OTAInstalling, "", 0)
	if faults.InstallFail.hits(l.id) {
		l.otaFail(j, "install: injected install failure")
		return
	}
	l.mu.Lock()
	if l.otaJob != j {
		l.mu.Unlock()
		return
	}
	st, err := loadState(l.env.cfg.DataDir, l.id)
	if err == nil {
		st.Firmware = j.p.Version
		err = saveState(l.env.cfg.DataDir, l.id, st)
	}
	if err != nil {
		l.mu.Unlock()
		l.otaFail(j, "install: "+err.Error())
		return
	}
	l.firmware = j.p.Version
	l.otaJob = nil
	installed := j.p
	l.otaInstalled = &installed
	l.mu.Unlock()
	l.env.stats.OTAInstalled.Add(1)
	l.log.Info("update installed; rebooting", "version", j.p.Version)
	if faults.NeverReturn.hits(l.id) {
		l.GoOffline(100 * 365 * 24 * time.Hour)
		return
	}
	l.Reboot()
}

// otaReportInstalledLocked publishes ota/status installed after the first
// connect on the new firmware (called after the full state).
func (l *Locker) otaReportInstalledLocked() {
	if p := l.otaInstalled; p != nil {
		l.otaInstalled = nil
		l.publishLocked(protocol.KindOTAStatus, protocol.OTAStatus{Header: l.headerLocked(), Rollout: p.Rollout, Version: p.Version, Step: protocol.OTAInstalled})
	}
}

// otaKey returns the hub's signing key, fetched once from the device
// listener that serves the artifact (artifactURL's origin).
func (l *Locker) otaKey(ctx context.Context, artifactURL string) (ed25519.PublicKey, error) {
	e := &l.env.ota
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pub != nil {
		return e.pub, nil
	}
	u, err := url.Parse(artifactURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("artifact URL %q", artifactURL)
	}
	base := u.Scheme + "://" + u.Host
	c := l.otaClient()
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/v1/ota/key", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/ota/key: HTTP %d %v", resp.StatusCode, err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("the key is not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	pub, ok := k.(ed25519.PublicKey)
	if err != nil || !ok {
		return nil, errors.New("the key is not an Ed25519 public key")
	}
	e.pub = pub
	return pub, nil
}

func (l *Locker) otaClient() *http.Client {
	tc := l.tls.Clone()
	tc.ServerName = "" // from the URL
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true, ForceAttemptHTTP2: false}, Timeout: 0}
}

// download fetches the artifact, resuming with Range after an interruption,
// and returns its SHA-256 (hex) and size. A 503 is waited out (Retry-After);
// other errors are retried a few times.
func (l *Locker) download(ctx context.Context, j *otaJob) (string, int64, error) {
	slots := l.env.otaSlots()
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
	defer func() { <-slots }()
	c := l.otaClient()
	defer c.CloseIdleConnections()
	h := sha256.New()
	var got int64
	interrupt := l.env.cfg.OTA.Interrupt.hits(l.id)
	lastReport := time.Now()
	errorsLeft := 3
	busyLeft := 120
	for {
		if ctx.Err() != nil {
			return "", got, ctx.Err()
		}
		if !l.otaCurrent(j) {
			return "", got, errors.New("the update ended (reboot)")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.p.URL, nil)
		if err != nil {
			return "", got, err
		}
		if got > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", got))
			req.Header.Set("If-Range", `"`+j.p.SHA256+`"`)
			l.env.stats.OTAResumed.Add(1)
		}
		resp, err := c.Do(req)
		if err != nil {
			if errorsLeft--; errorsLeft < 0 {
				return "", got, err
			}
			if !sleepCtx(ctx, time.Second) {
				return "", got, ctx.Err()
			}
			continue
		}
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			resp.Body.Close()
			if busyLeft--; busyLeft < 0 {
				return "", got, errors.New("the hub stayed busy (503)")
			}
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			wait = time.Duration(float64(wait) * (0.5 + mrand.Float64())) // spread the retries
			if !sleepCtx(ctx, wait) {
				return "", got, ctx.Err()
			}
			continue
		case resp.StatusCode == http.StatusOK:
			if got > 0 { // the server sent it all again: start over
				h.Reset()
				got = 0
			}
		case resp.StatusCode == http.StatusPartialContent && got > 0:
		default:
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return "", got, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		var src io.Reader = resp.Body
		stopAt := int64(-1)
		if interrupt {
			stopAt = j.p.Size / 2
			src = io.LimitReader(resp.Body, stopAt-got)
		}
		buf := make([]byte, 32<<10)
		var rerr error
		for {
			n, err := src.Read(buf)
			if n > 0 {
				h.Write(buf[:n])
				got += int64(n)
				if time.Since(lastReport) > 2*time.Second {
					lastReport = time.Now()
					l.otaStatus(j, protocol.OTADownloading, "", got)
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					rerr = err
				}
				break
			}
			if got > j.p.Size {
				break
			}
		}
		resp.Body.Close()
		if interrupt && got == stopAt {
			// The simulated link loss: keep the hash state and the offset, resume.
			interrupt = false
			l.env.stats.OTAInterrupted.Add(1)
			if _, ok := h.(encoding.BinaryMarshaler); !ok {
				return "", got, errors.New("hash state cannot be kept")
			}
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return "", got, ctx.Err()
			}
			continue
		}
		if rerr != nil {
			if errorsLeft--; errorsLeft < 0 {
				return "", got, rerr
			}
			continue // resume where it broke off
		}
		if got != j.p.Size {
			return "", got, fmt.Errorf("got %d bytes, want %d", got, j.p.Size)
		}
		return hex.EncodeToString(h.Sum(nil)), got, nil
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// OTAView is a locker's update state for the control API and tests.
type OTAView struct {
	Firmware string `json:"firmware"`
	Updating string `json:"updating,omitempty"` // the version being installed
}

// OTA returns the locker's firmware and the update under way.
func (l *Locker) OTA() OTAView {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := OTAView{Firmware: l.firmware}
	if l.otaJob != nil {
		v.Updating = l.otaJob.p.Version
	}
	return v
}
