package broker_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// rawClient speaks MQTT byte by byte over TLS, so tests can send what a
// well-behaved client library never would (oversize, QoS 2, garbage).
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	ver  byte
}

func dialRaw(t *testing.T, addr string, cfg *tls.Config) *rawClient {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), ver: 5}
}

func (c *rawClient) write(pk packets.Packet) error {
	var buf bytes.Buffer
	var err error
	pk.ProtocolVersion = c.ver
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		return fmt.Errorf("rawClient cannot encode type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		return err
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = c.conn.Write(buf.Bytes())
	return err
}

// read returns the next packet, or an error when the connection ends or
// nothing arrives within d.
func (c *rawClient) read(d time.Duration) (packets.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var pk packets.Packet
	b, err := c.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = c.ver
	pk.FixedHeader.Remaining = n
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
		if n == 1 { // mochi's decoder skips a lone reason code
			pk.ReasonCode = body[0]
		}
	case packets.Pingresp:
	}
	return pk, err
}

func (c *rawClient) mustRead(typ byte) packets.Packet {
	c.t.Helper()
	pk, err := c.read(5 * time.Second)
	require.NoError(c.t, err)
	require.Equal(c.t, typ, pk.FixedHeader.Type, "packet type")
	return pk
}

func connectPacket(ver byte, id string) packets.Packet {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: ver,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            true,
			Keepalive:        30,
			ClientIdentifier: id,
		},
	}
	if ver == 4 {
		pk.Connect.ProtocolName = []byte("MQTT")
	}
	return pk
}

// connect sends CONNECT and returns the CONNACK reason code.
func (c *rawClient) connect(id string) byte {
	c.t.Helper()
	require.NoError(c.t, c.write(connectPacket(c.ver, id)))
	return c.mustRead(packets.Connack).ReasonCode
}

func (c *rawClient) subscribe(filter string) byte {
	c.t.Helper()
	require.NoError(c.t, c.write(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: filter, Qos: 1}},
	}))
	ack := c.mustRead(packets.Suback)
	require.Len(c.t, ack.ReasonCodes, 1)
	return ack.ReasonCodes[0]
}

func (c *rawClient) publish(topic string, qos byte, id uint16, payload []byte) error {
	return c.write(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		PacketID:    id,
		Payload:     payload,
	})
}

// closed reports whether the server ends the connection within d (reading and
// discarding whatever it sends first, e.g. a DISCONNECT).
func (c *rawClient) closed(d time.Duration) (bool, []packets.Packet) {
	deadline := time.Now().Add(d)
	var got []packets.Packet
	for time.Now().Before(deadline) {
		pk, err := c.read(time.Until(deadline))
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return false, got
			}
			return true, got
		}
		got = append(got, pk)
	}
	return false, got
}

// tryConnect dials and sends CONNECT; it returns the error of the handshake or
// of the first read (TLS 1.3: a refused client certificate shows there), or nil
// when a CONNACK arrives.
func tryConnect(addr string, cfg *tls.Config, id string) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := &rawClient{conn: conn, r: bufio.NewReader(conn), ver: 5}
	if err := c.write(connectPacket(5, id)); err != nil {
		return err
	}
	_, err = c.read(5 * time.Second)
	return err
}

type tlsCert = tls.Certificate

func encodePEM(t *testing.T, c tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
