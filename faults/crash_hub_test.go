//go:build faults

// Package faults holds the fault suite of issue 11 (make test-faults): a
// real hub process killed with SIGKILL and PostgreSQL stopped under load
// (crash_*.go), network cuts, reconnect storms and a full disk
// (netfaults_*.go). Every test here runs serially (-p 1) and only on
// loopback.
package faults

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

// crashHub is bin/hub run as a process of its own, on fixed loopback ports
// (so that lockers find it again after a restart), with its own data
// directory and a fresh database.
type crashHub struct {
	t       *testing.T
	bin     string
	args    []string
	DataDir string
	DBURL   string
	HTTPURL string // http://127.0.0.1:port
	MQTT    string // 127.0.0.1:port
	Device  string // https://127.0.0.1:port
	Token   string
	Admin   *apiclient.Client
	logPath string

	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

// crashBuildHub builds cmd/hub into a temporary directory once per test
// binary run (the build cache makes it quick after `make build`), so that
// the process under test is always the code under test.
func crashBuildHub(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hub")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/hub")
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/hub: %v\n%s", err, b)
	}
	return out
}

// crashFreePorts returns n TCP ports free on 127.0.0.1 right now.
func crashFreePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// crashStartHub creates a database, starts the hub on it and waits until it
// is ready. extra are more hub flags.
func crashStartHub(t *testing.T, extra ...string) *crashHub {
	t.Helper()
	h := &crashHub{t: t, bin: crashBuildHub(t), DataDir: t.TempDir()}
	h.DBURL = pgtest.NewDB(t, app.Migrations()...)
	p := crashFreePorts(t, 4)
	h.HTTPURL = fmt.Sprintf("http://127.0.0.1:%d", p[0])
	h.MQTT = fmt.Sprintf("127.0.0.1:%d", p[1])
	h.Device = fmt.Sprintf("https://127.0.0.1:%d", p[2])
	h.logPath = filepath.Join(h.DataDir, "hub.log")
	h.args = append([]string{
		"--data-dir", h.DataDir, "--database-url", h.DBURL,
		"--http-addr", strings.TrimPrefix(h.HTTPURL, "http://"), "--mqtt-addr", h.MQTT,
		"--device-addr", strings.TrimPrefix(h.Device, "https://"),
		"--video-udp-addr", fmt.Sprintf("127.0.0.1:%d", p[3]),
		"--hostnames", "127.0.0.1,localhost", "--ota-url", h.Device,
	}, extra...)
	t.Cleanup(func() {
		h.Kill()
		if t.Failed() {
			// Kept: the data directory goes with the test.
			keep := filepath.Join(os.TempDir(), "lockerhub-"+t.Name()+".log")
			if b, err := os.ReadFile(h.logPath); err == nil && os.WriteFile(keep, b, 0o644) == nil {
				t.Logf("hub log: %s; its last lines:\n%s", keep, crashTail(h.logPath, 15))
			}
		}
	})
	h.Start()
	_, tok, err := apiclient.ReadLocal(h.DataDir)
	require.NoError(t, err)
	h.Token = tok
	h.Admin = apiclient.New(h.HTTPURL, tok)
	return h
}

// Start starts the hub process (again) and returns once /readyz answers 200.
func (h *crashHub) Start() time.Duration {
	h.t.Helper()
	logf, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(h.t, err)
	h.runs++
	fmt.Fprintf(logf, "===== start %d at %s\n", h.runs, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(h.bin, h.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	start := time.Now()
	require.NoError(h.t, cmd.Start())
	h.cmd, h.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(h.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-h.done:
			h.t.Fatalf("the hub exited while starting:\n%s", crashTail(h.logPath, 40))
		default:
		}
		if crashStatus(h.HTTPURL+"/readyz") == http.StatusOK {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the hub was not ready within 60 s:\n%s", crashTail(h.logPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (h *crashHub) Kill() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	select {
	case <-h.done:
		return
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// Metric sums the samples of one metric in the hub's /metrics whose labels
// contain every given `name="value"` pair; -1 when the hub does not answer.
func (h *crashHub) Metric(name string, labels ...string) float64 {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(h.HTTPURL + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
line:
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != ' ' && l[len(name)] != '{') {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(l, labels[i]+`="`+labels[i+1]+`"`) {
				continue line
			}
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// RSS is the hub process's resident memory in MiB (0 when not running).
func (h *crashHub) RSS() float64 {
	if h.cmd == nil || h.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func crashStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func crashTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// crashEventually polls cond every 100 ms until it holds or within passes.
func crashEventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// crashCtx is a context for one API call.
func crashCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
