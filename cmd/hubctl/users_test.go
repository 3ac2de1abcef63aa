package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
)

// TestHubctlUsersAndClients: user add/list/disable/set/password and client
// add/list/revoke against a real hub, tables and --json.
func TestHubctlUsersAndClients(t *testing.T) {
	h := hubtest.Start(t)
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "")
	}
	hubctl := func(stdin string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		c := newCLI(strings.NewReader(stdin), &stdout, &stderr)
		code := c.run(context.Background(), append([]string{"--server", h.HTTPURL, "--token", h.AdminToken}, args...))
		return code, stdout.String(), stderr.String()
	}
	ok := func(stdin string, args ...string) string {
		t.Helper()
		code, out, errOut := hubctl(stdin, args...)
		require.Equal(t, exitOK, code, "hubctl %q: %s", args, errOut)
		return out
	}

	// A password from stdin: not printed, and it logs in.
	out := ok("a long enough password\n", "user", "add", "kurt", "--role", "courier", "--carrier", "dhl", "--password-stdin")
	require.Equal(t, "User kurt added (courier, lockers of dhl).\n", out)
	h.Login("kurt", "a long enough password")

	// No password and no terminal: the hub makes one up, printed once.
	out = ok("", "user", "add", "vera", "--role", "viewer")
	require.Contains(t, out, "User vera added (viewer, whole fleet).\nPassword: ")
	pw := strings.Fields(strings.SplitN(out, "Password: ", 2)[1])[0]
	s := h.Login("vera", pw)

	code, _, errOut := hubctl("", "user", "add", "kim", "--role", "courier")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "a courier needs a carrier")
	code, _, errOut = hubctl("", "user", "add", "kim")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "--role is required")

	out = ok("", "user", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^USER\s+ROLE\s+CARRIER\s+CREATED\s+DISABLED$`, lines[0])
	require.Regexp(t, `^kurt\s+courier\s+dhl\s+\d{4}-`, lines[2])
	require.Regexp(t, `^vera\s+viewer\s+-\s+.*\s-$`, lines[3])

	out = ok("", "user", "list", "--json")
	var us struct{ Users []apiclient.User }
	require.NoError(t, json.Unmarshal([]byte(out), &us))
	require.Len(t, us.Users, 3)

	out = ok("", "user", "set", "vera", "--role", "technician")
	require.Equal(t, "User vera: technician, whole fleet.\n", out)

	out = ok("", "user", "disable", "vera")
	require.Equal(t, "User vera is disabled; its sessions have ended.\n", out)
	resp, err := s.Client.Get(h.HTTPURL + "/api/v1/lockers")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode, "the session ended at once")
	require.Regexp(t, `vera\s+technician\s+-\s+\S+ \S+ \S+\s+\d{4}-`, ok("", "user", "list"))
	ok("", "user", "enable", "vera")
	out = ok("", "user", "password", "vera")
	require.Contains(t, out, "Password: ")

	// API clients: the token is printed once and works.
	out = ok("", "client", "add", "shop", "--carrier", "dhl", "--scope", "lockers:read,parcels:write")
	require.Contains(t, out, "API client shop added for the lockers of dhl (lockers:read, parcels:write).\nToken: lhc_")
	tok := strings.Fields(strings.SplitN(out, "Token: ", 2)[1])[0]
	_, err = apiclient.New(h.HTTPURL, tok).Lockers(context.Background())
	require.NoError(t, err)
	code, _, errOut = hubctl("", "client", "add", "shop2", "--carrier", "dhl")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "--scope is required")

	out = ok("", "client", "list")
	require.Regexp(t, `(?m)^CLIENT\s+CARRIER\s+SCOPES\s+CREATED\s+LAST USED\s+REVOKED\s+RESERVATION\n shop\s+dhl\s+lockers:read,parcels:write\s.*default$`, "\n"+strings.Replace(out, "\n", "\n ", 1))
	require.NotContains(t, out, tok)

	// Settings, the delivery log and a replay.
	out = ok("", "client", "set", "shop", "--reservation-hours", "24")
	require.Equal(t, "API client shop: reservations expire after 24h.\n", out)
	require.Regexp(t, `(?m)^shop\s.*\s24h$`, ok("", "client", "list"))
	code, _, errOut = hubctl("", "client", "set", "shop", "--reservation-hours", "9999")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "reservation_hours")
	code, _, errOut = hubctl("", "client", "set", "shop")
	require.Equal(t, exitUsage, code)
	out = ok("", "client", "add", "shop3", "--carrier", "dhl", "--scope", "parcels:read", "--reservation-hours", "6")
	require.Contains(t, out, "API client shop3 added")
	require.Regexp(t, `(?m)^shop3\s.*\s6h$`, ok("", "client", "list"))
	cs, err := h.Admin.APIClients(context.Background())
	require.NoError(t, err)
	var shopID int64
	for _, c := range cs {
		if c.Name == "shop" {
			shopID = c.ID
		}
	}
	_, err = h.App.Pool.Exec(context.Background(), `INSERT INTO outbox_messages (id, channel, client_id, template, state, attempts, last_error)
		VALUES ('p-x:reserved', 'webhook', $1, 'parcel.reserved', 'failed', 3, 'refused: HTTP 410: gone')`, shopID)
	require.NoError(t, err)
	_, err = h.App.Pool.Exec(context.Background(), `INSERT INTO outbox_attempts (message_id, attempt, at, duration_ms, http_status, error, outcome)
		VALUES ('p-x:reserved', 3, now(), 41, 410, 'HTTP 410: gone', 'failed')`)
	require.NoError(t, err)
	out = ok("", "client", "deliveries", "shop", "--state", "failed")
	require.Regexp(t, `(?m)^DELIVERY\s+EVENT\s+STATE\s+CREATED\s+ATTEMPT\s+AT\s+RESULT\s+MS\s+NEXT\np-x:reserved\s+parcel.reserved\s+failed\s.*\n\s+3\s+\d{4}-.*failed 410\s+41\s+-$`, out)
	require.Empty(t, strings.TrimSpace(strings.SplitN(ok("", "client", "deliveries", "shop", "--state", "sent"), "\n", 2)[1]))
	out = ok("", "client", "replay", "shop", "p-x:reserved")
	require.Equal(t, "Webhook p-x:reserved (parcel.reserved) queued again for shop (replay 1, same id).\n", out)
	code, _, errOut = hubctl("", "client", "replay", "shop", "nope")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "not_found")
	out = ok("", "client", "revoke", "shop")
	require.Equal(t, "API client shop revoked; its token is refused from now on.\n", out)
	_, err = apiclient.New(h.HTTPURL, tok).Lockers(context.Background())
	require.True(t, apiclient.IsCode(err, "unauthenticated"), "%v", err)
}
