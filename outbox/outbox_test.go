package outbox_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/pki"
)

// rig is a database with the outbox schema and a running dispatcher.
type rig struct {
	t    *testing.T
	reg  *prometheus.Registry
	pool *pgxpool.Pool
	cfg  outbox.Config
	stop func()
}

func fastConfig() outbox.Config {
	return outbox.Config{BackoffMin: 20 * time.Millisecond, BackoffMax: 80 * time.Millisecond, PollInterval: 200 * time.Millisecond,
		RequestTimeout: 5 * time.Second, WaitUnavailable: time.Hour}
}

func newRig(t *testing.T, cfg outbox.Config) *rig {
	t.Helper()
	pool := pgtest.Pool(t, audit.Migrations(), outbox.Migrations())
	r := &rig{t: t, pool: pool, cfg: cfg}
	r.start()
	return r
}

func (r *rig) start() {
	r.t.Helper()
	r.reg = prometheus.NewRegistry()
	d, err := outbox.New(r.pool, r.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), r.reg)
	require.NoError(r.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	r.t.Cleanup(r.stop)
}

func (r *rig) enqueue(m outbox.Message) {
	r.t.Helper()
	require.NoError(r.t, pg.Tx(context.Background(), r.pool, func(tx pgx.Tx) error { return outbox.Enqueue(context.Background(), tx, m) }))
}

func (r *rig) state(id string) (state string, attempts int, lastErr string) {
	r.t.Helper()
	var le *string
	require.NoError(r.t, r.pool.QueryRow(context.Background(), `SELECT state, attempts, last_error FROM outbox_messages WHERE id = $1`, id).Scan(&state, &attempts, &le))
	if le != nil {
		lastErr = *le
	}
	return
}

// receiver is a webhook endpoint that verifies every delivery.
type receiver struct {
	mu      sync.Mutex
	secret  string
	got     []map[string]any
	ids     []string
	answers []int // status per request; 200 once exhausted
	sigErrs []error
	hold    chan struct{} // when set, the first request blocks until it closes
	held    chan struct{}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	n := len(rc.ids)
	rc.ids = append(rc.ids, r.Header.Get(outbox.DeliveryHeader))
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	rc.got = append(rc.got, m)
	if r.Header.Get("Content-Type") != "application/json" {
		rc.sigErrs = append(rc.sigErrs, errors.New("content type "+r.Header.Get("Content-Type")))
	}
	if err := outbox.Verify(rc.secret, r.Header.Get(outbox.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
		rc.sigErrs = append(rc.sigErrs, err)
	}
	status := 200
	if n < len(rc.answers) {
		status = rc.answers[n]
	}
	hold, held := rc.hold, rc.held
	rc.hold = nil
	rc.mu.Unlock()
	if hold != nil {
		close(held)
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		return
	}
	w.WriteHeader(status)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.ids)
}

func (r *rig) endpoint(clientID int64, rc *receiver) {
	r.t.Helper()
	srv := httptest.NewServer(rc)
	r.t.Cleanup(srv.Close)
	e, err := outbox.NewEndpoints(r.pool).Set(context.Background(), clientID, srv.URL+"/hook", "")
	require.NoError(r.t, err)
	require.True(r.t, strings.HasPrefix(e.Secret, "whsec_"))
	rc.mu.Lock()
	rc.secret = e.Secret
	rc.mu.Unlock()
}

func webhook(id string, client int64) outbox.Message {
	return outbox.Message{ID: id, Channel: outbox.ChannelWebhook, ClientID: client, Template: "parcel.deposited", Data: map[string]any{"parcel": "p-1", "locker": "L1"}}
}

