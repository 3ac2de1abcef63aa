// Package hubtest boots a whole hub in-process for tests: a fresh PostgreSQL
// database, real TLS, ports chosen by the kernel, an admin API client and a
// helper that issues device certificates. Everything stops in t.Cleanup.
package hubtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/video"
	"github.com/lockerhub/lockerhub/web"
)

// Hub is a running hub under test.
type Hub struct {
	App        *app.App
	MQTTAddr   string // host:port of the mTLS MQTT listener
	HTTPURL    string // http://host:port of the API
	DeviceURL  string // https://host:port of the device listener
	DataDir    string
	DBURL      string
	AdminToken string
	Admin      *apiclient.Client // authenticated as admin
	// AdminPassword is the dashboard password of user "admin".
	AdminPassword string
	Log           *bytes.Buffer // the hub's log (also on stderr with HUBTEST_LOG=1)

	t   testing.TB
	cfg app.Config
}

// Option changes the configuration before start.
type Option func(*app.Config)

// Start boots a hub and registers its shutdown with t.Cleanup. Without
// PostgreSQL the test is skipped, or failed when CI=true.
func Start(t testing.TB, opts ...Option) *Hub {
	t.Helper()
	dbURL := pgtest.NewDB(t, app.Migrations()...)
	h := &Hub{DataDir: t.TempDir(), DBURL: dbURL, t: t, Log: &bytes.Buffer{}}
	cfg := app.Config{
		DataDir:     h.DataDir,
		DatabaseURL: dbURL,
		MQTTAddr:    "127.0.0.1:0",
		HTTPAddr:    "127.0.0.1:0",
		DeviceAddr:  "127.0.0.1:0",
		// The camera relay's ICE port: loopback (its host candidate), kernel-chosen.
		Video:  video.Config{UDPAddr: "127.0.0.1:0"},
		Logger: slog.New(slog.NewTextHandler(logWriter(h.Log), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Out:    io.Discard,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.DataDir = cfg.DataDir // an option may give the hub another one (a small file system in fault tests)
	h.boot(cfg)
	return h
}

// Restart stops the hub and starts it again on the same addresses, data
// directory and database, as an operator's restart does. It returns when the
// new hub listens.
func (h *Hub) Restart() {
	h.t.Helper()
	cfg := h.cfg
	cfg.MQTTAddr, cfg.HTTPAddr, cfg.DeviceAddr = h.MQTTAddr, h.App.HTTPAddr(), h.App.DeviceAddr()
	h.App.Shutdown()
	h.boot(cfg)
}

func (h *Hub) boot(cfg app.Config) {
	t := h.t
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.cfg = cfg
	a := app.New(cfg)
	if err := a.Start(ctx); err != nil {
		a.Shutdown()
		t.Fatalf("hubtest: start hub: %v\nlog:\n%s", err, h.Log.String())
	}
	t.Cleanup(a.Shutdown)
	h.App = a
	h.MQTTAddr = a.MQTTAddr()
	h.HTTPURL = "http://" + a.HTTPAddr()
	h.DeviceURL = "https://" + a.DeviceAddr()
	h.AdminToken = a.AdminToken
	h.AdminPassword = a.AdminPassword
	h.Admin = apiclient.New(h.HTTPURL, h.AdminToken)
}

type syncWriter struct {
	w   io.Writer
	buf *bytes.Buffer
	mu  chan struct{}
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	s.buf.Write(p)
	if s.w != nil {
		_, _ = s.w.Write(p)
	}
	return len(p), nil
}

func logWriter(buf *bytes.Buffer) io.Writer {
	w := &syncWriter{buf: buf, mu: make(chan struct{}, 1)}
	if os.Getenv("HUBTEST_LOG") == "1" {
		w.w = os.Stderr
	}
	return w
}

// CAPool returns a pool with the hub's CA (to verify the server certificate).
func (h *Hub) CAPool() *x509.CertPool { return h.App.CA.Pool() }

// CAFile is the path of the hub's CA certificate.
func (h *Hub) CAFile() string { return filepath.Join(h.DataDir, pki.CACertFile) }

// AddLocker registers a locker with 10 cells.
func (h *Hub) AddLocker(id string) {
	h.t.Helper()
	if _, err := h.Admin.CreateLocker(context.Background(), apiclient.NewLocker{ID: id, Cells: 10, Segment: "test"}); err != nil {
		h.t.Fatalf("hubtest: add locker %s: %v", id, err)
	}
}

// DeviceCert is a locker's certificate as files and as a TLS certificate.
type DeviceCert struct {
	CertFile, KeyFile, CAFile string
	TLS                       tls.Certificate
	Serial                    string
}

// IssueCert makes a key and CSR like a locker does, has the hub sign it over the
// API, and writes ID.crt, ID.key and ca.crt into a temporary directory.
func (h *Hub) IssueCert(lockerID string) DeviceCert {
	h.t.Helper()
	csr, key, err := pki.NewKeyAndCSR(lockerID)
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := h.Admin.IssueCertificate(context.Background(), lockerID, csr)
	if err != nil {
		h.t.Fatalf("hubtest: issue certificate for %s: %v", lockerID, err)
	}
	dir := h.t.TempDir()
	d := DeviceCert{
		CertFile: filepath.Join(dir, lockerID+".crt"),
		KeyFile:  filepath.Join(dir, lockerID+".key"),
		CAFile:   filepath.Join(dir, "ca.crt"),
		Serial:   c.Serial,
	}
	for path, data := range map[string][]byte{d.CertFile: []byte(c.Certificate), d.KeyFile: key, d.CAFile: []byte(c.CA)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			h.t.Fatal(err)
		}
	}
	if d.TLS, err = tls.X509KeyPair([]byte(c.Certificate), key); err != nil {
		h.t.Fatal(err)
	}
	return d
}

// Locker registers a locker and issues its certificate.
func (h *Hub) Locker(id string) DeviceCert {
	h.t.Helper()
	h.AddLocker(id)
	return h.IssueCert(id)
}

// ClientTLS is a TLS configuration for a locker presenting cert.
func (h *Hub) ClientTLS(cert DeviceCert) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert.TLS}, RootCAs: h.CAPool(), ServerName: "127.0.0.1"}
}

