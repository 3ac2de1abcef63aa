package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
)

func TestHubctlAudit(t *testing.T) {
	h := hubtest.Start(t)
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "")
	}
	ctx := context.Background()
	_, err := h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "HA-1", Cells: 2, Address: "Old Road 1"})
	require.NoError(t, err)
	_, err = h.Admin.UpdateLocker(ctx, "HA-1", map[string]any{"address": "New Road 2"})
	require.NoError(t, err)

	hubctl := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--server", h.HTTPURL, "--token", h.AdminToken}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := hubctl("audit", "--object", "locker:HA-1")
	require.Equal(t, exitOK, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	require.Regexp(t, `^TIME\s+ACTOR\s+FROM\s+ACTION\s+OBJECT\s+CHANGE`, lines[0])
	require.Contains(t, lines[1], "token:admin")
	require.Contains(t, lines[1], "127.0.0.1")
	require.Contains(t, lines[1], "update")
	require.Contains(t, lines[1], "locker:HA-1")
	require.Contains(t, lines[1], `address: "Old Road 1" → "New Road 2"`)
	require.Contains(t, lines[2], "create")

	code, out, errOut = hubctl("audit", "--actor", "admin", "--action", "update", "--json")
	require.Equal(t, exitOK, code, errOut)
	var p apiclient.AuditPage
	require.NoError(t, json.Unmarshal([]byte(out), &p))
	require.Len(t, p.Records, 1)
	require.Equal(t, "HA-1", p.Records[0].ObjectID)

	code, _, errOut = hubctl("audit", "--since", "2026-13-01")
	require.Equal(t, exitUsage, code, errOut)
	code, _, errOut = hubctl("audit", "--since", "1h", "--actor", "nobody")
	require.Equal(t, exitOK, code)
	require.Contains(t, errOut, "No audit records match")
}

func TestParseSinceAndChangeSummary(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{"24h": now.Add(-24 * time.Hour), "7d": now.Add(-7 * 24 * time.Hour),
		"90m": now.Add(-90 * time.Minute), "2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)} {
		got, err := parseSince(in, now)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), in)
	}
	for _, bad := range []string{"yesterday", "-1h", "d"} {
		_, err := parseSince(bad, now)
		require.Error(t, err, bad)
	}
	require.Equal(t, `address: "a" → "b"; enabled: true → false`,
		changeSummary(json.RawMessage(`{"address":"a","enabled":true,"updated_at":"x"}`), json.RawMessage(`{"address":"b","enabled":false,"updated_at":"y"}`)))
	require.Equal(t, "deleted", changeSummary(json.RawMessage(`{"id":"L1"}`), json.RawMessage(`null`)))
	require.Equal(t, `id="L1"`, changeSummary(nil, json.RawMessage(`{"id":"L1"}`)))
	require.Equal(t, "", changeSummary(nil, nil))
}
