package lockersim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// mosquittoAddr is Debian's Mosquitto, running on this machine for tests.
const mosquittoAddr = "127.0.0.1:1883"

func needMosquitto(t *testing.T) {
	t.Helper()
	c, err := dialMosquitto()
	if err != nil {
		msg := fmt.Sprintf("no MQTT broker on %s (Debian's mosquitto; start it with `mosquitto -d -c /etc/mosquitto/mosquitto.conf`): %v", mosquittoAddr, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg) // loud in CI, as hubtest does for PostgreSQL
		}
		t.Skip(msg)
	}
	c.Close()
}

func dialMosquitto() (net.Conn, error) { return net.DialTimeout("tcp", mosquittoAddr, time.Second) }

func uniqueName(t *testing.T) string {
	return fmt.Sprintf("lsimtest-%d-%s", time.Now().UnixNano(), rand.Text()[:6])
}

func TestClientAgainstMosquitto(t *testing.T) {
	needMosquitto(t)
	for _, v := range []byte{MQTT311, MQTT5} {
		t.Run(fmt.Sprintf("mqtt%d", v), func(t *testing.T) {
			ctx := t.Context()
			base := uniqueName(t)
			got := make(chan string, 10)
			sub, err := Connect(ctx, ClientOptions{
				Addr: mosquittoAddr, ClientID: base + "-sub", Version: v, Keepalive: 30 * time.Second,
				Subscribe: []string{base + "/#"},
				OnMessage: func(topic string, payload []byte) { got <- topic + " " + string(payload) },
			})
			require.NoError(t, err)
			defer sub.Disconnect()
			subDone := make(chan error, 1)
			go func() { subDone <- sub.ReadLoop() }()

			acks := make(chan [2]int, 10)
			pub, err := Connect(ctx, ClientOptions{
				Addr: mosquittoAddr, ClientID: base + "-pub", Version: v, Keepalive: 30 * time.Second,
				OnPuback: func(id uint16, reason byte) { acks <- [2]int{int(id), int(reason)} },
			})
			require.NoError(t, err)
			require.Equal(t, v, pub.Version())
			defer pub.Disconnect()
			pubDone := make(chan error, 1)
			go func() { pubDone <- pub.ReadLoop() }()

			require.NoError(t, pub.Publish(base+"/q1", []byte(`{"n":1}`), 1, 7))
			select {
			case a := <-acks:
				require.Equal(t, 7, a[0])
				require.Less(t, a[1], 0x80, "PUBACK reason")
			case <-time.After(5 * time.Second):
				t.Fatal("no PUBACK for a QoS 1 publish")
			}
			require.NoError(t, pub.Publish(base+"/q0", []byte(`{"n":0}`), 0, 0))
			want := map[string]bool{base + `/q1 {"n":1}`: true, base + `/q0 {"n":0}`: true}
			for len(want) > 0 {
				select {
				case m := <-got:
					require.True(t, want[m], "unexpected message %q", m)
					delete(want, m)
				case <-time.After(5 * time.Second):
					t.Fatalf("subscriber did not receive %v", want)
				}
			}
			pub.Disconnect()
			require.ErrorIs(t, <-pubDone, ErrClosed)
			sub.Disconnect()
			require.ErrorIs(t, <-subDone, ErrClosed)
		})
	}
}

