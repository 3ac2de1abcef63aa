package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/pg"
)

// Config sizes the dispatcher; zero values take the defaults in brackets.
type Config struct {
	Concurrency     int           // sends in flight at once [8]
	PollInterval    time.Duration // fallback poll when no NOTIFY arrives [5s]
	BackoffMin      time.Duration // the first retry's delay [1s], doubling …
	BackoffMax      time.Duration // … up to [1h]; each delay jittered to 50–100 %
	MaxAttempts     int           // give up after this many sends [40]
	MaxAge          time.Duration // give up on a message older than this [24h]
	RefusedAttempts int           // a refusal (4xx but 408/429, SMTP 5xx) is tried this often [3]
	WaitUnavailable time.Duration // a message without endpoint/gateway is looked at again after [1h]
	RequestTimeout  time.Duration // one send [10s]
	Lease           time.Duration // a claimed message is not claimed again for [RequestTimeout+30s]
	Retention       time.Duration // sent and failed messages are deleted after [30 days]
	TemplatesDir    string        // overrides of the SMS/e-mail templates (<name>.sms.txt, <name>.email.txt)
	// DenyPrivateWebhooks refuses webhook deliveries to loopback, private,
	// link-local and unspecified addresses (checked at connect time, after
	// DNS, so a name that resolves there is refused too), so an API client
	// cannot aim the hub at its own network. The SMS gateway and the mail
	// server are the operator's and exempt.
	DenyPrivateWebhooks bool
	SMS                 SMSConfig
	SMTP                SMTPConfig
	Fiscal              FiscalConfig
	// WebhookFormats are the partner formats an endpoint may ask for
	// instead of the JSON webhook (Endpoint.Format), by name.
	WebhookFormats map[string]WebhookFormat
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 40
	}
	if c.RefusedAttempts <= 0 {
		c.RefusedAttempts = 3
	}
	def(&c.PollInterval, 5*time.Second)
	def(&c.BackoffMin, time.Second)
	def(&c.BackoffMax, time.Hour)
	def(&c.MaxAge, 24*time.Hour)
	def(&c.WaitUnavailable, time.Hour)
	def(&c.RequestTimeout, 10*time.Second)
	def(&c.Lease, max(c.RequestTimeout, c.Fiscal.Timeout)+30*time.Second)
	def(&c.Retention, 30*24*time.Hour)
}

// Dispatcher sends the outbox. Several hub nodes may each run one on the
// same database: a message is claimed by one of them (FOR UPDATE SKIP
// LOCKED, then a lease).
type Dispatcher struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
	tmpl *Templates
	tpls *TemplateStore
	http *http.Client // SMS gateway
	hook *http.Client // webhooks
	m    *metrics
	wake chan struct{}
}

// New returns a dispatcher; it parses the templates now, so a broken
// template fails the start. reg takes its metrics (nil: not registered).
func New(pool *pgxpool.Pool, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Dispatcher, error) {
	cfg.defaults()
	tmpl, err := LoadTemplates(cfg.TemplatesDir)
	if err != nil {
		return nil, err
	}
	if cfg.SMTP.Addr != "" && cfg.SMTP.From == "" {
		return nil, errors.New("outbox: --smtp-addr needs --smtp-from")
	}
	if cfg.SMS.URL != "" {
		if err := ValidURL(cfg.SMS.URL); err != nil {
			return nil, fmt.Errorf("outbox: --sms-url: %w", err)
		}
	}
	if cfg.Fiscal.URL != "" {
		if err := ValidURL(cfg.Fiscal.URL); err != nil {
			return nil, fmt.Errorf("outbox: --fiscal-url: %w", err)
		}
	}
	d := &Dispatcher{pool: pool, cfg: cfg, log: logger, tmpl: tmpl, tpls: NewTemplateStore(pool, tmpl), wake: make(chan struct{}, 1)}
	d.http = newHTTPClient(cfg.RequestTimeout, false)
	d.hook = newHTTPClient(cfg.RequestTimeout, cfg.DenyPrivateWebhooks)
	d.m = newMetrics(reg, pool, map[string]bool{ChannelWebhook: true, ChannelSMS: cfg.SMS.URL != "", ChannelEmail: cfg.SMTP.Addr != "", ChannelHTTP: true, ChannelFiscal: cfg.Fiscal.URL != ""})
	for ch, ok := range map[string]bool{ChannelSMS: cfg.SMS.URL != "", ChannelEmail: cfg.SMTP.Addr != "", ChannelFiscal: cfg.Fiscal.URL != ""} {
		if !ok {
			logger.Warn("outbox channel not configured: its messages wait until it is", "channel", ch)
		}
	}
	return d, nil
}

