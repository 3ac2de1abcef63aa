package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"golang.org/x/time/rate"
)

// errRevoked is returned by the TLS verification of a revoked certificate.
var errRevoked = errors.New("certificate revoked")

// tlsListener is mochi's listener for lockers. It accepts at a bounded rate
// (a storm queues in the kernel's backlog rather than being refused), runs the
// TLS handshake itself under a deadline with a bounded number in progress,
// counts failed handshakes by reason, and gives the connection to mochi with a
// deadline for the CONNECT packet (mochi has none of its own).
type tlsListener struct {
	id, addr         string
	cfg              *tls.Config
	handshakeTimeout time.Duration
	connectTimeout   time.Duration
	limiter          *rate.Limiter
	slots            chan struct{}
	m                *metrics
	log              *slog.Logger

	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	served chan struct{}

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	// disconnectClients replaces the CloseFn mochi passes to Close (see
	// Broker.disconnectListenerClients); nil: mochi's own.
	disconnectClients func(listenerID string)
}

var _ listeners.Listener = (*tlsListener)(nil)

func newTLSListener(c Config, m *metrics) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &tlsListener{
		id: "lockers-mtls", addr: c.Addr, cfg: c.TLS,
		handshakeTimeout: c.HandshakeTimeout,
		connectTimeout:   c.ConnectTimeout,
		limiter:          rate.NewLimiter(rate.Limit(c.AcceptRate), c.AcceptBurst),
		slots:            make(chan struct{}, c.MaxHandshakes),
		m:                m,
		ctx:              ctx, cancel: cancel,
		served: make(chan struct{}),
		conns:  map[net.Conn]struct{}{},
	}
}

func (l *tlsListener) ID() string       { return l.id }
func (l *tlsListener) Protocol() string { return "mqtts" }
func (l *tlsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *tlsListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln = ln
	return nil
}

func (l *tlsListener) Serve(establish listeners.EstablishFn) {
	defer close(l.served)
	var backoff time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and try again, as
			// net/http does, rather than stop taking lockers until a restart.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.m.acceptErrors.Inc()
			l.log.Error("accept failed; retrying", "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-l.ctx.Done():
				return
			}
		}
		backoff = 0
		if !l.admit() {
			_ = conn.Close()
			return
		}
		if !l.track(conn) {
			<-l.slots
			_ = conn.Close()
			return
		}
		l.wg.Add(1)
		go l.handle(conn, establish)
	}
}

// admit waits for the accept rate limit and a free handshake slot; false when closing.
func (l *tlsListener) admit() bool {
	if !l.limiter.Allow() {
		l.m.acceptThrottled.Inc()
		if l.limiter.Wait(l.ctx) != nil {
			return false
		}
	}
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	l.m.acceptThrottled.Inc()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-l.ctx.Done():
		return false
	}
}

func (l *tlsListener) handle(conn net.Conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer l.untrack(conn)
	l.m.handshaking.Inc()
	_ = conn.SetDeadline(time.Now().Add(l.handshakeTimeout))
	tc := tls.Server(conn, l.cfg)
	err := tc.HandshakeContext(l.ctx)
	l.m.handshaking.Dec()
	<-l.slots
	if err != nil {
		reason := handshakeFailure(err)
		l.m.refusals.WithLabelValues("tls", reason).Inc()
		l.log.Info("TLS handshake refused", "remote", conn.RemoteAddr().String(), "reason", reason, "error", err)
		_ = conn.Close()
		return
	}
	// mochi replaces this deadline with the keepalive once CONNECT has arrived.
	_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
	if err := establish(l.id, tc); err != nil && !l.isClosed() {
		l.log.Debug("connection ended", "remote", conn.RemoteAddr().String(), "error", err)
	}
}

func handshakeFailure(err error) string {
	var ne net.Error
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var rec tls.RecordHeaderError
	switch {
	case errors.Is(err, errRevoked):
		return "revoked"
	case errors.As(err, &unknown):
		return "unknown_ca"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired && invalid.Cert != nil && time.Now().Before(invalid.Cert.NotBefore):
		return "not_yet_valid"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "expired"
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return "wrong_usage"
	case errors.As(err, &invalid):
		return "invalid_certificate"
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return "no_certificate"
	case errors.As(err, &rec):
		return "not_tls"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, context.Canceled):
		return "closed"
	}
	return "handshake_error"
}

func (l *tlsListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *tlsListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

func (l *tlsListener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops accepting, lets mochi disconnect its clients (with a short write
// deadline so a stuck socket cannot hold shutdown), closes whatever is still
// open (handshakes, connections before CONNECT) and waits for every connection
// goroutine to end.
func (l *tlsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	deadline := time.Now().Add(time.Second)
	for c := range l.conns {
		_ = c.SetWriteDeadline(deadline)
	}
	l.mu.Unlock()
	l.cancel()
	if l.ln != nil {
		_ = l.ln.Close()
		<-l.served
	}
	if l.disconnectClients != nil {
		l.disconnectClients(l.id)
	} else {
		closeClients(l.id)
	}
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