func TestRolledBackIsNeverSentCommittedOnceSigned(t *testing.T) {
	r := newRig(t, fastConfig())
	rc := &receiver{}
	r.endpoint(7, rc)
	ctx := context.Background()

	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		require.NoError(t, outbox.Enqueue(ctx, tx, webhook("m-rolled-back", 7)))
		return errors.New("the change failed")
	})
	require.Error(t, err)
	r.enqueue(webhook("m-1", 7))
	r.enqueue(webhook("m-1", 7)) // the same id again: a no-op

	hubtest.Eventually(t, 5*time.Second, "m-1 delivered", func() bool { s, _, _ := r.state("m-1"); return s == "sent" })
	require.Never(t, func() bool { return rc.count() > 1 }, 300*time.Millisecond, 20*time.Millisecond)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Empty(t, rc.sigErrs)
	require.Equal(t, []string{"m-1"}, rc.ids)
	require.Equal(t, "m-1", rc.got[0]["id"])
	require.Equal(t, "parcel.deposited", rc.got[0]["type"])
	require.Equal(t, map[string]any{"parcel": "p-1", "locker": "L1"}, rc.got[0]["data"])
	_, err = time.Parse(time.RFC3339, rc.got[0]["created_at"].(string))
	require.NoError(t, err)
	var n int
	require.NoError(t, r.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_messages WHERE id = 'm-rolled-back'`).Scan(&n))
	require.Zero(t, n)
}

func TestRetriesAfter500WithTheSameID(t *testing.T) {
	r := newRig(t, fastConfig())
	rc := &receiver{answers: []int{500, 500, 200}}
	r.endpoint(7, rc)
	r.enqueue(webhook("m-retry", 7))
	hubtest.Eventually(t, 5*time.Second, "delivered on the third try", func() bool { s, _, _ := r.state("m-retry"); return s == "sent" })
	require.Never(t, func() bool { return rc.count() > 3 }, 400*time.Millisecond, 20*time.Millisecond)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Equal(t, []string{"m-retry", "m-retry", "m-retry"}, rc.ids)
	require.Empty(t, rc.sigErrs)
	_, attempts, _ := r.state("m-retry")
	require.Equal(t, 3, attempts)
}

func TestA400GivesUp(t *testing.T) {
	r := newRig(t, fastConfig())
	rc := &receiver{answers: []int{400, 400, 400, 400, 400}}
	r.endpoint(7, rc)
	r.enqueue(webhook("m-bad", 7))
	hubtest.Eventually(t, 5*time.Second, "given up", func() bool { s, _, _ := r.state("m-bad"); return s == "failed" })
	_, attempts, lastErr := r.state("m-bad")
	require.Equal(t, 3, attempts) // Config.RefusedAttempts
	require.Contains(t, lastErr, "refused: HTTP 400")
	require.Never(t, func() bool { return rc.count() > 3 }, 300*time.Millisecond, 20*time.Millisecond)
}

func TestWebhookWaitsForAnEndpoint(t *testing.T) {
	r := newRig(t, fastConfig())
	r.enqueue(webhook("m-wait", 9))
	hubtest.Eventually(t, 5*time.Second, "waiting for an endpoint", func() bool {
		s, _, le := r.state("m-wait")
		return s == "pending" && strings.HasPrefix(le, "no_endpoint:")
	})
	_, attempts, _ := r.state("m-wait")
	require.Zero(t, attempts)
	rc := &receiver{}
	r.endpoint(9, rc) // wakes it
	hubtest.Eventually(t, 5*time.Second, "delivered once the endpoint is set", func() bool { s, _, _ := r.state("m-wait"); return s == "sent" })
	require.Equal(t, 1, rc.count())
}

func TestStoppedMidSendIsNotLost(t *testing.T) {
	r := newRig(t, fastConfig())
	rc := &receiver{hold: make(chan struct{}), held: make(chan struct{})}
	r.endpoint(7, rc)
	r.enqueue(webhook("m-crash", 7))
	select {
	case <-rc.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the first send did not arrive")
	}
	r.stop() // the hub stops while the receiver holds the request
	s, _, _ := r.state("m-crash")
	require.Equal(t, "pending", s)
	r.start()
	hubtest.Eventually(t, 5*time.Second, "delivered after the restart", func() bool { s, _, _ := r.state("m-crash"); return s == "sent" })
	require.Equal(t, 2, rc.count())
	rc.mu.Lock()
	require.Equal(t, []string{"m-crash", "m-crash"}, rc.ids)
	rc.mu.Unlock()
}

func TestSMSGatewayGetsTheRenderedText(t *testing.T) {
	type sms struct{ To, Text, ID, Auth string }
	got := make(chan sms, 4)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ To, Text, ID string }
		require.NoError(t, json.NewDecoder(r.Body).Decode(&in))
		got <- sms{in.To, in.Text, in.ID, r.Header.Get("Authorization")}
	}))
	t.Cleanup(gw.Close)
	cfg := fastConfig()
	cfg.SMS = outbox.SMSConfig{URL: gw.URL, Token: "gw-token"}
	r := newRig(t, cfg)
	r.enqueue(outbox.Message{ID: "s-1", Channel: outbox.ChannelSMS, To: "+4917012345678", Template: "parcel_ready",
		Data: map[string]any{"code": "48213907", "address": "Hauptstr. 1, Berlin", "deadline": "2026-12-05 18:00"}})
	select {
	case m := <-got:
		require.Equal(t, "+4917012345678", m.To)
		require.Equal(t, "s-1", m.ID)
		require.Equal(t, "Bearer gw-token", m.Auth)
		require.Contains(t, m.Text, "48213907")
		require.Contains(t, m.Text, "Hauptstr. 1, Berlin")
		require.Contains(t, m.Text, "2026-12-05 18:00")
	case <-time.After(5 * time.Second):
		t.Fatal("no SMS")
	}
	hubtest.Eventually(t, 5*time.Second, "sent", func() bool { s, _, _ := r.state("s-1"); return s == "sent" })

	// A template variable missing: failed at once with reason template.
	r.enqueue(outbox.Message{ID: "s-2", Channel: outbox.ChannelSMS, To: "+4917012345678", Template: "parcel_ready", Data: map[string]any{"code": "1"}})
	hubtest.Eventually(t, 5*time.Second, "failed", func() bool { s, _, _ := r.state("s-2"); return s == "failed" })
	_, _, le := r.state("s-2")
	require.Contains(t, le, "template")
}

func TestUnconfiguredChannelWaits(t *testing.T) {
	r := newRig(t, fastConfig())
	r.enqueue(outbox.Message{ID: "s-w", Channel: outbox.ChannelSMS, To: "+4917012345678", Template: "parcel_expired", Data: map[string]any{"address": "x"}})
	hubtest.Eventually(t, 5*time.Second, "waiting", func() bool {
		s, _, le := r.state("s-w")
		return s == "pending" && strings.HasPrefix(le, "not_configured:")
	})
}

func TestEnqueueRefusesBadMessages(t *testing.T) {
	pool := pgtest.Pool(t, audit.Migrations(), outbox.Migrations())
	for _, m := range []outbox.Message{
		{Channel: "sms", To: "+4917012345678", Template: "parcel_ready"},
		{ID: "x", Channel: "fax", Template: "parcel_ready"},
		{ID: "x", Channel: "sms", To: "017012345678", Template: "parcel_ready"},
		{ID: "x", Channel: "email", To: "a@b.c\r\nBcc: x@y.z", Template: "parcel_ready"},
		{ID: "x", Channel: "webhook", Template: "parcel.deposited"},
	} {
		err := pg.Tx(context.Background(), pool, func(tx pgx.Tx) error { return outbox.Enqueue(context.Background(), tx, m) })
		require.ErrorIs(t, err, outbox.ErrInvalid, "%+v", m)
	}
}

func TestTemplateOverrideAndStartupError(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "parcel_ready.sms.txt"), []byte("CODE {{.code}} at {{.address}}\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "parcel_ready.email.txt"), []byte("Subject: Pickup {{.code}}\n\nOverride body {{.code}}\n"), 0o644))
	tm, err := outbox.LoadTemplates(dir)
	require.NoError(t, err)
	text, err := tm.SMS("parcel_ready", map[string]any{"code": "1234", "address": "A"})
	require.NoError(t, err)
	require.Equal(t, "CODE 1234 at A", text)
	subj, body, err := tm.Email("parcel_ready", map[string]any{"code": "1234"})
	require.NoError(t, err)
	require.Equal(t, "Pickup 1234", subj)
	require.Equal(t, "Override body 1234\n", body)
	// The built-ins not overridden are still there.
	_, err = tm.SMS("pickup_reminder", map[string]any{"code": "1", "address": "A", "deadline": "d"})
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "pickup_reminder.sms.txt"), []byte("{{.code"), 0o644))
	_, err = outbox.LoadTemplates(dir)
	require.ErrorContains(t, err, "pickup_reminder.sms.txt")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pickup_reminder.sms.txt"), []byte("ok {{.code}}"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x.email.txt"), []byte("no subject line\n"), 0o644))
	_, err = outbox.New(nil, outbox.Config{TemplatesDir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.ErrorContains(t, err, "Subject")
}

// smtpServer is a minimal SMTP receiver: enough of RFC 5321 for one client
// that does EHLO, MAIL, RCPT, DATA, QUIT.
type smtpServer struct {
	ln   net.Listener
	tls  *tls.Config // when set, STARTTLS is offered and AUTH after it
	mail chan string
}

func newSMTPServer(t *testing.T, tc *tls.Config) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &smtpServer{ln: ln, tls: tc, mail: make(chan string, 4)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(c) }()
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer func() { c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	say := func(line string) { _, _ = io.WriteString(c, line+"\r\n") }
	say("220 test ESMTP")
	var env strings.Builder
	secure := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-test")
			if s.tls != nil && !secure {
				say("250-STARTTLS")
			}
			if secure {
				say("250-AUTH PLAIN")
			}
			say("250 8BITMIME")
		case cmd == "STARTTLS" && s.tls != nil:
			say("220 go ahead")
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c, br, secure = tc, bufio.NewReader(tc), true
			env.WriteString("TLS\n")
		case strings.HasPrefix(cmd, "AUTH PLAIN"):
			b, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(line[len("AUTH PLAIN"):]))
			env.WriteString("AUTH " + strings.ReplaceAll(string(b), "\x00", "|") + "\n")
			say("235 ok")
		case strings.HasPrefix(cmd, "MAIL FROM:"), strings.HasPrefix(cmd, "RCPT TO:"):
			env.WriteString(strings.TrimSpace(line) + "\n")
			say("250 ok")
		case cmd == "DATA":
			say("354 go ahead")
			var data strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			s.mail <- env.String() + "\n" + data.String()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

func TestEmailOverSMTP(t *testing.T) {
	srv := newSMTPServer(t, nil)
	cfg := fastConfig()
	cfg.SMTP = outbox.SMTPConfig{Addr: srv.ln.Addr().String(), From: "lockers@example.com"}
	r := newRig(t, cfg)
	r.enqueue(outbox.Message{ID: "e-1", Channel: outbox.ChannelEmail, To: "anna@example.org", Template: "parcel_ready",
		Data: map[string]any{"code": "48213907", "address": "Hauptstr. 1, Berlin", "deadline": "2026-12-05 18:00"}})
	select {
	case m := <-srv.mail:
		require.Contains(t, m, "MAIL FROM:<lockers@example.com>")
		require.Contains(t, m, "RCPT TO:<anna@example.org>")
		require.Contains(t, m, "Subject: Your parcel is ready for pickup\r\n")
		require.Contains(t, m, "Message-ID: <e-1@lockerhub>")
		require.Contains(t, m, "Pickup code: 48213907")
		require.Contains(t, m, "Hauptstr. 1, Berlin")
	case <-time.After(5 * time.Second):
		t.Fatal("no e-mail")
	}
	hubtest.Eventually(t, 5*time.Second, "sent", func() bool { s, _, _ := r.state("e-1"); return s == "sent" })
}

// TestEmailSTARTTLSAndAuth: a server that offers STARTTLS gets TLS (with
// the certificate verified) before AUTH PLAIN and the message.
func TestEmailSTARTTLSAndAuth(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	require.NoError(t, err)
	cert, err := ca.LoadOrCreateServerCert(dir, []string{"127.0.0.1"})
	require.NoError(t, err)
	srv := newSMTPServer(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	cfg := fastConfig()
	cfg.SMTP = outbox.SMTPConfig{Addr: srv.ln.Addr().String(), From: "lockers@example.com", User: "hub", Password: "pw",
		TLS: &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}}
	r := newRig(t, cfg)
	r.enqueue(outbox.Message{ID: "e-tls", Channel: outbox.ChannelEmail, To: "anna@example.org", Template: "parcel_expired", Data: map[string]any{"address": "Hauptstr. 1"}})
	select {
	case m := <-srv.mail:
		require.True(t, strings.HasPrefix(m, "TLS\nAUTH |hub|pw\nMAIL FROM:"), m)
		require.Contains(t, m, "Subject: Your parcel goes back to the sender")
	case <-time.After(5 * time.Second):
		t.Fatal("no e-mail")
	}
	hubtest.Eventually(t, 5*time.Second, "sent", func() bool { s, _, _ := r.state("e-tls"); return s == "sent" })
}

// TestTwoDispatchersSendEachMessageOnce: two hubs on one database share
// the queue (SKIP LOCKED claims): every message arrives exactly once.
func TestTwoDispatchersSendEachMessageOnce(t *testing.T) {
	r := newRig(t, fastConfig())
	second := &rig{t: t, pool: r.pool, cfg: r.cfg}
	second.start()
	rc := &receiver{}
	r.endpoint(7, rc)
	const n = 60
	ctx := context.Background()
	require.NoError(t, pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		for i := range n {
			if err := outbox.Enqueue(ctx, tx, webhook("m-"+strconv.Itoa(i), 7)); err != nil {
				return err
			}
		}
		return nil
	}))
	hubtest.Eventually(t, 10*time.Second, "all sent", func() bool {
		var left int
		require.NoError(t, r.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_messages WHERE state <> 'sent'`).Scan(&left))
		return left == 0
	})
	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Len(t, rc.ids, n)
	seen := map[string]bool{}
	for _, id := range rc.ids {
		require.False(t, seen[id], "sent twice: %s", id)
		seen[id] = true
	}
	require.Empty(t, rc.sigErrs)
}