// fakeBroker accepts connections and runs handle for each; for tests of
// what Mosquitto will not do (refusals, silence).
func fakeBroker(t *testing.T, tlsCfg *tls.Config, handle func(conn net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

// readRaw reads one packet from the client side.
func readRaw(br *bufio.Reader, version byte) (packets.Packet, error) {
	hb, err := br.ReadByte()
	if err != nil {
		return packets.Packet{}, err
	}
	var fh packets.FixedHeader
	if err := fh.Decode(hb); err != nil {
		return packets.Packet{}, err
	}
	n, _, err := packets.DecodeLength(br)
	if err != nil {
		return packets.Packet{}, err
	}
	fh.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return packets.Packet{}, err
	}
	pk := packets.Packet{FixedHeader: fh, ProtocolVersion: version}
	switch fh.Type {
	case packets.Connect:
		err = pk.ConnectDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Subscribe:
		err = pk.SubscribeDecode(body)
	}
	return pk, err
}

func writeRaw(t *testing.T, w io.Writer, pk packets.Packet) {
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackEncode(&buf)
	case packets.Pingresp:
		err = pk.PingrespEncode(&buf)
	case packets.Suback:
		err = pk.SubackEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		t.Errorf("writeRaw: type %d", pk.FixedHeader.Type)
	}
	if err == nil {
		w.Write(buf.Bytes())
	}
}

func TestConnackRefusalIsExplained(t *testing.T) {
	for _, tc := range []struct {
		version byte
		code    byte
		want    string
	}{
		{MQTT5, 0x87, "connection refused: not authorized (0x87)"},
		{MQTT5, 0x85, "connection refused: client identifier not valid (0x85)"},
		{MQTT311, 0x05, "connection refused: not authorized (0x05)"},
		{MQTT311, 0x02, "connection refused: identifier rejected (0x02)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			addr := fakeBroker(t, nil, func(conn net.Conn, br *bufio.Reader) {
				pk, err := readRaw(br, tc.version)
				if err != nil || pk.FixedHeader.Type != packets.Connect {
					return
				}
				writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: tc.version, ReasonCode: tc.code})
			})
			_, err := Connect(t.Context(), ClientOptions{Addr: addr, ClientID: "L1", Version: tc.version})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.True(t, isRefusal(err))
		})
	}
}

// TestConnectSendsCleanSessionNoWill checks the CONNECT a locker sends.
func TestConnectSendsCleanSessionNoWill(t *testing.T) {
	for _, v := range []byte{MQTT311, MQTT5} {
		got := make(chan packets.Packet, 2)
		addr := fakeBroker(t, nil, func(conn net.Conn, br *bufio.Reader) {
			pk, err := readRaw(br, v)
			if err != nil {
				return
			}
			got <- pk
			writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: v})
			sub, err := readRaw(br, v)
			if err != nil {
				return
			}
			got <- sub
			writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: v, PacketID: sub.PacketID, ReasonCodes: []byte{0, 0}})
			io.Copy(io.Discard, br)
		})
		c, err := Connect(t.Context(), ClientOptions{Addr: addr, ClientID: "L-1", Version: v, Keepalive: 45 * time.Second, Subscribe: []string{"lockers/L-1/rpc/req", "lockers/L-1/desired"}})
		require.NoError(t, err)
		con := <-got
		require.Equal(t, v, con.ProtocolVersion)
		require.True(t, con.Connect.Clean)
		require.False(t, con.Connect.WillFlag)
		require.Equal(t, "L-1", con.Connect.ClientIdentifier)
		require.EqualValues(t, 45, con.Connect.Keepalive)
		if v == MQTT5 {
			require.Zero(t, con.Properties.SessionExpiryInterval, "session expiry 0")
		}
		sub := <-got
		require.Len(t, sub.Filters, 2)
		require.Equal(t, "lockers/L-1/rpc/req", sub.Filters[0].Filter)
		require.Equal(t, 45*time.Second, c.Info().Keepalive)
		c.Disconnect()
	}
}

func TestSubscriptionRefusal(t *testing.T) {
	addr := fakeBroker(t, nil, func(conn net.Conn, br *bufio.Reader) {
		if _, err := readRaw(br, MQTT5); err != nil {
			return
		}
		writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: MQTT5})
		sub, err := readRaw(br, MQTT5)
		if err != nil {
			return
		}
		writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: MQTT5, PacketID: sub.PacketID, ReasonCodes: []byte{0x87}})
	})
	_, err := Connect(t.Context(), ClientOptions{Addr: addr, ClientID: "L1", Subscribe: []string{"lockers/L2/rpc/req"}})
	require.ErrorContains(t, err, `subscription to "lockers/L2/rpc/req" refused: not authorized (0x87)`)
}

