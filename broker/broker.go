// Package broker is the embedded MQTT broker the lockers connect to: mochi
// behind our own mTLS listener, identity and ACL checks, presence, the dispatch
// of device publishes by topic kind, and the sending of hub→device messages.
// It imports no domain package: identities, presence and handlers come in
// through the small interfaces below, wired by app.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/protocol"
)

// Keepalive bounds for MQTT 5 clients; outside them the server sets its own.
const (
	defaultKeepalive = 60
	maxKeepalive     = 300
)

// Identities answers who may connect; fleet.Registry implements it.
type Identities interface {
	Authorize(lockerID string) error
	Revoked(serial string) bool
}

// Presence is told when a locker's current session starts and ends.
type Presence interface {
	Connected(lockerID string, at time.Time)
	Disconnected(lockerID string, at time.Time)
}

// Message is a publish received from a locker.
type Message struct {
	LockerID string
	Kind     protocol.Kind
	Payload  []byte
	QoS      byte
	Received time.Time

	done func(error)
}

// Handler takes the device messages of one kind. It runs on the connection's
// read goroutine and must not block: it validates, hands the message on and
// returns; whoever makes the message durable calls m.Done then, and only then
// does the locker get its PUBACK (DESIGN decision 8).
type Handler func(Message)

// Config of the broker. Zero values take the defaults noted.
type Config struct {
	Addr             string        // listen address, e.g. ":8883"
	TLS              *tls.Config   // server certificate; client certificates are required and checked against ClientCAs
	HandshakeTimeout time.Duration // 10 s
	ConnectTimeout   time.Duration // 10 s from handshake to CONNECT
	AcceptRate       float64       // new connections per second, 3000
	AcceptBurst      int           // a sixth of AcceptRate
	MaxHandshakes    int           // TLS handshakes in progress at once, 64
	MaxPacketSize    uint32        // 256 KiB
	WritesPending    int32         // outbound packets queued per client, 64
	MaxUnacked       int           // unacknowledged QoS 1 messages per locker, 64; more: disconnect 0x97
	MaxUnackedBytes  int           // their payload bytes per locker, 1 MiB
	// MaxUnackedTotalBytes bounds the payload bytes awaiting PUBACK hub-wide, 256 MiB.
	MaxUnackedTotalBytes int64
	AckWriters           int        // goroutines writing PUBACKs, 2
	MaxCallsInFlight     int        // RPC calls waiting for one locker's answer at once, DefaultMaxInFlight
	TicketKeys           [][32]byte // TLS session ticket keys, newest first; kept across restarts so lockers resume
	Logger               *slog.Logger
	Registerer           prometheus.Registerer
}

func (c *Config) defaults() {
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.AcceptRate == 0 {
		c.AcceptRate = 3000
	}
	if c.AcceptBurst == 0 {
		c.AcceptBurst = max(1, int(c.AcceptRate/6))
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = 64
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = 256 << 10
	}
	if c.WritesPending == 0 {
		c.WritesPending = 64
	}
	if c.MaxUnacked == 0 {
		c.MaxUnacked = 64
	}
	if c.MaxUnackedBytes == 0 {
		c.MaxUnackedBytes = 1 << 20
	}
	if c.MaxUnackedTotalBytes == 0 {
		c.MaxUnackedTotalBytes = 256 << 20
	}
	if c.AckWriters == 0 {
		c.AckWriters = 2
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
}

// Errors of Send.
var (
	ErrOffline  = errors.New("locker is not connected")
	ErrNotToHub = errors.New("the hub does not publish this topic kind")
	errKicked   = errors.New("disconnected by the hub: certificate revoked or locker disabled")
)

type session struct {
	gen uint64
	cl  *mqtt.Client
}

// Broker is the embedded MQTT broker.
type Broker struct {
	cfg      Config
	ids      Identities
	presence Presence
	log      *slog.Logger
	m        *metrics
	srv      *mqtt.Server
	ln       *tlsListener
	handlers map[protocol.Kind]Handler
	// onSubscribed observers, set before Start.
	onSubscribed []func(lockerID string, kinds []protocol.Kind)
	rpc          rpcState // rpc.go

	mu       sync.Mutex
	sessions map[string]session
	ackers   map[*mqtt.Client]*acker
	gen      uint64

	ackReady     chan *acker // connections with PUBACKs ready; each at most once
	stopAcks     chan struct{}
	ackWriters   sync.WaitGroup
	unackedBytes atomic.Int64

	started   atomic.Bool
	closeOnce sync.Once
	kicks     sync.WaitGroup
}

// New builds a broker; register handlers with Handle, then Start it.
func New(cfg Config, ids Identities, presence Presence) (*Broker, error) {
	cfg.defaults()
	if cfg.TLS == nil || cfg.TLS.ClientCAs == nil || len(cfg.TLS.Certificates) == 0 {
		return nil, errors.New("broker: TLS needs a server certificate and the client CA")
	}
	b := &Broker{
		cfg: cfg, ids: ids, presence: presence,
		log:      cfg.Logger,
		handlers: map[protocol.Kind]Handler{},
		sessions: map[string]session{},
		ackers:   map[*mqtt.Client]*acker{},
		ackReady: make(chan *acker, 1<<16),
		stopAcks: make(chan struct{}),
	}
	b.m = newMetrics(cfg.Registerer, func() float64 { return float64(b.Connected()) })

	tc := pki.Harden(cfg.TLS.Clone()) // TLS 1.2+, AEAD suites only
	tc.ClientAuth = tls.RequireAndVerifyClientCert
	// Checked on resumed sessions too: Go calls it for every handshake.
	tc.VerifyConnection = VerifyNotRevoked(ids)
	if len(cfg.TicketKeys) > 0 {
		tc.SetSessionTicketKeys(cfg.TicketKeys)
	}
	b.cfg.TLS = tc

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.MinimumProtocolVersion = 4
	caps.MaximumPacketSize = cfg.MaxPacketSize
	caps.MaximumClientWritesPending = cfg.WritesPending
	caps.MaximumMessageExpiryInterval = 0 // retained messages do not expire
	caps.MaximumSessionExpiryInterval = 0 // lockers use clean sessions; nothing is kept after a disconnect
	caps.ReceiveMaximum = 64
	caps.MaximumInflight = 64
	caps.TopicAliasMaximum = 0
	caps.SharedSubAvailable = 0
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  1024,
		ClientNetWriteBufferSize: 1024,
		InlineClient:             true,
		SysTopicResendInterval:   3600,
		Logger:                   slog.New(quietHandler{cfg.Logger.With("component", "mqtt").Handler()}),
	})
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, err
	}
	b.initRPC()
	b.ln = newTLSListener(b.cfg, b.m)
	b.ln.disconnectClients = b.disconnectListenerClients
	return b, nil
}