// TestPollFindsWhatNoNotifyAnnounced: a message whose NOTIFY was lost (here:
// inserted without one) is sent by the fallback poll.
func TestPollFindsWhatNoNotifyAnnounced(t *testing.T) {
	r := newRig(t, fastConfig())
	rc := &receiver{}
	r.endpoint(7, rc)
	_, err := r.pool.Exec(context.Background(), `INSERT INTO outbox_messages (id, channel, client_id, template) VALUES ('m-quiet', 'webhook', 7, 'parcel.deposited')`)
	require.NoError(t, err)
	hubtest.Eventually(t, 5*time.Second, "sent by the poll", func() bool { s, _, _ := r.state("m-quiet"); return s == "sent" })
}

// TestMetrics: sent and failed counters, and the queue read at scrape.
func TestMetrics(t *testing.T) {
	r := newRig(t, fastConfig())
	rc := &receiver{answers: []int{200, 404, 404, 404}}
	r.endpoint(7, rc)
	r.enqueue(webhook("m-ok", 7))
	hubtest.Eventually(t, 5*time.Second, "sent", func() bool { s, _, _ := r.state("m-ok"); return s == "sent" })
	r.enqueue(webhook("m-404", 7))
	hubtest.Eventually(t, 5*time.Second, "failed", func() bool { s, _, _ := r.state("m-404"); return s == "failed" })
	r.enqueue(outbox.Message{ID: "s-wait", Channel: outbox.ChannelSMS, To: "+4917012345678", Template: "parcel_expired", Data: map[string]any{"address": "x"}})
	hubtest.Eventually(t, 5*time.Second, "waiting", func() bool { _, _, le := r.state("s-wait"); return le != "" })

	got := map[string]float64{}
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[k] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[k] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				got[k] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	require.Equal(t, 1.0, got["lockerhub_outbox_sent_total,channel=webhook"])
	require.Equal(t, 1.0, got["lockerhub_outbox_failed_total,channel=webhook,reason=refused"])
	require.Equal(t, 1.0, got["lockerhub_outbox_waiting_total,channel=sms,reason=not_configured"])
	require.Equal(t, 3.0, got["lockerhub_outbox_attempts_total,channel=webhook,result=error"])
	require.Equal(t, 3.0, got["lockerhub_outbox_send_duration_seconds,channel=webhook,result=error"])
	require.Equal(t, 1.0, got["lockerhub_outbox_pending_messages,channel=sms"])
	require.Equal(t, 0.0, got["lockerhub_outbox_pending_messages,channel=webhook"])
	require.Greater(t, got["lockerhub_outbox_oldest_pending_age_seconds,channel=sms"], 0.0)
	require.Equal(t, 0.0, got["lockerhub_outbox_channel_configured,channel=sms"])
	require.Equal(t, 1.0, got["lockerhub_outbox_channel_configured,channel=webhook"])
}

