package dashboards_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
)

const rulesFile = "prometheus/lockerhub-rules.yml"

// tool finds Debian's prometheus package's binaries, or skips the test
// (fails it under CI=true: make test installs the package).
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := name + " is missing: install Debian's prometheus package (scripts/ensure-tools.sh prometheus)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestRulesCheckAndUnitTests: promtool accepts the rules and the sample
// configuration, and every alerting rule has a unit test that passes
// (prometheus/lockerhub-rules.test.yml).
func TestRulesCheckAndUnitTests(t *testing.T) {
	promtool := tool(t, "promtool")
	out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(promtool, "test", "rules", "prometheus/lockerhub-rules.test.yml").CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(promtool, "check", "config", "prometheus/prometheus.yml").CombinedOutput()
	require.NoError(t, err, "the sample configuration: %s", out)

	tests, err := os.ReadFile("prometheus/lockerhub-rules.test.yml")
	require.NoError(t, err)
	for _, r := range loadRules(t) {
		if r.Alert != "" {
			require.Contains(t, string(tests), "alertname: "+r.Alert, "alert %s has no unit test", r.Alert)
		}
	}
}

type rule struct {
	Record, Alert, Expr string
	Annotations         map[string]string
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var f struct {
		Groups []struct{ Rules []rule }
	}
	require.NoError(t, yaml.Unmarshal(data, &f))
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	require.NotEmpty(t, out)
	return out
}

// TestEveryPanelQueryAnswers starts Debian's Prometheus scraping a real hub
// with simulated lockers sending telemetry, and asks it every expression of
// every dashboard panel and rule: each must be valid PromQL, and each core
// panel must return data. Each alert names a runbook that exists in
// docs/operations.md.
func TestEveryPanelQueryAnswers(t *testing.T) {
	prom := tool(t, "prometheus")
	h := hubtest.Start(t)
	startLockers(t, h, 20)
	// Requests of the API for its panels: one answered, one refused.
	for _, token := range []string{h.AdminToken, "wrong"} {
		req, err := http.NewRequest("GET", h.HTTPURL+"/api/v1/lockers", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}

	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	require.NoError(t, err)
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: lockerhub
    static_configs: [{targets: [%q]}]
`, rules, strings.TrimPrefix(h.HTTPURL, "http://"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644))
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})

	base := "http://" + addr
	query := func(expr string) (status, errMsg string, n int) {
		resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
		if err != nil {
			return "", err.Error(), 0
		}
		defer resp.Body.Close()
		var r struct {
			Status, Error string
			Data          struct {
				ResultType string          `json:"resultType"`
				Result     json.RawMessage `json:"result"`
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return "", err.Error(), 0
		}
		var list []json.RawMessage
		if r.Data.ResultType == "vector" || r.Data.ResultType == "matrix" {
			_ = json.Unmarshal(r.Data.Result, &list)
			n = len(list)
		} else if r.Status == "success" {
			n = 1 // a scalar or string
		}
		return r.Status, r.Error, n
	}
	// Enough scrapes for a rate over the window the panels get.
	hubtest.Eventually(t, 60*time.Second, "Prometheus has scraped the hub for a while", func() bool {
		_, _, n := query(`count_over_time(up{job="lockerhub"}[20s]) >= 10`)
		return n == 1
	})

	withWindow := func(expr string) string { return strings.ReplaceAll(expr, "$__rate_interval", "15s") }
	for _, d := range dashboards {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				status, msg, n := query(withWindow(tg.Expr))
				require.Equal(t, "success", status, "%s / %s: %s\n%s", d.Title, p.Title, msg, tg.Expr)
				if p.Core {
					require.Positive(t, n, "%s / %s returns no data:\n%s", d.Title, p.Title, tg.Expr)
				}
			}
		}
	}

	ops, err := os.ReadFile("../docs/operations.md")
	require.NoError(t, err)
	for _, r := range loadRules(t) {
		status, msg, _ := query(r.Expr)
		require.Equal(t, "success", status, "rule %s%s: %s", r.Record, r.Alert, msg)
		if r.Alert != "" {
			anchor := strings.TrimPrefix(r.Annotations["runbook_url"], "docs/operations.md#")
			require.True(t, strings.Contains(strings.ToLower(string(ops)), "\n### "+anchor+"\n"), "alert %s: no runbook section %q in docs/operations.md", r.Alert, "### "+r.Alert)
		}
	}
	// The recording rules the alerts use work on real data.
	hubtest.Eventually(t, 60*time.Second, "the fleet offline ratio recorded", func() bool {
		_, _, n := query(`lockerhub:fleet_offline:ratio`)
		return n == 1
	})
}

func startLockers(t *testing.T, h *hubtest.Hub, n int) {
	t.Helper()
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix, cfg.Ramp = n, 10, "PROM-", 0
	cfg.Telemetry = time.Second
	s, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, s.Start(ctx))
	t.Cleanup(func() { cancel(); s.Stop() })
	hubtest.Eventually(t, 30*time.Second, "lockers connected", func() bool { return h.App.Broker.Connected() == n })
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
