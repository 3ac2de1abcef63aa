//go:build faults

package faults

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The crash tests: a fleet under full load (telemetry, commands, alarms and
// an OTA rollout, crash_load_test.go) against a hub process, and one fault
// each. docs/reliability.md has the figures.

// TestCrashHubKill9Fault kills the hub with SIGKILL under load and starts
// it again on the same data directory and database.
func TestCrashHubKill9Fault(t *testing.T) {
	n := crashLockers(t, 2000)
	s := crashStart(t, n, crashTelemetry(n))
	s.startLoad(crashRolloutSize(n))
	s.waitBusy()

	rss := s.hub.RSS()
	s.faultAt = time.Now()
	s.hub.Kill()
	t.Logf("kill -9 at %s: hub RSS was %.0f MiB", s.faultAt.UTC().Format(time.TimeOnly), rss)
	time.Sleep(2 * time.Second) // the lockers notice and back off
	restart := time.Now()
	ready := s.hub.Start()
	s.faultEnd = time.Now()
	p99, all := s.waitReconnected(restart, 2*time.Minute+time.Duration(n)*12*time.Millisecond)
	t.Logf("restart: ready (/readyz) %s after the start; lockers 99%% back %s, all %s after the start; hub RSS %.0f MiB",
		ready.Round(10*time.Millisecond), p99.Round(100*time.Millisecond), all.Round(100*time.Millisecond), s.hub.RSS())
	s.finish(20 * time.Second)
}

// TestCrashPostgreSQLRestartFault restarts PostgreSQL (stop -m fast, start)
// under load.
func TestCrashPostgreSQLRestartFault(t *testing.T) {
	pgctl, pgStart := crashPostgreSQL(t)
	n := crashLockers(t, 2000)
	s := crashStart(t, n, crashTelemetry(n))
	t.Cleanup(pgStart) // before the database is dropped
	s.startLoad(crashRolloutSize(n))
	s.waitBusy()

	s.faultAt = time.Now()
	pgctl("stop", "-m", "fast")
	pgctl("start")
	back := crashEventually(t, time.Minute, "/readyz ready again", func() bool { return crashStatus(s.hub.HTTPURL+"/readyz") == http.StatusOK })
	s.faultEnd = time.Now()
	t.Logf("PostgreSQL restarted in %s; the hub ready %s later; %d of %d lockers connected",
		s.faultEnd.Sub(s.faultAt).Round(10*time.Millisecond)-back.Round(10*time.Millisecond), back.Round(10*time.Millisecond), s.sim.Stats().Connected.Load(), n)
	s.waitReconnected(s.faultEnd, time.Minute)
	s.finish(20 * time.Second)
}

// TestCrashPostgreSQLOutageFault stops PostgreSQL for 60 s under load.
func TestCrashPostgreSQLOutageFault(t *testing.T) {
	pgctl, pgStart := crashPostgreSQL(t)
	n := crashLockers(t, 2000)
	s := crashStart(t, n, crashTelemetry(n))
	t.Cleanup(pgStart) // before the database is dropped
	s.startLoad(crashRolloutSize(n))
	s.waitBusy()

	s.faultAt = time.Now()
	pgctl("stop", "-m", "fast")
	crashEventually(t, 15*time.Second, "/readyz not ready", func() bool { return crashStatus(s.hub.HTTPURL+"/readyz") == http.StatusServiceUnavailable })
	minConnected := int64(n)
	for time.Since(s.faultAt) < 60*time.Second {
		minConnected = min(minConnected, s.sim.Stats().Connected.Load())
		time.Sleep(250 * time.Millisecond)
	}
	pgctl("start")
	back := crashEventually(t, time.Minute, "/readyz ready again", func() bool { return crashStatus(s.hub.HTTPURL+"/readyz") == http.StatusOK })
	s.faultEnd = time.Now()
	t.Logf("PostgreSQL away 60 s: at least %d of %d lockers stayed connected throughout; the hub ready %s after PostgreSQL started",
		minConnected, n, back.Round(10*time.Millisecond))
	p99, all := s.waitReconnected(s.faultEnd, 2*time.Minute)
	t.Logf("lockers 99%% connected %s, all %s after the hub was ready", p99.Round(100*time.Millisecond), all.Round(100*time.Millisecond))
	s.finish(20 * time.Second)
}

// crashTelemetry is the sample interval: about 500 samples/s over the
// fleet, at most one per second per locker.
func crashTelemetry(n int) time.Duration {
	return max(time.Second, time.Duration(n)*time.Second/500)
}

// crashRolloutSize is how many lockers the rollout updates.
func crashRolloutSize(n int) int { return min(max(n/10, 20), 500) }

// crashPostgreSQL returns a pg_ctlcluster runner for the machine's one
// cluster and a start that is also registered with t.Cleanup: PostgreSQL is
// started again when the test ends, whatever happens. It skips the test unless run as root with one cluster.
func crashPostgreSQL(t *testing.T) (ctl func(args ...string), start func()) {
	versions, _ := filepath.Glob("/etc/postgresql/*")
	if len(versions) != 1 {
		t.Skipf("want one PostgreSQL cluster in /etc/postgresql, found %v", versions)
	}
	if os.Geteuid() != 0 {
		t.Skip("stopping PostgreSQL needs root here")
	}
	version := filepath.Base(versions[0])
	start = func() {
		// Starting a running cluster fails harmlessly ("already running").
		_ = exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start").Run()
	}
	t.Cleanup(start)
	ctl = func(args ...string) {
		out, err := exec.Command("pg_ctlcluster", append([]string{"--skip-systemctl-redirect", version, "main"}, args...)...).CombinedOutput()
		require.NoError(t, err, "pg_ctlcluster %v: %s", args, strings.TrimSpace(string(out)))
	}
	return ctl, start
}