// disconnectListenerClients does what mochi's closeListenerClients does at
// shutdown, without its Clients.GetByListener: that read-locks the client map
// twice (it calls Len under its own RLock), so a client going away between the
// two (Delete waits for the write lock) deadlocks the map, and with it the
// shutdown and every lookup, for good (mochi 2.7.9). Seen in the fault suite:
// a hub stopped while 6,500 lockers were leaving hung for 9 minutes.
func (b *Broker) disconnectListenerClients(listenerID string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == listenerID && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// Handle registers the handler of one device topic kind. Call it before Start.
func (b *Broker) Handle(kind protocol.Kind, h Handler) {
	if !kind.FromDevice() {
		panic(fmt.Sprintf("broker: %s is not a device topic kind", kind))
	}
	b.handlers[kind] = h
}

// OnSubscribed registers fn to hear which hub→device kinds a locker has just
// subscribed to (e.g. to send its desired configuration then). fn runs on the
// locker's read goroutine and must not block. Call it before Start.
func (b *Broker) OnSubscribed(fn func(lockerID string, kinds []protocol.Kind)) {
	b.onSubscribed = append(b.onSubscribed, fn)
}

// Start binds the listener and starts serving.
func (b *Broker) Start() error {
	if err := b.srv.AddListener(b.ln); err != nil {
		return fmt.Errorf("mqtt listener %s: %w", b.cfg.Addr, err)
	}
	for range b.cfg.AckWriters {
		b.ackWriters.Add(1)
		go b.writeAcks()
	}
	if err := b.srv.Serve(); err != nil {
		return err
	}
	b.started.Store(true)
	return nil
}

// SetTicketKeys replaces the TLS session ticket keys (rotation), newest first.
func (b *Broker) SetTicketKeys(keys [][32]byte) { b.cfg.TLS.SetSessionTicketKeys(keys) }

// Addr is the address the broker listens on.
func (b *Broker) Addr() string { return b.ln.Address() }

// Listening reports whether the broker accepts connections.
func (b *Broker) Listening() bool { return b.started.Load() && !b.ln.isClosed() }

// Close disconnects every locker and stops the broker; it returns when every
// connection goroutine has ended.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		if b.started.Load() {
			_ = b.srv.Close()
		}
		close(b.stopAcks)
		b.ackWriters.Wait()
		b.kicks.Wait()
	})
}

// Connected returns the number of live locker sessions.
func (b *Broker) Connected() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// Online reports whether a locker has a live session.
func (b *Broker) Online(lockerID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.sessions[lockerID]
	return ok
}

