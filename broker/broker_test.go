package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/protocol"
)

func TestLockerConnectsSubscribesAndPublishes(t *testing.T) {
	h := hubtest.Start(t)
	for _, ver := range []byte{4, 5} {
		id := "L-v" + string('0'+ver)
		cert := h.Locker(id)
		c := dialRaw(t, h.MQTTAddr, h.ClientTLS(cert))
		c.ver = ver
		require.Zero(t, c.connect(id))
		hubtest.Eventually(t, 2*time.Second, "locker online", func() bool { return h.App.Registry.Online(id) })
		require.Equal(t, byte(1), c.subscribe("lockers/"+id+"/rpc/req"), "granted QoS 1")
		require.NoError(t, c.publish("lockers/"+id+"/telemetry", 1, 7, []byte(`{"boot":1,"seq":1,"ts":1,"m":{"temp_c":4}}`)))
		ack := c.mustRead(packets.Puback)
		require.Equal(t, uint16(7), ack.PacketID)
		require.Zero(t, ack.ReasonCode)
	}
	require.Equal(t, 2.0, h.Metric("lockerhub_broker_connected_lockers"))
	require.Equal(t, 2.0, h.Metric("lockerhub_broker_messages_received_total", "kind", "telemetry"))
}

func TestConnackAdvertisesLimits(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	c := dialRaw(t, h.MQTTAddr, h.ClientTLS(cert))
	pk := connectPacket(5, "L1")
	pk.Connect.Keepalive = 0
	require.NoError(t, c.write(pk))
	ack := c.mustRead(packets.Connack)
	require.Zero(t, ack.ReasonCode)
	require.Equal(t, uint32(256<<10), ack.Properties.MaximumPacketSize)
	require.True(t, ack.Properties.MaximumQosFlag)
	require.Equal(t, byte(1), ack.Properties.MaximumQos)
	require.True(t, ack.Properties.ServerKeepAliveFlag, "keepalive 0 gets a server keepalive")
	require.Equal(t, uint16(60), ack.Properties.ServerKeepAlive)
}

func TestConnectRefusals(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	ghost := signWithHubCA(t, h, "GHOST", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name   string
		ver    byte
		cert   tls.Certificate
		id     string
		code   byte
		reason string
	}{
		{"client id differs from CN, MQTT 5", 5, cert.TLS, "L2", 0x85, "client_id_mismatch"},
		{"client id differs from CN, MQTT 3.1.1", 4, cert.TLS, "L2", 0x02, "client_id_mismatch"},
		{"empty client id", 5, cert.TLS, "", 0x85, "client_id_mismatch"},
		{"unregistered locker, MQTT 5", 5, ghost, "GHOST", 0x87, "not_authorized"},
		{"unregistered locker, MQTT 3.1.1", 4, ghost, "GHOST", 0x05, "not_authorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.Metric("lockerhub_broker_refusals_total", "stage", "connect", "reason", tc.reason)
			cfg := h.ClientTLS(cert)
			cfg.Certificates = []tls.Certificate{tc.cert}
			c := dialRaw(t, h.MQTTAddr, cfg)
			c.ver = tc.ver
			require.Equal(t, tc.code, c.connect(tc.id))
			closed, _ := c.closed(2 * time.Second)
			require.True(t, closed, "the connection is closed after the refusal")
			require.Equal(t, before+1, h.Metric("lockerhub_broker_refusals_total", "stage", "connect", "reason", tc.reason))
		})
	}
	require.False(t, h.App.Registry.Online("L1"))
}

func TestTLSRefusals(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	revoked := h.Locker("L2")
	_, err := h.Admin.RevokeCertificates(context.Background(), "L2")
	require.NoError(t, err)
	expired := signWithHubCA(t, h, "L1", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	notYet := signWithHubCA(t, h, "L1", time.Now().Add(time.Hour), time.Now().Add(48*time.Hour))
	serverOnly := signWithHubCA(t, h, "L1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), x509.ExtKeyUsageServerAuth)
	foreign := foreignCert(t, "L1")

	for _, tc := range []struct {
		name   string
		certs  []tls.Certificate
		reason string
	}{
		{"no certificate", nil, "no_certificate"},
		{"certificate from another CA", []tls.Certificate{foreign}, "unknown_ca"},
		{"expired certificate", []tls.Certificate{expired}, "expired"},
		{"certificate not yet valid", []tls.Certificate{notYet}, "not_yet_valid"},
		{"certificate for servers, not clients", []tls.Certificate{serverOnly}, "wrong_usage"},
		{"revoked certificate", []tls.Certificate{revoked.TLS}, "revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := h.ClientTLS(cert)
			cfg.Certificates = nil
			// Present the certificate whatever CAs the server asks for, as
			// OpenSSL clients do (Go's client would send none for a foreign CA).
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if len(tc.certs) == 0 {
					return &tls.Certificate{}, nil
				}
				return &tc.certs[0], nil
			}
			require.Error(t, tryConnect(h.MQTTAddr, cfg, "L1"), "the handshake must fail")
			hubtest.Eventually(t, 2*time.Second, "refusal counted as "+tc.reason, func() bool {
				return h.Metric("lockerhub_broker_refusals_total", "stage", "tls", "reason", tc.reason) == 1
			})
		})
	}
}

