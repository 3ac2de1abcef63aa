package broker_test

import (
	"crypto/tls"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/protocol"
)

// allowAll is the registry's part for a broker on its own: every locker may
// connect, nothing is revoked; presence is ignored.
type allowAll struct{}

func (allowAll) Authorize(string) error         { return nil }
func (allowAll) Revoked(string) bool            { return false }
func (allowAll) Connected(string, time.Time)    {}
func (allowAll) Disconnected(string, time.Time) {}

// held collects the messages a handler received without settling them.
type held struct {
	mu   sync.Mutex
	msgs []broker.Message
}

func (h *held) handle(m broker.Message) { h.mu.Lock(); h.msgs = append(h.msgs, m); h.mu.Unlock() }
func (h *held) count() int              { h.mu.Lock(); defer h.mu.Unlock(); return len(h.msgs) }
func (h *held) get(i int) broker.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msgs[i]
}

type standalone struct {
	b    *broker.Broker
	ca   *pki.CA
	dir  string
	reg  *prometheus.Registry
	held *held
}

// startBroker runs a broker alone (no database) whose telemetry handler holds
// every message until the test settles it.
func startBroker(t *testing.T, mutate func(*broker.Config)) *standalone {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	require.NoError(t, err)
	srv, err := ca.LoadOrCreateServerCert(dir, []string{"127.0.0.1"})
	require.NoError(t, err)
	s := &standalone{ca: ca, dir: dir, reg: prometheus.NewRegistry(), held: &held{}}
	cfg := broker.Config{Addr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{srv}, ClientCAs: ca.Pool()}, Registerer: s.reg}
	if mutate != nil {
		mutate(&cfg)
	}
	s.b, err = broker.New(cfg, allowAll{}, allowAll{})
	require.NoError(t, err)
	s.b.Handle(protocol.KindTelemetry, s.held.handle)
	require.NoError(t, s.b.Start())
	t.Cleanup(s.b.Close)
	return s
}

func (s *standalone) client(t *testing.T, id string, ver byte) *rawClient {
	t.Helper()
	csr, key, err := pki.NewKeyAndCSR(id)
	require.NoError(t, err)
	_, certPEM, err := s.ca.SignDevice(csr, id, time.Hour)
	require.NoError(t, err)
	pair, err := tls.X509KeyPair(certPEM, key)
	require.NoError(t, err)
	c := dialRaw(t, s.b.Addr(), &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: s.ca.Pool(), ServerName: "127.0.0.1"})
	c.ver = ver
	require.Zero(t, c.connect(id))
	return c
}

func (s *standalone) metric(name string) float64 {
	mfs, _ := s.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			return sum
		}
	}
	return 0
}

// TestPubackOnlyAfterSettleAndInOrder: a PUBACK is the promise that the hub
// has the message, so it waits for the handler, and MQTT wants PUBACKs in the
// order the publishes came.
func TestPubackOnlyAfterSettleAndInOrder(t *testing.T) {
	s := startBroker(t, nil)
	c := s.client(t, "L1", 5)
	for id := uint16(1); id <= 3; id++ {
		require.NoError(t, c.publish("lockers/L1/telemetry", 1, id, []byte(fmt.Sprintf(`{"n":%d}`, id))))
	}
	require.Eventually(t, func() bool { return s.held.count() == 3 }, 2*time.Second, 5*time.Millisecond)
	_, err := c.read(200 * time.Millisecond)
	require.Error(t, err, "no PUBACK before the message is settled")

	// Keepalive goes on while acks are withheld.
	require.NoError(t, c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}))
	c.mustRead(packets.Pingresp)

	s.held.get(2).Done(nil)
	s.held.get(0).Done(nil)
	ack := c.mustRead(packets.Puback)
	require.Equal(t, uint16(1), ack.PacketID)
	_, err = c.read(200 * time.Millisecond)
	require.Error(t, err, "3 is settled but waits behind 2")
	s.held.get(1).Done(nil)
	require.Equal(t, uint16(2), c.mustRead(packets.Puback).PacketID)
	require.Equal(t, uint16(3), c.mustRead(packets.Puback).PacketID)
	require.Equal(t, 0.0, s.metric("lockerhub_broker_unacked_messages"))
}