// Templates returns the store of the editable notification templates
// (over this dispatcher's defaults).
func (d *Dispatcher) Templates() *TemplateStore { return d.tpls }

// claimed is a message being sent.
type claimed struct {
	Message
	Attempts  int
	CreatedAt time.Time
	Replays   int       // manual replays so far (the delivery log's "replay")
	since     time.Time // created, or replayed last: MaxAge counts from it
	rendered  string    // sms: the text; email: subject, "\n", body (set by the send)
	status    int       // webhook, http: the receiver's HTTP status (0: no answer)
}

// Run sends until ctx ends, then waits for the sends in flight (their
// contexts end too, and their messages are released for the next run).
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer d.http.CloseIdleConnections()
	defer d.hook.CloseIdleConnections()
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); d.listen(ctx) }()

	sem := make(chan struct{}, d.cfg.Concurrency)
	poll := time.NewTimer(0)
	defer poll.Stop()
	lastCleanup := time.Time{}
	for {
		free := cap(sem) - len(sem)
		var batch []claimed
		var err error
		if free > 0 {
			batch, err = d.claim(ctx, free)
			if err != nil && ctx.Err() == nil {
				d.log.Error("outbox: claiming messages failed; retrying", "error", err)
			}
		}
		for _, m := range batch {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.deliver(ctx, m)
				<-sem
				d.signal()
			}()
		}
		if time.Since(lastCleanup) > time.Hour && ctx.Err() == nil {
			lastCleanup = time.Now()
			d.cleanup(ctx)
		}
		if len(batch) == free && free > 0 {
			continue // maybe more due; claim again when a slot frees
		}
		wait := d.cfg.PollInterval
		if err != nil {
			wait = min(wait, time.Second) // the database is away: try again soon
		}
		if err == nil && free > 0 {
			if next, ok := d.nextDue(ctx); ok && next < wait {
				wait = max(next, 10*time.Millisecond) // not 0: a row another node holds must not spin us
			}
		}
		poll.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-poll.C:
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
	}
}

func (d *Dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// listen turns NOTIFY outbox into wake-ups on a dedicated connection, and
// wakes once after every (re)connect: what was notified while it was down
// is lost, the poll covers it.
func (d *Dispatcher) listen(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		started := time.Now()
		err := d.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second // it was up a while: this is a new outage
		}
		d.log.Warn("outbox: LISTEN connection lost; polling until it is back", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (d *Dispatcher) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, d.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	d.signal()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		d.signal()
	}
}

// claim takes up to n due messages and leases them (next_attempt_at moves
// past the lease), counting the attempt. The claim commits before the send,
// so no transaction stays open during a send.
func (d *Dispatcher) claim(ctx context.Context, n int) ([]claimed, error) {
	rows, err := d.pool.Query(ctx, `UPDATE outbox_messages m
		SET attempts = m.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
		FROM (SELECT id FROM outbox_messages WHERE state = 'pending' AND next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) c
		WHERE m.id = c.id
		RETURNING m.id, m.channel, m.client_id, m."to", m.template, m.data, m.attempts, m.created_at, m.secret, m.carrier, m.language, m.about,
			m.replays, coalesce(m.replayed_at, m.created_at)`,
		n, d.cfg.Lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		var data []byte
		if err := r.Scan(&c.ID, &c.Channel, &c.ClientID, &c.To, &c.Template, &data, &c.Attempts, &c.CreatedAt, &c.Secret, &c.Carrier, &c.Language, &c.About,
			&c.Replays, &c.since); err != nil {
			return c, err
		}
		return c, json.Unmarshal(data, &c.Data)
	})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return out, nil
}

// nextDue is how long until the earliest pending message is due.
func (d *Dispatcher) nextDue(ctx context.Context) (time.Duration, bool) {
	var secs *float64
	err := d.pool.QueryRow(ctx, `SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 FROM outbox_messages WHERE state = 'pending'`).Scan(&secs)
	if err != nil || secs == nil {
		return 0, false
	}
	return time.Duration(*secs * float64(time.Second)), true
}

