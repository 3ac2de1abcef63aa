package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/pki"
)

// TestHubctlEndToEnd drives the real commands, in-process through run, against
// a real hub: the certificate hubctl writes must let the locker connect over
// mTLS MQTT, the revocation must close that door, and the enrolment token it
// prints must enrol a locker.
func TestHubctlEndToEnd(t *testing.T) {
	h := hubtest.Start(t)
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "") // run reads the real environment
	}
	ctx := context.Background()
	local := []string{"--data-dir", h.DataDir}                         // as next to `make run`
	remote := []string{"--server", h.HTTPURL, "--token", h.AdminToken} // as from elsewhere

	hubctl := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	ok := func(t *testing.T, args ...string) string {
		t.Helper()
		code, stdout, stderr := hubctl(t, args...)
		require.Equal(t, exitOK, code, "hubctl %q: %s", args, stderr)
		return stdout
	}
	// fails checks a failure: the exit code, nothing on stdout and one line on
	// stderr holding every want.
	fails := func(t *testing.T, code int, args []string, want ...string) string {
		t.Helper()
		got, stdout, stderr := hubctl(t, args...)
		require.Equal(t, code, got, "hubctl %q: stdout %q stderr %q", args, stdout, stderr)
		require.Empty(t, stdout)
		require.True(t, strings.HasPrefix(stderr, "hubctl: ") && strings.Count(stderr, "\n") == 1, "one line: %q", stderr)
		for _, w := range want {
			require.Contains(t, stderr, w)
		}
		return stderr
	}
	with := func(base []string, args ...string) []string { return append(append([]string{}, args...), base...) }

	t.Run("locker add", func(t *testing.T) {
		out := ok(t, with(local, "model", "add", "kx-12", "--manufacturer", "KEBA", "--name", "KePol 12",
			"--layout", "A:SSSSMMMM,B:MMLL", "--capabilities", "screen,keypad")...)
		require.Contains(t, out, "Model kx-12 added.")
		require.Contains(t, out, "Cells         12 (S 4, M 6, L 2)\n")

		out = ok(t, with(local, "locker", "add", "L1", "--model", "kx-12", "--segment", "north")...)
		require.Contains(t, out, "Locker L1 registered.")
		require.Contains(t, out, "Cells         12\n", "from the model's layout")
		require.Contains(t, out, "Segments      north\n")

		// Flags first, remote credentials, raw JSON.
		out = ok(t, with(remote, "locker", "add", "--cells", "4", "--json", "L2")...)
		var l apiclient.Locker
		require.NoError(t, json.Unmarshal([]byte(out), &l), out)
		require.Equal(t, "L2", l.ID)
		require.Equal(t, 4, l.Cells)

		fails(t, exitFail, with(local, "locker", "add", "L1", "--cells", "3"), "locker add L1:", "exists")
		fails(t, exitFail, with(local, "locker", "add", "L5", "--cells", "100000"), "locker add L5:", "HTTP 400")
	})

	t.Run("locker list and show", func(t *testing.T) {
		out := ok(t, with(local, "locker", "list")...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 3, out)
		require.Regexp(t, `^ID\s+MODEL\s+CELLS\s+SEGMENTS\s+ONLINE\s+CONNECTED\s+DISCONNECTED$`, lines[0])
		require.Regexp(t, `^L1\s+kx-12\s+12\s+north\s+no\s+-\s+-$`, lines[1])
		require.Regexp(t, `^L2\s+-\s+4\s+-\s+no\s+-\s+-$`, lines[2])

		out = ok(t, with(local, "locker", "list", "--json")...)
		var list struct{ Lockers []apiclient.Locker }
		require.NoError(t, json.Unmarshal([]byte(out), &list))
		require.Len(t, list.Lockers, 2)

		out = ok(t, with(local, "locker", "show", "L1")...)
		require.Contains(t, out, "ID            L1\n")
		require.Contains(t, out, "Model         kx-12\n")
		require.Contains(t, out, "Cells         12 (S 4, M 6, L 2)\n")
		require.Contains(t, out, "Online        no\n")
	})

	dir := filepath.Join(t.TempDir(), "certs")
	var firstSerial string
	t.Run("cert issue", func(t *testing.T) {
		out := ok(t, with(local, "cert", "issue", "L1", "--out", dir)...)
		require.Contains(t, out, "Certificate issued for L1.")

		key, err := os.Stat(filepath.Join(dir, "L1.key"))
		require.NoError(t, err)
		require.Equal(t, "-rw-------", key.Mode().Perm().String())
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "L1.crt"), filepath.Join(dir, "L1.key"))
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		require.NoError(t, err)
		require.Equal(t, "L1", leaf.Subject.CommonName)
		firstSerial = pki.SerialString(leaf.SerialNumber)
		require.Contains(t, out, firstSerial)

		caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		require.NoError(t, err)
		hubCA, err := os.ReadFile(h.CAFile())
		require.NoError(t, err)
		require.Equal(t, string(hubCA), string(caPEM))
		roots := x509.NewCertPool()
		require.True(t, roots.AppendCertsFromPEM(caPEM))
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		require.NoError(t, err)

		// The files are a working locker identity.
		conn := mqttConnect(t, h, pair, "L1")
		require.NoError(t, conn.Close())

		// No silent overwrite of a key; --force replaces it.
		fails(t, exitFail, with(local, "cert", "issue", "L1", "--out", dir), "L1.key already exists: pass --force")
		ok(t, with(local, "cert", "issue", "L1", "--out", dir, "--force")...)
		pair2, err := tls.LoadX509KeyPair(filepath.Join(dir, "L1.crt"), filepath.Join(dir, "L1.key"))
		require.NoError(t, err)
		require.NotEqual(t, pair.Certificate[0], pair2.Certificate[0])

		fails(t, exitFail, with(local, "cert", "issue", "NOPE", "--out", t.TempDir()), "cert issue NOPE:", "HTTP 404")
	})

	t.Run("cert revoke", func(t *testing.T) {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "L1.crt"), filepath.Join(dir, "L1.key"))
		require.NoError(t, err)
		conn := mqttConnect(t, h, pair, "L1")
		defer conn.Close()

		out := ok(t, with(local, "cert", "revoke", "L1")...)
		require.Equal(t, "Revoked 2 certificates of L1.\n", out)

		// The open connection is closed and a new one is refused.
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err = conn.Read(make([]byte, 16))
		require.Error(t, err, "the revoked locker's connection must be closed")
		require.False(t, mqttConnects(h, pair, "L1"), "a revoked certificate must be refused")

		out = ok(t, with(remote, "cert", "revoke", "L1")...)
		require.Equal(t, "Revoked 0 certificates of L1 (it had none still valid).\n", out)
		fails(t, exitFail, with(local, "cert", "revoke", "NOPE"), "cert revoke NOPE:", "HTTP 404")
	})

	t.Run("enroll-token", func(t *testing.T) {
		factory := filepath.Join(t.TempDir(), "factory")
		out := ok(t, with(local, "enroll-token", "L2", "--ttl", "1h", "--out", factory)...)
		require.Regexp(t, `(?m)^Locker\s+L2$`, out)
		require.Regexp(t, `(?m)^Expires\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \(in (59m0s|1h0m0s); valid for one enrolment\)$`, out)
		require.Contains(t, out, filepath.Join(factory, "ca.crt"))
		caPEM, err := os.ReadFile(filepath.Join(factory, "ca.crt"))
		require.NoError(t, err)
		hubCA, err := os.ReadFile(h.CAFile())
		require.NoError(t, err)
		require.Equal(t, string(hubCA), string(caPEM))

		var token string
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Token" {
				token = f[1]
			}
		}
		require.NotEmpty(t, token, out)

		// The printed token enrols the locker, once, on the device listener,
		// trusting only the shipped ca.crt.
		roots := x509.NewCertPool()
		require.True(t, roots.AppendCertsFromPEM(caPEM))
		dev := apiclient.NewTLS(h.DeviceURL, "", &tls.Config{RootCAs: roots})
		csr, key, err := pki.NewKeyAndCSR("L2")
		require.NoError(t, err)
		cert, err := dev.Enroll(ctx, token, csr)
		require.NoError(t, err)
		pair, err := tls.X509KeyPair([]byte(cert.Certificate), key)
		require.NoError(t, err)
		require.NoError(t, mqttConnect(t, h, pair, "L2").Close())
		_, err = dev.Enroll(ctx, token, csr)
		require.Error(t, err, "the token is single-use")

		out = ok(t, with(remote, "enroll-token", "L2", "--json")...)
		var tok apiclient.EnrollToken
		require.NoError(t, json.Unmarshal([]byte(out), &tok), out)
		require.Equal(t, "L2", tok.LockerID)
		require.WithinDuration(t, time.Now().Add(24*time.Hour), tok.ExpiresAt, time.Minute)

		fails(t, exitFail, with(local, "enroll-token", "NOPE"), "enroll-token NOPE:", "HTTP 404")
	})

	t.Run("api", func(t *testing.T) {
		out := ok(t, with(local, "api", "GET", "/api/v1/lockers")...)
		var list struct{ Lockers []apiclient.Locker }
		require.NoError(t, json.Unmarshal([]byte(out), &list), out)
		require.Len(t, list.Lockers, 2)
		require.True(t, strings.HasPrefix(out, "{\n  \"lockers\": ["), "indented: %q", out)

		out = ok(t, with(remote, "api", "post", "lockers", "--data", `{"id":"L3","cells":6}`)...)
		var l apiclient.Locker
		require.NoError(t, json.Unmarshal([]byte(out), &l))
		require.Equal(t, "L3", l.ID)

		body := filepath.Join(t.TempDir(), "l4.json")
		require.NoError(t, os.WriteFile(body, []byte(`{"id":"L4","cells":2}`), 0o644))
		ok(t, with(local, "api", "POST", "/api/v1/lockers", "--data", "@"+body)...)
		ok(t, with(local, "locker", "show", "L4")...)

		out = ok(t, with(local, "api", "GET", "/api/v1/ca.crt")...)
		require.True(t, strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----"))

		fails(t, exitFail, with(local, "api", "GET", "/api/v1/lockers/NOPE"), "GET /api/v1/lockers/NOPE: HTTP 404: {", `"code":"not_found"`)
		fails(t, exitFail, with(local, "api", "POST", "lockers", "--data", `{"id":"L3","cells":6}`), "HTTP 409")
	})

	t.Run("errors", func(t *testing.T) {
		fails(t, exitFail, with(local, "locker", "show", "NOPE"), "locker show NOPE:", "HTTP 404")
		fails(t, exitFail, []string{"locker", "list", "--data-dir", t.TempDir()},
			"no local hub found", "start one with `make run` or pass --server/--token")
		fails(t, exitFail, []string{"locker", "list", "--server", h.HTTPURL, "--token", "wrong"},
			"HTTP 401", "check --token/HUBCTL_TOKEN")
		fails(t, exitUsage, with(local, "locker", "add", "L9"), "--cells N is required")
	})

	t.Run("fleet model", func(t *testing.T) {
		out := ok(t, with(local, "model", "list")...)
		require.Regexp(t, `(?m)^kx-12\s+KEBA\s+KePol 12\s+12\s+S 4, M 6, L 2\s+keypad,screen$`, out)
		out = ok(t, with(local, "model", "show", "kx-12")...)
		require.Contains(t, out, "Layout        A:SSSSMMMM,B:MMLL\n")
		fails(t, exitFail, with(local, "model", "delete", "kx-12"), "model delete kx-12:", "used by 1 lockers", "HTTP 409")
		fails(t, exitUsage, with(local, "model", "add", "kx-x", "--manufacturer", "M", "--name", "N", "--layout", "A:SSQ"), "--layout")
		fails(t, exitFail, with(local, "model", "add", "kx-x", "--manufacturer", "M", "--name", "N", "--layout", "A:S", "--capabilities", "fax"),
			"capabilities", "HTTP 400")

		out = ok(t, with(local, "locker", "update", "L3", "--address", "Hauptstraße 5, Berlin", "--segments", "north,pilot",
			"--carriers", "dhl", "--time-zone", "Europe/Berlin", "--lat", "52.5", "--lon", "13.4")...)
		require.Contains(t, out, "Locker L3 updated.")
		require.Contains(t, out, "Address       Hauptstraße 5, Berlin\n")
		require.Contains(t, out, "Location      52.5, 13.4\n")
		require.Contains(t, out, "Segments      north, pilot\n")
		fails(t, exitFail, with(local, "locker", "update", "L3", "--time-zone", "Mars/Base"), "time_zone", "HTTP 400")
		fails(t, exitFail, with(local, "locker", "update", "L3", "--lat", "91", "--lon", "0"), "lat", "HTTP 400")
		fails(t, exitFail, with(local, "locker", "update", "NOPE", "--address", "x"), "HTTP 404")

		ids := func(args ...string) []string {
			t.Helper()
			out := ok(t, with(local, append([]string{"locker", "list", "--json"}, args...)...)...)
			var page apiclient.LockerPage
			require.NoError(t, json.Unmarshal([]byte(out), &page))
			var ids []string
			for _, l := range page.Lockers {
				ids = append(ids, l.ID)
			}
			return ids
		}
		require.Equal(t, []string{"L1", "L3"}, ids("--segment", "north"))
		require.Equal(t, []string{"L3"}, ids("--segment", "pilot"))
		require.Equal(t, []string{"L1"}, ids("--model", "kx-12"))
		require.Equal(t, []string{"L3"}, ids("--carrier", "dhl"))
		require.Equal(t, []string{"L3"}, ids("--q", "BERLIN"))
		require.Equal(t, []string{"L1", "L2", "L3", "L4"}, ids("--status", "offline"))
		require.Empty(t, ids("--status", "online"))
		require.Equal(t, []string{"L2", "L3"}, ids("--limit", "2", "--offset", "1"))

		dir := t.TempDir()
		bad := filepath.Join(dir, "bad.csv")
		require.NoError(t, os.WriteFile(bad, []byte("id,model,cells,lat,lon\nI1,kx-12,,,\nI2,,4,91,0\n"), 0o644))
		fails(t, exitFail, with(local, "locker", "import", bad), "line 3, column lat", "nothing was imported")
		require.Len(t, ids(), 4, "nothing was imported")
		good := filepath.Join(dir, "good.csv")
		require.NoError(t, os.WriteFile(good, []byte("id,model,cells,address,time_zone,lat,lon,segments,carriers\n"+
			"I1,kx-12,,\"Ring 1, Wien\",Europe/Vienna,48.2,16.37,vienna|pilot,post|dhl\n"+
			"I2,,4,,,,,,\n"), 0o644))
		require.Equal(t, "Imported 2 lockers.\n", ok(t, with(local, "locker", "import", good)...))
		require.Equal(t, []string{"I1", "L3"}, ids("--segment", "pilot"))
		out = ok(t, with(local, "locker", "show", "I2")...)
		require.Contains(t, out, "Cells         4 (M 4)\n")

		require.Equal(t, "Locker L2 deleted. Revoked 1 certificate of L2.\n", ok(t, with(local, "locker", "delete", "L2")...))
		fails(t, exitFail, with(local, "locker", "show", "L2"), "HTTP 404")
		fails(t, exitFail, with(local, "locker", "delete", "L2"), "HTTP 404")
		ok(t, with(local, "locker", "delete", "L1")...)
		ok(t, with(local, "locker", "delete", "I1")...)
		require.Equal(t, "Model kx-12 deleted.\n", ok(t, with(local, "model", "delete", "kx-12")...), "no locker uses it any more")
	})

	t.Run("version", func(t *testing.T) {
		require.Regexp(t, `^hubctl \S+ \(go[^)]+\)\n$`, ok(t, "version"))
	})
}