// TestTLSVersionsAndCiphers: the lockers' listener speaks TLS 1.2 with
// ECDHE and AEAD ciphers, and TLS 1.3; older versions and CBC suites are
// refused in the handshake.
func TestTLSVersionsAndCiphers(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	for _, tc := range []struct {
		name     string
		min, max uint16
		suites   []uint16
		ok       bool
	}{
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, nil, true},
		{"TLS 1.2 with AES-GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, true},
		{"TLS 1.2 with ChaCha20-Poly1305", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, true},
		{"TLS 1.2 with CBC and SHA-1", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, false},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := h.ClientTLS(cert)
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tc.min, tc.max, tc.suites
			err := tryConnect(h.MQTTAddr, cfg, "L1")
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err, "the handshake must fail")
			}
		})
	}
}

func TestRevocationClosesOpenConnectionAndRefusesReconnect(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	c := dialRaw(t, h.MQTTAddr, h.ClientTLS(cert))
	require.Zero(t, c.connect("L1"))
	hubtest.Eventually(t, 2*time.Second, "online", func() bool { return h.App.Registry.Online("L1") })

	start := time.Now()
	n, err := h.Admin.RevokeCertificates(context.Background(), "L1")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	closed, got := c.closed(time.Second)
	require.True(t, closed, "closed within 1 s of the revocation")
	require.Less(t, time.Since(start), 1500*time.Millisecond)
	require.NotEmpty(t, got, "an MQTT 5 locker is told why")
	require.Equal(t, byte(packets.Disconnect), got[0].FixedHeader.Type)
	require.Equal(t, packets.ErrNotAuthorized.Code, got[0].ReasonCode)
	hubtest.Eventually(t, 2*time.Second, "offline", func() bool { return !h.App.Registry.Online("L1") })

	require.Error(t, tryConnect(h.MQTTAddr, h.ClientTLS(cert), "L1"), "a revoked certificate cannot connect again")
}

func TestACLKeepsLockersInTheirOwnTree(t *testing.T) {
	h := hubtest.Start(t)
	l1 := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("L1")))
	l2 := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("L2")))
	require.Zero(t, l1.connect("L1"))
	require.Zero(t, l2.connect("L2"))
	require.Equal(t, byte(1), l2.subscribe("lockers/L2/#"))

	for _, f := range []string{"lockers/L2/#", "lockers/+/rpc/req", "#", "lockers/#", "$share/g/lockers/L1/#", "$SYS/#"} {
		require.Equal(t, packets.ErrNotAuthorized.Code, l1.subscribe(f), "subscribe %s", f)
	}
	for i, topic := range []string{"lockers/L2/telemetry", "lockers/L2/rpc/req", "lockers/L1/rpc/req", "lockers/L1/nonsense", "other/topic"} {
		id := uint16(10 + i)
		require.NoError(t, l1.publish(topic, 1, id, []byte(`{}`)))
		ack := l1.mustRead(packets.Puback)
		require.Equal(t, id, ack.PacketID)
		require.Equal(t, packets.ErrNotAuthorized.Code, ack.ReasonCode, "publish to %s", topic)
	}
	require.NoError(t, l1.publish("lockers/L2/desired", 0, 0, []byte(`{}`)))
	pk, err := l2.read(500 * time.Millisecond)
	require.Error(t, err, "L2 must never see what L1 published into its tree, got %+v", pk)
	require.Equal(t, 6.0, h.Metric("lockerhub_broker_acl_denied_total", "action", "publish"))
	require.Equal(t, 6.0, h.Metric("lockerhub_broker_acl_denied_total", "action", "subscribe"))

	// MQTT 3.1.1 has no PUBACK reason code: the publisher is disconnected.
	l3 := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("L3")))
	l3.ver = 4
	require.Zero(t, l3.connect("L3"))
	require.NoError(t, l3.publish("lockers/L2/telemetry", 1, 1, []byte(`{}`)))
	closed, _ := l3.closed(2 * time.Second)
	require.True(t, closed)
	_, err = l2.read(300 * time.Millisecond)
	require.Error(t, err)
}

