package lockersim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// scriptBroker is a minimal MQTT server for tests of what a real broker will
// not do on demand: withhold PUBACKs, advertise a small Receive Maximum, drop
// a connection. It records every packet each connection received.
type scriptBroker struct {
	t       *testing.T
	version byte
	addr    string

	mu         sync.Mutex
	ack        bool
	recvMax    uint16
	conns      []*scriptConn
	connChange chan struct{}
}

type scriptConn struct {
	conn      net.Conn
	mu        sync.Mutex
	clientID  string
	log       []string // "SUBSCRIBE <filters>" or "PUBLISH <topic> <payload>"
	publishes []packets.Packet
}

func (c *scriptConn) snapshot() ([]string, []packets.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log...), append([]packets.Packet(nil), c.publishes...)
}

func newScriptBroker(t *testing.T, version byte) *scriptBroker {
	b := &scriptBroker{t: t, version: version, ack: true, connChange: make(chan struct{}, 100)}
	b.addr = fakeBroker(t, nil, b.serve)
	return b
}

func (b *scriptBroker) setAck(ack bool) { b.mu.Lock(); b.ack = ack; b.mu.Unlock() }

func (b *scriptBroker) conn(i int) *scriptConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i < len(b.conns) {
		return b.conns[i]
	}
	return nil
}

func (b *scriptBroker) serve(conn net.Conn, br *bufio.Reader) {
	pk, err := readRaw(br, b.version)
	if err != nil || pk.FixedHeader.Type != packets.Connect {
		return
	}
	sc := &scriptConn{conn: conn, clientID: pk.Connect.ClientIdentifier}
	b.mu.Lock()
	b.conns = append(b.conns, sc)
	recvMax := b.recvMax
	b.mu.Unlock()
	b.connChange <- struct{}{}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: b.version}
	ack.Properties.ReceiveMaximum = recvMax
	var wmu sync.Mutex
	write := func(p packets.Packet) { wmu.Lock(); writeRaw(b.t, conn, p); wmu.Unlock() }
	write(ack)
	for {
		pk, err := readRaw(br, b.version)
		if err != nil {
			return
		}
		switch pk.FixedHeader.Type {
		case packets.Subscribe:
			var fs []string
			for _, f := range pk.Filters {
				fs = append(fs, f.Filter)
			}
			sc.mu.Lock()
			sc.log = append(sc.log, fmt.Sprintf("SUBSCRIBE %v", fs))
			sc.mu.Unlock()
			write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: b.version,
				PacketID: pk.PacketID, ReasonCodes: make([]byte, len(pk.Filters))})
		case packets.Publish:
			pk.Payload = append([]byte(nil), pk.Payload...)
			pk.TopicName = string([]byte(pk.TopicName))
			sc.mu.Lock()
			sc.log = append(sc.log, "PUBLISH "+pk.TopicName)
			sc.publishes = append(sc.publishes, pk)
			sc.mu.Unlock()
			b.mu.Lock()
			doAck := b.ack
			b.mu.Unlock()
			if doAck && pk.FixedHeader.Qos == 1 {
				write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: b.version, PacketID: pk.PacketID})
			}
		case packets.Pingreq:
			write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}})
		case packets.Disconnect:
			return
		}
	}
}

// waitConn waits for connection number i (0-based).
func (b *scriptBroker) waitConn(t *testing.T, i int) *scriptConn {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if c := b.conn(i); c != nil {
			return c
		}
		select {
		case <-b.connChange:
		case <-deadline:
			t.Fatalf("connection %d did not come", i+1)
		}
	}
}

func waitPublishes(t *testing.T, c *scriptConn, n int) []packets.Packet {
	t.Helper()
	var pubs []packets.Packet
	require.Eventually(t, func() bool {
		_, pubs = c.snapshot()
		return len(pubs) >= n
	}, 10*time.Second, 5*time.Millisecond, "waiting for %d publishes", n)
	return pubs
}

func startTestSim(t *testing.T, hub string, mod func(*Config)) *Sim {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Hub = hub
	cfg.Plain = true
	cfg.DataDir = t.TempDir()
	cfg.Cells = 4
	cfg.Lockers = 1
	cfg.Ramp = 0
	cfg.Telemetry = 10000 * time.Hour // no telemetry during a test unless asked for
	cfg.Backoff = Backoff{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	cfg.StatusEvery = 0
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, s.Start(ctx))
	t.Cleanup(func() { cancel(); s.Stop() })
	return s
}

func header(t *testing.T, pk packets.Packet) (boot, seq, ts float64) {
	var m map[string]any
	require.NoError(t, json.Unmarshal(pk.Payload, &m))
	return m["boot"].(float64), m["seq"].(float64), m["ts"].(float64)
}

