package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/protocol"
)

// requireTool skips without the binary, or fails under CI=true.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := name + " is missing: apt-get install " + pkg + " (make test installs it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

type mosq struct {
	t    *testing.T
	h    *hubtest.Hub
	host string
	port string
}

func newMosq(t *testing.T, h *hubtest.Hub) *mosq {
	requireTool(t, "mosquitto_pub", "mosquitto-clients")
	host, port, ok := strings.Cut(h.MQTTAddr, ":")
	require.True(t, ok)
	return &mosq{t: t, h: h, host: host, port: port}
}

// args are the connection arguments for a locker with cert files (empty: none).
func (m *mosq) args(ver, id, certFile, keyFile string) []string {
	a := []string{"-V", ver, "-h", m.host, "-p", m.port, "--cafile", m.h.CAFile(), "-i", id}
	if certFile != "" {
		a = append(a, "--cert", certFile, "--key", keyFile)
	}
	return a
}

// pub runs mosquitto_pub -d and returns its exit code and combined output.
func (m *mosq) pub(args ...string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", append(args, "-d")...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		m.t.Fatalf("mosquitto_pub: %v", err)
	}
	return code, string(out)
}

// TestMosquittoClients is the acceptance test with a client we did not write:
// Debian's mosquitto_pub and mosquitto_sub.
func TestMosquittoClients(t *testing.T) {
	h := hubtest.Start(t)
	m := newMosq(t, h)
	l1 := h.Locker("L1")
	l2 := h.Locker("L2")
	revoked := h.Locker("L3")
	_, err := h.Admin.RevokeCertificates(context.Background(), "L3")
	require.NoError(t, err)
	foreign := foreignCert(t, "L1")
	foreignDir := t.TempDir()
	writeCertFiles(t, foreignDir, "L1", foreign)

	// L2 listens to everything in its own tree with mosquitto_sub.
	var subOut lockedBuffer
	subCtx, stopSub := context.WithCancel(context.Background())
	sub := exec.CommandContext(subCtx, "mosquitto_sub", append(m.args("mqttv5", "L2", l2.CertFile, l2.KeyFile), "-t", "lockers/L2/#", "-v", "-C", "1")...)
	sub.Stdout, sub.Stderr = &subOut, &subOut
	require.NoError(t, sub.Start())
	t.Cleanup(stopSub)
	hubtest.Eventually(t, 5*time.Second, "mosquitto_sub connected", func() bool { return h.App.Registry.Online("L2") })

	for _, ver := range []string{"mqttv5", "mqttv311"} {
		code, out := m.pub(append(m.args(ver, "L1", l1.CertFile, l1.KeyFile), "-q", "1", "-t", "lockers/L1/telemetry",
			"-m", fmt.Sprintf(`{"boot":1,"seq":1,"ts":%d,"m":{"temp_c":4.5}}`, time.Now().UnixMilli()))...)
		require.Zero(t, code, out)
		require.Contains(t, out, "received PUBACK", "%s: the publish is acknowledged", ver)
	}

	refusals := []struct {
		name, ver, id, cert, key, want string
	}{
		{"no certificate", "mqttv5", "L1", "", "", ""},
		{"certificate from another CA", "mqttv5", "L1", filepath.Join(foreignDir, "L1.crt"), filepath.Join(foreignDir, "L1.key"), ""},
		{"CN differs from client ID, MQTT 5", "mqttv5", "L2", l1.CertFile, l1.KeyFile, "Client Identifier not valid"},
		{"CN differs from client ID, MQTT 3.1.1", "mqttv311", "L2", l1.CertFile, l1.KeyFile, "identifier rejected"},
		{"revoked certificate", "mqttv5", "L3", revoked.CertFile, revoked.KeyFile, ""},
	}
	for _, r := range refusals {
		code, out := m.pub(append(m.args(r.ver, r.id, r.cert, r.key), "-q", "1", "-t", "lockers/"+r.id+"/telemetry", "-m", "{}")...)
		require.NotZero(t, code, "%s must be refused: %s", r.name, out)
		require.NotContains(t, out, "received PUBACK", r.name)
		if r.want != "" {
			require.Contains(t, out, r.want, r.name)
		}
	}

	// A publish into L2's tree is refused and L2 never sees it.
	_, out := m.pub(append(m.args("mqttv5", "L1", l1.CertFile, l1.KeyFile), "-q", "1", "-t", "lockers/L2/rpc/req", "-m", "forged")...)
	require.Contains(t, out, "RC:135", "PUBACK 0x87 not authorized")
	_, _ = m.pub(append(m.args("mqttv5", "L1", l1.CertFile, l1.KeyFile), "-q", "0", "-t", "lockers/L2/desired", "-m", "forged")...)

	// What the hub sends L2 does arrive, so the subscriber works; it exits after
	// its first message (-C 1), which must be the hub's, not the forged ones
	// published before it.
	require.NoError(t, h.App.Broker.Send("L2", protocol.KindDesired, []byte(`{"version":1,"config":{}}`)))
	waited := make(chan error, 1)
	go func() { waited <- sub.Wait() }()
	select {
	case err := <-waited:
		require.NoError(t, err, subOut.String())
	case <-time.After(5 * time.Second):
		t.Fatalf("mosquitto_sub received nothing: %s", subOut.String())
	}
	require.Equal(t, `lockers/L2/desired {"version":1,"config":{}}`, strings.TrimSpace(subOut.String()),
		"L2 must never see another locker's publish")
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func writeCertFiles(t *testing.T, dir, id string, c tlsCert) {
	t.Helper()
	certPEM, keyPEM := encodePEM(t, c)
	require.NoError(t, os.WriteFile(filepath.Join(dir, id+".crt"), certPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, id+".key"), keyPEM, 0o600))
}
