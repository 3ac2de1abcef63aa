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

// TestHubctlCarriers: carrier add/assign/quota/show/list/unassign/rm
// against a real hub, with the refusals a user would hit.
func TestHubctlCarriers(t *testing.T) {
	h := hubtest.Start(t)
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "")
	}
	h.AddLocker("HC-1") // 10 M cells, segment "test"
	hubctl := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		c := newCLI(strings.NewReader(""), &stdout, &stderr)
		code := c.run(context.Background(), append([]string{"--server", h.HTTPURL, "--token", h.AdminToken}, args...))
		return code, stdout.String(), stderr.String()
	}
	ok := func(args ...string) string {
		t.Helper()
		code, out, errOut := hubctl(args...)
		require.Equal(t, exitOK, code, "hubctl %q: %s", args, errOut)
		return out
	}

	require.Equal(t, "Carrier dhl (DHL Paket) added.\n", ok("carrier", "add", "dhl", "--name", "DHL Paket", "--contact", "ops@dhl.example"))
	ok("carrier", "add", "ups")
	out := ok("carrier", "assign", "ups", "--locker", "HC-1")
	require.Contains(t, out, "lockers   HC-1\n")
	out = ok("carrier", "assign", "dhl", "--segment", "test")
	require.Contains(t, out, "segments  test\n")
	out = ok("carrier", "quota", "dhl", "HC-1", "m=6,L=0")
	require.Contains(t, out, "quotas    HC-1: M=6, L=0\n")
	code, _, errOut := hubctl("carrier", "quota", "ups", "HC-1", "M=5")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "at most 4 left for ups")
	code, _, errOut = hubctl("carrier", "quota", "ups", "HC-1", "M")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, `"M" is not SIZE=N`)
	code, _, errOut = hubctl("carrier", "assign", "ups")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "give --locker L or --segment S")

	require.Regexp(t, `(?m)^Carriers\s+ups\nUsed by\s+dhl, ups$`, ok("locker", "show", "HC-1"), "dhl by its segment and quota")
	out = ok("carrier", "show", "dhl")
	require.Equal(t, "Carrier dhl (DHL Paket)\n  contact   ops@dhl.example\n  lockers   none\n  segments  test\n  quotas    HC-1: M=6, L=0\n", out)
	out = ok("carrier", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	require.Regexp(t, `^CARRIER\s+NAME\s+LOCKERS\s+SEGMENTS\s+S\s+M\s+L\s+XL$`, lines[0])
	require.Regexp(t, `^dhl\s+DHL Paket\s+1\s+test\s+0\s+0/6\s+0/0\s+0$`, lines[1])
	require.Regexp(t, `^ups\s+ups\s+1\s+-\s+0\s+0\s+0\s+0$`, lines[2])
	var raw struct{ Carriers []apiclient.CarrierUse }
	require.NoError(t, json.Unmarshal([]byte(ok("carrier", "list", "--json")), &raw))
	require.Len(t, raw.Carriers, 2)

	code, _, errOut = hubctl("carrier", "rm", "ups")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "in_use")
	ok("carrier", "unassign", "ups", "--locker", "HC-1")
	require.Equal(t, "Carrier ups removed.\n", ok("carrier", "rm", "ups"))
	out = ok("carrier", "quota", "dhl", "HC-1", "--clear")
	require.Contains(t, out, "quotas    none\n")
	l, err := h.Admin.Locker(context.Background(), "HC-1")
	require.NoError(t, err)
	require.Equal(t, []string{"dhl"}, l.CarrierAccess, "dhl by its segment")
}