// TestRepublishUntilPuback: messages without a PUBACK come again, byte for
// byte, on the next connection; acknowledged ones never do.
func TestRepublishUntilPuback(t *testing.T) {
	for _, v := range []byte{MQTT311, MQTT5} {
		t.Run(fmt.Sprintf("mqtt%d", v), func(t *testing.T) {
			b := newScriptBroker(t, v)
			b.setAck(false)
			s := startTestSim(t, b.addr, func(c *Config) { c.MQTTVersion = v })
			l := s.Lockers()[0]

			c1 := b.waitConn(t, 0)
			require.Equal(t, "SIM-00001", c1.clientID)
			first := waitPublishes(t, c1, 1) // the full state after connect
			require.Equal(t, "lockers/SIM-00001/state", first[0].TopicName)
			l.Tamper()
			require.NoError(t, l.SetMains(false))
			unacked := waitPublishes(t, c1, 4) // state, tamper event, power_lost event, power state
			log1, _ := c1.snapshot()
			require.Equal(t, "SUBSCRIBE [lockers/SIM-00001/rpc/req lockers/SIM-00001/ask/res lockers/SIM-00001/desired]", log1[0],
				"subscribe before publishing anything")
			for _, p := range unacked {
				require.EqualValues(t, 1, p.FixedHeader.Qos)
			}
			require.Equal(t, 4, l.View(false).Queued)

			// The link breaks; the broker acks from now on.
			b.setAck(true)
			c1.conn.Close()
			c2 := b.waitConn(t, 1)
			pubs := waitPublishes(t, c2, 5)
			for i := range 4 {
				require.Equal(t, unacked[i].TopicName, pubs[i].TopicName)
				require.Equal(t, string(unacked[i].Payload), string(pubs[i].Payload), "republished unchanged (same boot, seq, ts)")
			}
			require.Equal(t, "lockers/SIM-00001/state", pubs[4].TopicName)
			_, lastSeq, _ := header(t, unacked[3])
			boot, seq, _ := header(t, pubs[4])
			require.EqualValues(t, 1, boot)
			require.Greater(t, seq, lastSeq, "the new full state comes after the republished ones")
			require.Eventually(t, func() bool { return l.View(false).Queued == 0 }, 5*time.Second, 5*time.Millisecond)
			require.EqualValues(t, 4, s.Stats().Republished.Load())

			// Acknowledged messages are never sent again.
			c2.conn.Close()
			c3 := b.waitConn(t, 2)
			pubs3 := waitPublishes(t, c3, 1)
			require.Eventually(t, func() bool { return l.View(false).Queued == 0 }, 5*time.Second, 5*time.Millisecond)
			_, pubs3 = c3.snapshot()
			require.Len(t, pubs3, 1, "only the new full state")
			_, seq3, _ := header(t, pubs3[0])
			require.Greater(t, seq3, seq)
		})
	}
}

// TestReceiveMaximumBoundsInflight: with the server's Receive Maximum 1 the
// locker has one message unacknowledged at a time.
func TestReceiveMaximumBoundsInflight(t *testing.T) {
	b := newScriptBroker(t, MQTT5)
	b.setAck(false)
	b.recvMax = 1
	s := startTestSim(t, b.addr, nil)
	l := s.Lockers()[0]
	c1 := b.waitConn(t, 0)
	waitPublishes(t, c1, 1)
	l.Tamper()
	l.Tamper()
	require.Eventually(t, func() bool { return l.View(false).Queued == 3 }, 5*time.Second, 5*time.Millisecond)
	_, pubs := c1.snapshot()
	require.Len(t, pubs, 1, "one in flight")
	// The ack of the first lets exactly one more go.
	writeRaw(t, c1.conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: MQTT5, PacketID: pubs[0].PacketID})
	waitPublishes(t, c1, 2)
	require.Eventually(t, func() bool { return l.View(false).Queued == 2 }, 5*time.Second, 5*time.Millisecond)
	_, pubs = c1.snapshot()
	require.Len(t, pubs, 2)
}

// TestAckTimeoutReconnects: a message whose PUBACK never comes makes the
// locker reconnect and republish it (the --drop-acks-pct fault relies on it).
func TestAckTimeoutReconnects(t *testing.T) {
	b := newScriptBroker(t, MQTT5)
	b.setAck(false)
	s := startTestSim(t, b.addr, func(c *Config) { c.AckTimeout = 200 * time.Millisecond; c.Telemetry = 100 * time.Millisecond })
	c1 := b.waitConn(t, 0)
	first := waitPublishes(t, c1, 1)
	b.setAck(true)
	c2 := b.waitConn(t, 1) // the next telemetry sample finds the state unacknowledged too long
	pubs := waitPublishes(t, c2, 1)
	require.Equal(t, string(first[0].Payload), string(pubs[0].Payload))
	_ = s
}

func TestDropAcksFaultKeepsMessages(t *testing.T) {
	b := newScriptBroker(t, MQTT5)
	s := startTestSim(t, b.addr, func(c *Config) { c.DropAcksPct = 100; c.AckTimeout = 0 })
	l := s.Lockers()[0]
	c1 := b.waitConn(t, 0)
	waitPublishes(t, c1, 1)
	l.Tamper()
	waitPublishes(t, c1, 2)
	require.Eventually(t, func() bool { return s.Stats().AcksIgnored.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 2, l.View(false).Queued, "ignored PUBACKs leave the messages queued")
}

func TestNoRepublishFaultDiscards(t *testing.T) {
	b := newScriptBroker(t, MQTT5)
	b.setAck(false)
	s := startTestSim(t, b.addr, func(c *Config) { c.NoRepublish = true })
	c1 := b.waitConn(t, 0)
	waitPublishes(t, c1, 1)
	b.setAck(true)
	c1.conn.Close()
	c2 := b.waitConn(t, 1)
	pubs := waitPublishes(t, c2, 1)
	_, seq, _ := header(t, pubs[0])
	require.EqualValues(t, 2, seq, "a new full state; the first was thrown away")
	require.Eventually(t, func() bool { return s.Stats().Discarded.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
}