func TestKeepalivePingsAndDetectsDeadServer(t *testing.T) {
	var pings atomic.Int32
	answer := atomic.Bool{}
	answer.Store(true)
	addr := fakeBroker(t, nil, func(conn net.Conn, br *bufio.Reader) {
		if _, err := readRaw(br, MQTT5); err != nil {
			return
		}
		writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: MQTT5})
		for {
			pk, err := readRaw(br, MQTT5)
			if err != nil {
				return
			}
			if pk.FixedHeader.Type == packets.Pingreq {
				pings.Add(1)
				if answer.Load() {
					writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}})
				}
			}
		}
	})
	c, err := Connect(t.Context(), ClientOptions{Addr: addr, ClientID: "L1", Keepalive: time.Second})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- c.ReadLoop() }()
	require.Eventually(t, func() bool { return pings.Load() >= 3 }, 10*time.Second, 20*time.Millisecond, "PINGREQ every keepalive/2")
	select {
	case err := <-done:
		t.Fatalf("connection ended while the server answered pings: %v", err)
	default:
	}
	answer.Store(false)
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("a server that stopped answering PINGREQ was not detected")
	}
}

func TestServerDisconnectReason(t *testing.T) {
	addr := fakeBroker(t, nil, func(conn net.Conn, br *bufio.Reader) {
		if _, err := readRaw(br, MQTT5); err != nil {
			return
		}
		writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: MQTT5})
		writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: MQTT5, ReasonCode: 0x97})
		io.Copy(io.Discard, br)
	})
	c, err := Connect(t.Context(), ClientOptions{Addr: addr, ClientID: "L1"})
	require.NoError(t, err)
	err = c.ReadLoop()
	require.ErrorContains(t, err, "disconnected by server: quota exceeded (0x97)")
}

// testCA is a throwaway CA for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLS13ClientCertRefusal: the server refuses our client certificate; with
// TLS 1.3 our handshake has already succeeded and the alert arrives on the
// first read, waiting for the CONNACK. The error must say so.
func TestTLS13ClientCertRefusal(t *testing.T) {
	hubCA := newTestCA(t, "hub CA")
	foreignCA := newTestCA(t, "foreign CA")
	srvCfg := &tls.Config{
		Certificates: []tls.Certificate{hubCA.issue(t, "hub", true)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    hubCA.pool,
		MinVersion:   tls.VersionTLS13,
	}
	addr := fakeBroker(t, srvCfg, func(conn net.Conn, br *bufio.Reader) {
		pk, err := readRaw(br, MQTT5) // the handshake happens in this read
		if err != nil {
			return
		}
		_ = pk
		writeRaw(t, conn, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: MQTT5})
		io.Copy(io.Discard, br)
	})
	clientTLS := func(ca *testCA) *tls.Config {
		return &tls.Config{RootCAs: hubCA.pool, Certificates: []tls.Certificate{ca.issue(t, "L1", false)}, ServerName: "127.0.0.1"}
	}
	c, err := Connect(t.Context(), ClientOptions{Addr: addr, ClientID: "L1", TLS: clientTLS(hubCA)})
	require.NoError(t, err, "a certificate of the hub CA is accepted")
	c.Disconnect()

	_, err = Connect(t.Context(), ClientOptions{Addr: addr, ClientID: "L1", TLS: clientTLS(foreignCA)})
	require.Error(t, err)
	require.Contains(t, err.Error(), "reading CONNACK")
	require.Contains(t, err.Error(), "refused the TLS connection")
	require.True(t, isTLSRefusal(err), err.Error())
}

func TestConnectHonoursContext(t *testing.T) {
	addr := fakeBroker(t, nil, func(conn net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) }) // never answers
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Connect(ctx, ClientOptions{Addr: addr, ClientID: "L1"})
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
}
