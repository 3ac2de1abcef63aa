package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestHubProcessStartsAndStopsOnSIGTERM runs the real binary as an operator
// would: environment configuration, first start, readiness, SIGTERM.
func TestHubProcessStartsAndStopsOnSIGTERM(t *testing.T) {
	url := pgtest.NewDB(t, app.Migrations()...)
	bin := filepath.Join(t.TempDir(), "hub")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	dataDir := filepath.Join(t.TempDir(), "var")
	httpAddr := freeAddr(t)
	cmd := exec.Command(bin, "--log-format", "json")
	cmd.Env = append(os.Environ(),
		"HUB_DATA_DIR="+dataDir, "HUB_DATABASE_URL="+url, "HUB_HTTP_ADDR="+httpAddr,
		"HUB_MQTT_ADDR="+freeAddr(t), "HUB_DEVICE_ADDR="+freeAddr(t), "HUB_VIDEO_UDP_ADDR=127.0.0.1:0")
	var stdout, stderr syncBuf
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "hub not ready: %s", stderr.String())
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	require.NoError(t, err)
	require.Contains(t, stdout.String(), strings.TrimSpace(string(tok)), "the admin credential is printed on first start")
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		require.True(t, json.Valid([]byte(line)), "--log-format json: %q", line)
	}

	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "exit status after SIGTERM: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("hub did not stop within 10 s of SIGTERM: %s", stderr.String())
	}
	require.Less(t, time.Since(start), 10*time.Second)
	require.Contains(t, stderr.String(), "shutting down")
}

func TestBadFlagsExitWithUsage(t *testing.T) {
	require.Equal(t, 2, run([]string{"--log-format", "xml"}))
	require.Equal(t, 2, run([]string{"--no-such-flag"}))
	// A refused setting exits before the start: were it taken, the start
	// would fail on the database nobody listens for (exit 1), not hang.
	require.Equal(t, 2, run([]string{"--mqtt-accept-rate", "0", "--data-dir", t.TempDir(),
		"--database-url", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"}))
}