// mqttConnect opens an mTLS connection to the hub's broker with pair and
// completes an MQTT 3.1.1 CONNECT as clientID, failing the test otherwise.
func mqttConnect(t *testing.T, h *hubtest.Hub, pair tls.Certificate, clientID string) *tls.Conn {
	t.Helper()
	conn, err := dialMQTT(h, pair, clientID)
	require.NoError(t, err)
	return conn
}

func mqttConnects(h *hubtest.Hub, pair tls.Certificate, clientID string) bool {
	conn, err := dialMQTT(h, pair, clientID)
	if conn != nil {
		conn.Close()
	}
	return err == nil
}

func dialMQTT(h *hubtest.Hub, pair tls.Certificate, clientID string) (*tls.Conn, error) {
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: h.CAPool(), ServerName: "127.0.0.1"}
	conn, err := tls.Dial("tcp", h.MQTTAddr, cfg)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// CONNECT: protocol "MQTT" level 4, clean session, keepalive 60 s.
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60}
	payload := append([]byte{0, byte(len(clientID))}, clientID...)
	pkt := append([]byte{0x10, byte(len(vh) + len(payload))}, append(vh, payload...)...)
	if _, err := conn.Write(pkt); err != nil {
		conn.Close()
		return nil, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil { // with TLS 1.3 a refused certificate shows up here
		conn.Close()
		return nil, err
	}
	if !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
		conn.Close()
		return nil, &connackError{ack}
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

type connackError struct{ ack []byte }

func (e *connackError) Error() string { return fmt.Sprintf("CONNACK refused: % x", e.ack) }