// TestDatabaseCutLosesNothing: while the dispatcher's connections are cut, a
// message is enqueued (its NOTIFY reaches nobody); after the restore the
// LISTEN connection comes back, wakes the dispatcher and the message goes,
// long before the (here 1-minute) poll.
func TestDatabaseCutLosesNothing(t *testing.T) {
	url := pgtest.NewDB(t, audit.Migrations(), outbox.Migrations())
	direct, err := pg.Connect(context.Background(), url, 4)
	require.NoError(t, err)
	t.Cleanup(direct.Close)
	purl, proxy := pgtest.Proxied(t, url)
	viaProxy, err := pg.Connect(context.Background(), purl, 4)
	require.NoError(t, err)
	t.Cleanup(viaProxy.Close)
	cfg := fastConfig()
	cfg.PollInterval = time.Minute
	r := &rig{t: t, pool: viaProxy, cfg: cfg}
	r.start()
	rc := &receiver{}
	r.endpoint(7, rc)
	r.enqueue(webhook("m-before", 7))
	hubtest.Eventually(t, 5*time.Second, "sent on NOTIFY", func() bool { return rc.count() == 1 })

	proxy.Cut()
	require.NoError(t, pg.Tx(context.Background(), direct, func(tx pgx.Tx) error {
		return outbox.Enqueue(context.Background(), tx, webhook("m-during", 7))
	}))
	proxy.Restore()
	hubtest.Eventually(t, 10*time.Second, "sent after the restore", func() bool { return rc.count() == 2 })
	rc.mu.Lock()
	require.Equal(t, []string{"m-before", "m-during"}, rc.ids)
	rc.mu.Unlock()
}

// TestDenyPrivateWebhooks: with DenyPrivateWebhooks a client's endpoint on
// loopback is refused at connect time and the message fails as refused;
// nothing reaches the receiver.
func TestDenyPrivateWebhooks(t *testing.T) {
	cfg := fastConfig()
	cfg.DenyPrivateWebhooks = true
	r := newRig(t, cfg)
	rc := &receiver{}
	r.endpoint(7, rc)
	r.enqueue(webhook("m-private", 7))
	hubtest.Eventually(t, 5*time.Second, "refused", func() bool { s, _, _ := r.state("m-private"); return s == "failed" })
	_, _, le := r.state("m-private")
	require.Contains(t, le, "loopback, private or link-local")
	require.Zero(t, rc.count())
}