func TestTakeoverKeepsLockerOnline(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	old := dialRaw(t, h.MQTTAddr, h.ClientTLS(cert))
	require.Zero(t, old.connect("L1"))
	hubtest.Eventually(t, 2*time.Second, "online", func() bool { return h.App.Registry.Online("L1") })

	nw := dialRaw(t, h.MQTTAddr, h.ClientTLS(cert))
	require.Zero(t, nw.connect("L1"))
	closed, got := old.closed(2 * time.Second)
	require.True(t, closed, "the older session is closed")
	require.NotEmpty(t, got)
	require.Equal(t, packets.ErrSessionTakenOver.Code, got[0].ReasonCode)

	// The late disconnect of the replaced session must not mark L1 offline.
	require.Never(t, func() bool { return !h.App.Registry.Online("L1") }, 300*time.Millisecond, 10*time.Millisecond)
	require.Equal(t, 1.0, h.Metric("lockerhub_broker_connected_lockers"))
	require.Equal(t, 1.0, h.Metric("lockerhub_broker_takeovers_total"))
	require.NoError(t, nw.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}))
	nw.mustRead(packets.Pingresp)
}

func TestConnectDeadline(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.ConnectTimeout = 300 * time.Millisecond })
	cert := h.Locker("L1")
	c := dialRaw(t, h.MQTTAddr, h.ClientTLS(cert))
	start := time.Now()
	closed, _ := c.closed(3 * time.Second)
	require.True(t, closed, "a connection that sends no CONNECT is closed")
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestBadPacketsEndOnlyTheirConnection(t *testing.T) {
	h := hubtest.Start(t)
	good := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("GOOD")))
	require.Zero(t, good.connect("GOOD"))

	t.Run("oversize publish", func(t *testing.T) {
		c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("BIG")))
		require.Zero(t, c.connect("BIG"))
		_ = c.publish("lockers/BIG/telemetry", 1, 1, make([]byte, 300<<10))
		closed, _ := c.closed(3 * time.Second)
		require.True(t, closed)
		hubtest.Eventually(t, 2*time.Second, "counted", func() bool {
			return h.Metric("lockerhub_broker_disconnects_total", "reason", "packet_too_large") == 1
		})
	})
	t.Run("malformed CONNECT", func(t *testing.T) {
		c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("JUNK")))
		_, err := c.conn.Write([]byte{0x10, 0x06, 0x00, 0x04, 'M', 'Q', 0xff, 0xff})
		require.NoError(t, err)
		closed, _ := c.closed(3 * time.Second)
		require.True(t, closed)
	})
	t.Run("first packet not CONNECT", func(t *testing.T) {
		c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("EARLY")))
		require.NoError(t, c.publish("lockers/EARLY/telemetry", 0, 0, []byte(`{}`)))
		closed, _ := c.closed(3 * time.Second)
		require.True(t, closed)
	})
	t.Run("QoS 2 publish, MQTT 5", func(t *testing.T) {
		c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("Q2")))
		require.Zero(t, c.connect("Q2"))
		require.NoError(t, c.publish("lockers/Q2/telemetry", 2, 1, []byte(`{}`)))
		closed, got := c.closed(3 * time.Second)
		require.True(t, closed)
		require.Len(t, got, 1, "a DISCONNECT and nothing else (no PUBACK)")
		require.Equal(t, byte(packets.Disconnect), got[0].FixedHeader.Type)
		require.Equal(t, packets.ErrQosNotSupported.Code, got[0].ReasonCode)
	})
	t.Run("QoS 2 publish, MQTT 3.1.1", func(t *testing.T) {
		c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("Q2v4")))
		c.ver = 4
		require.Zero(t, c.connect("Q2v4"))
		require.NoError(t, c.publish("lockers/Q2v4/telemetry", 2, 1, []byte(`{}`)))
		closed, got := c.closed(3 * time.Second)
		require.True(t, closed)
		require.Empty(t, got, "no PUBACK for a refused QoS 2 publish")
		require.Zero(t, h.Metric("lockerhub_broker_messages_received_total", "kind", "telemetry"), "never handed on")
		require.Equal(t, 2.0, h.Metric("lockerhub_broker_disconnects_total", "reason", "qos2"))
	})

	require.NoError(t, good.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}))
	good.mustRead(packets.Pingresp)
	require.True(t, h.App.Registry.Online("GOOD"))
}

