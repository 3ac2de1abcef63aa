package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
)

// TestHubctlTokens: admin tokens are made, listed (never shown again) and
// revoked with hubctl; a revoked token is refused at once, the data dir's
// admin.token too, and the hub's next start makes a new one.
func TestHubctlTokens(t *testing.T) {
	h := hubtest.Start(t)
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "")
	}
	hubctl := func(token string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		c := newCLI(strings.NewReader(""), &stdout, &stderr)
		code := c.run(context.Background(), append([]string{"--server", h.HTTPURL, "--token", token}, args...))
		return code, stdout.String(), stderr.String()
	}
	ok := func(token string, args ...string) string {
		t.Helper()
		code, out, errOut := hubctl(token, args...)
		require.Equal(t, exitOK, code, "hubctl %q: %s", args, errOut)
		return out
	}
	refused := func(token string) {
		t.Helper()
		_, err := apiclient.New(h.HTTPURL, token).Lockers(context.Background())
		require.True(t, apiclient.IsCode(err, "unauthenticated"), "%v", err)
	}

	out := ok(h.AdminToken, "token", "add", "deploy-bot")
	require.Regexp(t, `^Admin token \d+ \(deploy-bot\) made.\nToken: lh_`, out)
	bot := strings.Fields(strings.SplitN(out, "Token: ", 2)[1])[0]
	_, err := apiclient.New(h.HTTPURL, bot).Lockers(context.Background())
	require.NoError(t, err, "the new token works")

	out = ok(h.AdminToken, "token", "list")
	require.Regexp(t, `(?m)^ID\s+NAME\s+ROLE\s+CREATED\s+REVOKED$`, out)
	require.Regexp(t, `(?m)^\d+\s+admin\s+admin\s+\d{4}-\S+ \S+ \S+\s+-$`, out)
	require.Regexp(t, `(?m)^\d+\s+deploy-bot\s+admin\s`, out)
	require.NotContains(t, out, bot)
	require.NotContains(t, out, h.AdminToken)

	var list struct{ Tokens []apiclient.Token }
	require.NoError(t, json.Unmarshal([]byte(ok(h.AdminToken, "token", "list", "--json")), &list))
	ids := map[string]int64{}
	for _, tk := range list.Tokens {
		ids[tk.Name] = tk.ID
		require.Empty(t, tk.Token, "a listed token never carries the token")
	}
	require.Contains(t, ids, "admin")
	require.Contains(t, ids, "deploy-bot")

	// Revoke the bot's token with the admin token: refused from now on.
	out = ok(h.AdminToken, "token", "revoke", strconv.FormatInt(ids["deploy-bot"], 10))
	require.Equal(t, "Token "+strconv.FormatInt(ids["deploy-bot"], 10)+" (deploy-bot) revoked; it is refused from now on.\n", out)
	refused(bot)
	ok(h.AdminToken, "token", "revoke", strconv.FormatInt(ids["deploy-bot"], 10)) // again: nothing changes

	code, _, errOut := hubctl(h.AdminToken, "token", "revoke", "nine")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "ID is a number")
	code, _, errOut = hubctl(h.AdminToken, "token", "revoke", "999999")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "not_found")

	// The data dir's admin.token, revoked with another admin token: refused
	// at once; the next start makes and prints a new one.
	out = ok(h.AdminToken, "token", "add", "spare")
	spare := strings.Fields(strings.SplitN(out, "Token: ", 2)[1])[0]
	old := h.AdminToken
	ok(spare, "token", "revoke", strconv.FormatInt(ids["admin"], 10))
	refused(old)
	h.Restart()
	require.NotEqual(t, old, h.AdminToken, "a new admin.token after the restart")
	_, err = h.Admin.Lockers(context.Background())
	require.NoError(t, err)
	refused(old)

	// Only admins: a technician's token may not list or make tokens.
	tech, err := h.App.Access.CreateToken(context.Background(), "tech", "technician")
	require.NoError(t, err)
	code, _, errOut = hubctl(tech, "token", "list")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "forbidden")
}