func (d *Dispatcher) cleanup(ctx context.Context) {
	tag, err := d.pool.Exec(ctx, `DELETE FROM outbox_messages WHERE state <> 'pending' AND created_at < now() - make_interval(secs => $1)`, d.cfg.Retention.Seconds())
	if err != nil {
		d.log.Warn("outbox: deleting old messages failed", "error", err)
		return
	}
	if tag.RowsAffected() > 0 {
		d.log.Info("outbox: old messages deleted", "count", tag.RowsAffected(), "retention", d.cfg.Retention)
	}
}

// Outcomes of a send other than success (nil) and a retryable error.
type failure struct {
	kind   int // failPermanent, failRefused, failWaiting
	reason string
	err    error
}

const (
	failPermanent = iota // retrying cannot help: fail now
	failRefused          // the receiver refused: a few tries, then fail
	failWaiting          // no endpoint / channel not configured: wait, uncounted
)

func (f *failure) Error() string { return f.reason + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func permanent(reason string, err error) error {
	return &failure{kind: failPermanent, reason: reason, err: err}
}
func refused(err error) error { return &failure{kind: failRefused, reason: "refused", err: err} }
func waiting(reason, msg string) error {
	return &failure{kind: failWaiting, reason: reason, err: errors.New(msg)}
}

func (d *Dispatcher) send(ctx context.Context, m *claimed) error {
	switch m.Channel {
	case ChannelWebhook:
		return d.sendWebhook(ctx, m)
	case ChannelSMS:
		return d.sendSMS(ctx, m)
	case ChannelEmail:
		return d.sendEmail(ctx, m)
	case ChannelHTTP:
		return d.sendHTTP(ctx, m)
	case ChannelFiscal:
		return d.sendFiscal(ctx, m)
	default:
		return permanent("invalid", fmt.Errorf("unknown channel %q", m.Channel))
	}
}

// deliver sends one claimed message and records the outcome; a webhook's
// attempt also goes to the client's delivery log (outbox_attempts).
func (d *Dispatcher) deliver(ctx context.Context, m claimed) {
	timeout := d.cfg.RequestTimeout
	if m.Channel == ChannelFiscal && d.cfg.Fiscal.Timeout > 0 {
		timeout = d.cfg.Fiscal.Timeout
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	err := d.send(sctx, &m)
	cancel()
	elapsed := time.Since(start)
	// The bookkeeping must happen even when ctx just ended.
	bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer bcancel()
	log := d.log.With("id", m.ID, "channel", m.Channel, "template", m.Template, "attempt", m.Attempts)
	at := attempt{at: start, elapsed: elapsed, status: m.status, err: err}

	var f *failure
	errors.As(err, &f)
	switch {
	case err == nil:
		d.m.observe(m.Channel, "sent", elapsed)
		d.m.sent.WithLabelValues(m.Channel).Inc()
		at.outcome = "sent"
		d.finish(bctx, log, m, at, `UPDATE outbox_messages SET state = 'sent', sent_at = now(), last_error = NULL, rendered = nullif($2, '') WHERE id = $1`, m.rendered)
		log.Debug("outbox: sent", "duration", elapsed)
		return
	case ctx.Err() != nil:
		// Stopped mid-send: release the message at once for the next
		// dispatcher, the attempt uncounted (and not logged). (Had the
		// receiver got it, it gets it again: at least once.)
		d.finish(bctx, log, m, attempt{}, `UPDATE outbox_messages SET attempts = attempts - 1, next_attempt_at = now() WHERE id = $1 AND attempts = $2 AND state = 'pending'`, m.Attempts)
		return
	case f != nil && f.kind == failWaiting:
		d.m.observe(m.Channel, "waiting", elapsed)
		if time.Since(m.since) > d.cfg.MaxAge {
			d.fail(bctx, log, m, at, "max_age", err)
			return
		}
		d.m.waiting.WithLabelValues(m.Channel, f.reason).Inc()
		at.outcome = "waiting"
		d.finish(bctx, log, m, at, `UPDATE outbox_messages SET attempts = attempts - 1, next_attempt_at = now() + make_interval(secs => $3), last_error = $4
			WHERE id = $1 AND attempts = $2 AND state = 'pending'`, m.Attempts, d.cfg.WaitUnavailable.Seconds(), err.Error())
		log.Info("outbox: message waits", "reason", err.Error(), "retry_in", d.cfg.WaitUnavailable)
		return
	}
	d.m.observe(m.Channel, "error", elapsed)
	switch {
	case f != nil && f.kind == failPermanent:
		d.fail(bctx, log, m, at, f.reason, err)
	case f != nil && f.kind == failRefused && m.Attempts >= d.cfg.RefusedAttempts:
		d.fail(bctx, log, m, at, "refused", err)
	case m.Attempts >= d.cfg.MaxAttempts:
		d.fail(bctx, log, m, at, "max_attempts", err)
	case time.Since(m.since) > d.cfg.MaxAge:
		d.fail(bctx, log, m, at, "max_age", err)
	default:
		delay := d.backoff(m.Attempts)
		at.outcome = "retry"
		d.finish(bctx, log, m, at, `UPDATE outbox_messages SET next_attempt_at = now() + make_interval(secs => $3), last_error = $4
			WHERE id = $1 AND attempts = $2 AND state = 'pending'`, m.Attempts, delay.Seconds(), truncate(err.Error()))
		log.Info("outbox: send failed; retrying", "error", err, "retry_in", delay)
	}
}

// attempt is one send as the delivery log keeps it; outcome "" is not logged.
type attempt struct {
	at      time.Time
	elapsed time.Duration
	status  int
	err     error
	outcome string // sent, retry, failed, waiting
}

func (d *Dispatcher) fail(ctx context.Context, log *slog.Logger, m claimed, at attempt, reason string, err error) {
	d.m.failed.WithLabelValues(m.Channel, reason).Inc()
	at.outcome = "failed"
	d.finish(ctx, log, m, at, `UPDATE outbox_messages SET state = 'failed', last_error = $2 WHERE id = $1 AND state = 'pending'`, truncate(reason+": "+err.Error()))
	log.Warn("outbox: message failed for good", "reason", reason, "error", err)
}

// finish records the outcome (sql, on the message) and, for a webhook, the
// attempt in the delivery log, in one transaction.
func (d *Dispatcher) finish(ctx context.Context, log *slog.Logger, m claimed, at attempt, sql string, args ...any) {
	if m.Channel != ChannelWebhook || at.outcome == "" {
		// Nothing to log: one statement, no transaction.
		if _, err := d.pool.Exec(ctx, sql, append([]any{m.ID}, args...)...); err != nil {
			log.Error("outbox: recording the outcome failed; the message is retried after its lease", "error", err, "lease", d.cfg.Lease)
		}
		return
	}
	err := pg.Tx(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sql, append([]any{m.ID}, args...)...); err != nil {
			return err
		}
		var status *int
		if at.status != 0 {
			status = &at.status
		}
		var msg *string
		if at.err != nil {
			e := truncate(at.err.Error())
			msg = &e
		}
		_, err := tx.Exec(ctx, `INSERT INTO outbox_attempts (message_id, replay, attempt, at, duration_ms, http_status, error, outcome, next_attempt_at)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN state = 'pending' THEN next_attempt_at END FROM outbox_messages WHERE id = $1`,
			m.ID, m.Replays, m.Attempts, at.at, at.elapsed.Milliseconds(), status, msg, at.outcome)
		return err
	})
	if err != nil {
		// The lease runs out and the message is sent again: at least once.
		log.Error("outbox: recording the outcome failed; the message is retried after its lease", "error", err, "lease", d.cfg.Lease)
	}
}

// backoff is the delay after the attempt-th failed send: BackoffMin
// doubling up to BackoffMax, with "equal jitter" (50–100 % of it).
func (d *Dispatcher) backoff(attempt int) time.Duration {
	delay := d.cfg.BackoffMin
	for i := 1; i < attempt && delay < d.cfg.BackoffMax; i++ {
		delay *= 2
	}
	delay = min(delay, d.cfg.BackoffMax)
	return delay/2 + rand.N(delay/2+1)
}

func truncate(s string) string {
	if len(s) > 1000 {
		return s[:1000]
	}
	return s
}