func TestInvalidMessagesAreAnsweredAndNotRetried(t *testing.T) {
	s := startBroker(t, nil)
	for _, tc := range []struct {
		ver  byte
		code byte
	}{{5, 0x99}, {4, 0x00}} {
		id := fmt.Sprintf("L-v%d", tc.ver)
		c := s.client(t, id, tc.ver)
		n := s.held.count()
		require.NoError(t, c.publish("lockers/"+id+"/telemetry", 1, 9, []byte(`not json`)))
		require.Eventually(t, func() bool { return s.held.count() == n+1 }, 2*time.Second, 5*time.Millisecond)
		s.held.get(n).Done(fmt.Errorf("%w: not JSON", broker.ErrInvalid))
		ack := c.mustRead(packets.Puback)
		require.Equal(t, uint16(9), ack.PacketID)
		require.Equal(t, tc.code, ack.ReasonCode, "MQTT %d", tc.ver)
	}
	require.Equal(t, 2.0, s.metric("lockerhub_broker_messages_invalid_total"))
}

func TestRedeliveryOfAPendingMessageIsHandledOnce(t *testing.T) {
	s := startBroker(t, nil)
	c := s.client(t, "L1", 5)
	require.NoError(t, c.publish("lockers/L1/telemetry", 1, 5, []byte(`{}`)))
	require.NoError(t, c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Dup: true},
		TopicName: "lockers/L1/telemetry", PacketID: 5, Payload: []byte(`{}`)}))
	require.Eventually(t, func() bool { return s.metric("lockerhub_broker_duplicates_pending_total") == 1 }, 2*time.Second, 5*time.Millisecond)
	require.Equal(t, 1, s.held.count(), "the DUP is not handled again")
	s.held.get(0).Done(nil)
	require.Equal(t, uint16(5), c.mustRead(packets.Puback).PacketID)
	_, err := c.read(200 * time.Millisecond)
	require.Error(t, err, "one PUBACK covers both copies")

	// A reuse of a pending id without DUP is a protocol error.
	require.NoError(t, c.publish("lockers/L1/telemetry", 1, 6, []byte(`{}`)))
	require.NoError(t, c.publish("lockers/L1/telemetry", 1, 6, []byte(`{}`)))
	closed, got := c.closed(3 * time.Second)
	require.True(t, closed)
	require.NotEmpty(t, got)
	require.Equal(t, packets.ErrProtocolViolation.Code, got[len(got)-1].ReasonCode)
}

func TestUnackedBudgetDisconnectsWithoutAcking(t *testing.T) {
	s := startBroker(t, func(c *broker.Config) { c.MaxUnacked = 4 })
	c := s.client(t, "L1", 5)
	for id := uint16(1); id <= 5; id++ {
		require.NoError(t, c.publish("lockers/L1/telemetry", 1, id, []byte(`{}`)))
	}
	closed, got := c.closed(3 * time.Second)
	require.True(t, closed, "the fifth unacknowledged message is over the budget")
	for _, pk := range got {
		require.NotEqual(t, byte(packets.Puback), pk.FixedHeader.Type, "nothing was acknowledged")
	}
	require.Equal(t, packets.ErrQuotaExceeded.Code, got[len(got)-1].ReasonCode)
	require.Eventually(t, func() bool { return s.metric("lockerhub_broker_unacked_messages") == 0 }, 2*time.Second, 5*time.Millisecond,
		"the budget is released when the connection ends")
	require.Equal(t, 4.0, s.metric("lockerhub_broker_acks_withheld_total"))
	for i := 0; i < 4; i++ {
		s.held.get(i).Done(nil) // settling after the end sends nothing and does not panic
	}

	// An overloaded hub withholds the PUBACK the same way.
	c2 := s.client(t, "L2", 4)
	require.NoError(t, c2.publish("lockers/L2/telemetry", 1, 1, []byte(`{}`)))
	require.Eventually(t, func() bool { return s.held.count() == 5 }, 2*time.Second, 5*time.Millisecond)
	s.held.get(4).Done(broker.ErrOverloaded)
	closed, got = c2.closed(3 * time.Second)
	require.True(t, closed)
	require.Empty(t, got, "MQTT 3.1.1: no PUBACK, just the end of the connection")
}