func TestWillsAreStripped(t *testing.T) {
	h := hubtest.Start(t)
	victim := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("VICTIM")))
	require.Zero(t, victim.connect("VICTIM"))
	require.Equal(t, byte(1), victim.subscribe("lockers/VICTIM/rpc/req"))

	c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("L1")))
	pk := connectPacket(5, "L1")
	pk.Connect.WillFlag = true
	pk.Connect.WillTopic = "lockers/VICTIM/rpc/req"
	pk.Connect.WillPayload = []byte(`{"id":"x","method":"cell.open","params":{"cell":"A01"}}`)
	require.NoError(t, c.write(pk))
	require.Zero(t, c.mustRead(packets.Connack).ReasonCode)
	require.Equal(t, 1.0, h.Metric("lockerhub_broker_wills_stripped_total"))
	c.conn.Close() // an abrupt end would publish a will

	got, err := victim.read(500 * time.Millisecond)
	require.Error(t, err, "no will may reach another locker, got %+v", got)
	hubtest.Eventually(t, 2*time.Second, "L1 offline", func() bool { return !h.App.Registry.Online("L1") })
}

// signWithHubCA issues a certificate for cn with any validity, signed with the
// hub's CA key from its data dir (the API only issues sane ones).
func signWithHubCA(t *testing.T, h *hubtest.Hub, cn string, notBefore, notAfter time.Time, usage ...x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	caCertPEM, err := os.ReadFile(filepath.Join(h.DataDir, pki.CACertFile))
	require.NoError(t, err)
	caKeyPEM, err := os.ReadFile(filepath.Join(h.DataDir, pki.CAKeyFile))
	require.NoError(t, err)
	ca, err := tls.X509KeyPair(caCertPEM, caKeyPEM)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	require.NoError(t, err)
	return leafCert(t, cn, caCert, ca.PrivateKey, notBefore, notAfter, usage...)
}

func foreignCert(t *testing.T, cn string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return leafCert(t, cn, caCert, key, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// leafCert signs a client certificate for cn (usage: client authentication,
// unless given).
func leafCert(t *testing.T, cn string, ca *x509.Certificate, caKey any, notBefore, notAfter time.Time, usage ...x509.ExtKeyUsage) tls.Certificate {
	if len(usage) == 0 {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := pki.NewSerial()
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestSendOnlyHubKindsToConnectedLockers(t *testing.T) {
	h := hubtest.Start(t)
	c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("L1")))
	require.Zero(t, c.connect("L1"))
	require.Equal(t, byte(1), c.subscribe("lockers/L1/rpc/req"))

	require.ErrorIs(t, h.App.Broker.Send("L1", protocol.KindTelemetry, []byte(`{}`)), broker.ErrNotToHub)
	require.ErrorIs(t, h.App.Broker.Send("L2", protocol.KindRPCReq, []byte(`{}`)), broker.ErrOffline)
	require.Error(t, h.App.Broker.Send("L+", protocol.KindRPCReq, []byte(`{}`)))

	require.NoError(t, h.App.Broker.Send("L1", protocol.KindRPCReq, []byte(`{"id":"c-1","method":"cell.status"}`)))
	pk := c.mustRead(packets.Publish)
	require.Equal(t, "lockers/L1/rpc/req", pk.TopicName)
	require.Zero(t, pk.FixedHeader.Qos, "hub→device messages are QoS 0 (decision 9)")
	require.JSONEq(t, `{"id":"c-1","method":"cell.status"}`, string(pk.Payload))
	hubtest.Eventually(t, 2*time.Second, "sent message counted", func() bool {
		return h.Metric("lockerhub_broker_messages_sent_total", "kind", "rpc/req") == 1
	})
}

// TestTLSSessionsResumeAcrossRestart: after a hub restart lockers resume their
// TLS sessions (no certificate signatures: cheaper reconnect storms), and a
// revoked certificate cannot sneak back in through a resumed session.
func TestTLSSessionsResumeAcrossRestart(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	cfg := h.ClientTLS(cert)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	session := func() (resumed bool, err error) {
		c := dialRaw(t, h.MQTTAddr, cfg)
		if code := c.connect("L1"); code != 0 {
			return false, fmt.Errorf("CONNACK 0x%02x", code)
		}
		resumed = c.conn.(*tls.Conn).ConnectionState().DidResume
		c.conn.Close()
		return resumed, nil
	}
	resumed, err := session()
	require.NoError(t, err)
	require.False(t, resumed, "the first handshake is a full one")
	h.Restart()
	resumed, err = session()
	require.NoError(t, err)
	require.True(t, resumed, "the session resumes after the restart")

	_, err = h.Admin.RevokeCertificates(context.Background(), "L1")
	require.NoError(t, err)
	require.Error(t, tryConnect(h.MQTTAddr, cfg, "L1"), "a revoked certificate cannot resume")
}
