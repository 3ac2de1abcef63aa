//go:build faults

package app_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestTelemetrySurvivesPostgreSQLStop stops the machine's PostgreSQL server
// for 60 s (issue 5's outage) while lockers publish telemetry, then starts it
// again: the same checks as TestTelemetrySurvivesDatabaseOutage. It stops
// the server every test shares, so it runs only in `make test-faults`
// (serially).
func TestTelemetrySurvivesPostgreSQLStop(t *testing.T) {
	versions, _ := filepath.Glob("/etc/postgresql/*")
	if len(versions) != 1 {
		t.Skipf("want one PostgreSQL cluster in /etc/postgresql, found %v", versions)
	}
	version := filepath.Base(versions[0])
	ctl := func(args ...string) func() {
		return func() {
			out, err := exec.Command("pg_ctlcluster", append([]string{"--skip-systemctl-redirect", version, "main"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("pg_ctlcluster %v: %v: %s", args, err, strings.TrimSpace(string(out)))
			}
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("stopping PostgreSQL needs root here")
	}
	h := hubtest.Start(t)
	t.Cleanup(func() { _ = exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start").Run() })
	runOutage(t, h, 60*time.Second, ctl("stop", "-m", "fast"), ctl("start"))
}
