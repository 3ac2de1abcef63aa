package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestHubctlAlarms: list the open alarms, acknowledge one with a note,
// silence by matchers and end the silence; bad matchers are usage errors.
func TestHubctlAlarms(t *testing.T) {
	h := hubtest.Start(t)
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "")
	}
	h.AddLocker("HA-1")
	// A tamper event as the ingest stores it: the alarms' trigger takes it.
	_, err := h.App.Pool.Exec(context.Background(), `INSERT INTO fleet_events (locker_id, event_id, boot, seq, ts, type, received_at) VALUES ('HA-1', 'e-1', 1, 1, now(), 'tamper', now())`)
	require.NoError(t, err)
	hubctl := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--server", h.HTTPURL, "--token", h.AdminToken}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	var out, errOut string
	var code int
	hubtest.Eventually(t, 10*time.Second, "the alarm listed", func() bool {
		code, out, errOut = hubctl("alarm", "list")
		return code == 0 && strings.Contains(out, "tamper")
	})
	require.Contains(t, out, "SEVERITY")
	require.Contains(t, out, "critical")
	require.Contains(t, out, "HA-1")
	id := strings.Fields(strings.Split(out, "\n")[1])[0]

	code, out, errOut = hubctl("alarm", "ack", id, "--note", "on my way")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "acknowledged")
	code, out, _ = hubctl("alarm", "list", "--state", "acknowledged")
	require.Equal(t, 0, code)
	require.Contains(t, out, "by admin")
	code, _, errOut = hubctl("alarm", "ack", id)
	require.Equal(t, 1, code, "acknowledged twice")
	require.Contains(t, errOut, "conflict")

	code, out, errOut = hubctl("alarm", "silence", "locker=HA-1", "kind=~door_.*|tamper", "--for", "2h", "--comment", "on site")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Silence ")
	sid := strings.Fields(out)[1]
	code, out, errOut = hubctl("alarm", "silences")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "kind=~door_.*|tamper")
	require.Contains(t, out, "on site")
	code, out, errOut = hubctl("alarm", "unsilence", sid)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "ended")

	code, _, errOut = hubctl("alarm", "silence", "lockerHA-1")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "NAME=VALUE")
	code, _, errOut = hubctl("alarm", "silence", "colour=red")
	require.Equal(t, 1, code, "refused by the hub")
	require.Contains(t, errOut, "matcher name")
	code, _, _ = hubctl("alarm", "ack", "x")
	require.Equal(t, 2, code)
}