// Kick closes a locker's live connection at once (revocation, disabling). An
// MQTT 5 locker gets DISCONNECT 0x87 first.
func (b *Broker) Kick(lockerID string) {
	b.mu.Lock()
	s, ok := b.sessions[lockerID]
	b.mu.Unlock()
	if ok {
		b.disconnect(s.cl, packets.ErrNotAuthorized, errKicked)
	}
}

// disconnect ends a connection without blocking the caller: an MQTT 5 client
// is told why, and a socket that does not take that within a second is closed
// anyway.
func (b *Broker) disconnect(cl *mqtt.Client, code packets.Code, cause error) {
	b.kicks.Add(1)
	go func() {
		defer b.kicks.Done()
		watchdog := time.AfterFunc(time.Second, func() { cl.Stop(cause) })
		defer watchdog.Stop()
		if cl.Properties.ProtocolVersion == 5 {
			_ = cl.WritePacket(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
				ReasonCode:  code.Code,
				Properties:  packets.Properties{ReasonString: cause.Error()},
			})
		}
		cl.Stop(cause)
	}()
}

// Send publishes a hub→device message to one locker at QoS 0 (DESIGN decision 9:
// each such message has an application-level acknowledgement and is re-sent by
// its owner). mochi's inline client skips the ACL, so the rule is applied here
// explicitly: only hub kinds, only to one locker's own topic.
func (b *Broker) Send(lockerID string, kind protocol.Kind, payload []byte) error {
	if !kind.FromHub() {
		return fmt.Errorf("%w: %s", ErrNotToHub, kind)
	}
	if err := protocol.ValidateLockerID(lockerID); err != nil {
		return err
	}
	if !b.Online(lockerID) {
		return fmt.Errorf("%w: %s", ErrOffline, lockerID)
	}
	return b.srv.Publish(protocol.Topic(lockerID, kind), payload, false, 0)
}

func (b *Broker) refuse(cl *mqtt.Client, reason string, v5, v3 packets.Code) error {
	b.m.refusals.WithLabelValues("connect", reason).Inc()
	code := v5
	if cl.Properties.ProtocolVersion < 5 {
		code = v3
	}
	_ = b.srv.SendConnack(cl, code, false, nil)
	return v5
}

func (b *Broker) sessionUp(cl *mqtt.Client) {
	b.mu.Lock()
	b.ackers[cl] = newAcker(b, cl)
	b.gen++
	_, replaced := b.sessions[cl.ID]
	b.sessions[cl.ID] = session{gen: b.gen, cl: cl}
	b.mu.Unlock()
	b.m.connects.Inc()
	if replaced {
		b.m.takeovers.Inc()
	}
	b.presence.Connected(cl.ID, time.Now())
}

// sessionDown ends presence only for the current session of a locker: the late
// disconnect of a replaced connection must not mark a reconnected locker offline.
func (b *Broker) sessionDown(cl *mqtt.Client, err error) {
	if cause := cl.StopCause(); cause != nil && (err == nil || errors.Is(cause, errKicked) || errors.Is(cause, packets.ErrQosNotSupported) ||
		errors.Is(cause, errOverQuota) || errors.Is(cause, ErrOverloaded) || errors.Is(cause, errAckStuck) || errors.Is(cause, errIDReused)) {
		err = cause
	}
	b.m.disconnects.WithLabelValues(disconnectReason(err)).Inc()
	b.mu.Lock()
	a := b.ackers[cl]
	delete(b.ackers, cl)
	b.mu.Unlock()
	if a != nil {
		a.close()
	}
	// A replaced session: mochi stops it (cause ErrSessionTakenOver) before it
	// marks it taken over, so its disconnect can come first; either tells.
	if cl.IsTakenOver() || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	b.mu.Lock()
	s, ok := b.sessions[cl.ID]
	current := ok && s.cl == cl
	if current {
		delete(b.sessions, cl.ID)
	}
	b.mu.Unlock()
	if current {
		b.presence.Disconnected(cl.ID, time.Now())
	}
}

// VerifyNotRevoked is a tls.Config VerifyConnection that refuses revoked
// client certificates (Go's TLS does no CRL checks; the registry knows).
func VerifyNotRevoked(ids interface{ Revoked(serial string) bool }) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 && ids.Revoked(serialOf(cs.PeerCertificates[0])) {
			return errRevoked
		}
		return nil
	}
}

func serialOf(c *x509.Certificate) string { return pki.SerialString(c.SerialNumber) }

// quietHandler passes on mochi's warnings and errors only: its info lines
// (hooks added, listener attached, …) say nothing an operator needs.
type quietHandler struct{ slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && q.Handler.Enabled(ctx, l)
}
func (q quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{q.Handler.WithAttrs(a)}
}
func (q quietHandler) WithGroup(n string) slog.Handler { return quietHandler{q.Handler.WithGroup(n)} }