// Eventually polls cond every 10 ms until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Metric returns the value of a counter or gauge of the hub's registry whose
// labels include the given name/value pairs (summed over matching series).
func (h *Hub) Metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.App.Metrics.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// AddUser creates a dashboard user with role and a random password, and
// returns the password.
func (h *Hub) AddUser(username, role string) string {
	h.t.Helper()
	pw := access.RandomPassword()
	if _, err := h.App.Access.CreateUser(context.Background(), username, pw, role); err != nil {
		h.t.Fatalf("hubtest: add user %s: %v", username, err)
	}
	return pw
}

// Session is a logged-in HTTP client, as a browser is after the login page.
type Session struct {
	Client *http.Client // carries the session cookie
	Cookie *http.Cookie // lockerhub_session, e.g. to put into a real browser
	CSRF   string       // send as X-CSRF-Token on every non-GET request
	Role   string
}

// Login logs username in with password through POST /api/v1/session.
func (h *Hub) Login(username, password string) Session {
	h.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	body, _ := json.Marshal(map[string]string{"username": username, "password": password})
	resp, err := c.Post(h.HTTPURL+"/api/v1/session", "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatalf("hubtest: login %s: %v", username, err)
	}
	defer resp.Body.Close()
	var out struct {
		Role      string `json:"role"`
		CSRFToken string `json:"csrf_token"`
		Message   string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		h.t.Fatalf("hubtest: login %s: HTTP %d %s %v", username, resp.StatusCode, out.Message, err)
	}
	s := Session{Client: c, CSRF: out.CSRFToken, Role: out.Role}
	for _, ck := range resp.Cookies() {
		if ck.Name == web.SessionCookie {
			s.Cookie = ck
		}
	}
	if s.Cookie == nil {
		h.t.Fatalf("hubtest: login %s: no %s cookie", username, web.SessionCookie)
	}
	return s
}

// LoginAdmin logs in as user "admin".
func (h *Hub) LoginAdmin() Session {
	h.t.Helper()
	return h.Login(access.AdminUser, h.AdminPassword)
}

// HTTPTLS gives the API listener a certificate of its own (from a separate CA
// for 127.0.0.1) and returns the option and a client that trusts it.
func HTTPTLS(t testing.TB) (Option, *http.Client) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.LoadOrCreateServerCert(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	opt := func(c *app.Config) {
		c.HTTPTLSCert = filepath.Join(dir, pki.ServerCertFile)
		c.HTTPTLSKey = filepath.Join(dir, pki.ServerKeyFile)
	}
	return opt, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
}

// Node makes the hub one of several nodes sharing its database, under this
// name (docs/scaling.md).
func Node(name string) Option {
	return func(c *app.Config) { c.Cluster.Node = name }
}

// Join boots another hub on first's database, with a copy of first's data
// directory (the same CA, server certificate and admin credential) and ports
// of its own: with Node options on both, a second node of one cluster.
func Join(t testing.TB, first *Hub, opts ...Option) *Hub {
	t.Helper()
	h := &Hub{DataDir: t.TempDir(), DBURL: first.DBURL, t: t, Log: &bytes.Buffer{}}
	entries, err := os.ReadDir(first.DataDir)
	if err != nil {
		t.Fatalf("hubtest: read data dir: %v", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(first.DataDir, e.Name()))
		if err != nil {
			t.Fatalf("hubtest: copy data dir: %v", err)
		}
		if err := os.WriteFile(filepath.Join(h.DataDir, e.Name()), data, 0o600); err != nil {
			t.Fatalf("hubtest: copy data dir: %v", err)
		}
	}
	cfg := first.cfg
	cfg.DataDir = h.DataDir
	cfg.MQTTAddr, cfg.HTTPAddr, cfg.DeviceAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Video = video.Config{UDPAddr: "127.0.0.1:0"}
	cfg.Cluster = first.cfg.Cluster
	cfg.Cluster.Node = ""
	cfg.Logger = slog.New(slog.NewTextHandler(logWriter(h.Log), &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, o := range opts {
		o(&cfg)
	}
	h.boot(cfg)
	return h
}
