package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestHubctlTemplates: list the events, save an override from a file,
// show which template a carrier and language get, preview (an unknown
// field is refused with its code), reset.
func TestHubctlTemplates(t *testing.T) {
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
	code, out, errOut := hubctl("", "template", "list")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "parcel_ready")
	require.Contains(t, out, "return_accepted")
	require.Contains(t, out, "No overrides")

	dir := t.TempDir()
	file := filepath.Join(dir, "ready.de.txt")
	require.NoError(t, os.WriteFile(file, []byte("Subject: Paket {{.parcel}} ist da\nAbholcode {{.code}} bis {{.deadline}}\n"), 0o644))
	code, out, errOut = hubctl("", "template", "set", "parcel_ready", "email", file, "--language", "de")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Saved parcel_ready/email")

	code, out, errOut = hubctl("", "template", "show", "parcel_ready", "email", "--carrier", "dhl", "--language", "de-CH")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "from language")
	require.Contains(t, out, "Subject: Paket {{.parcel}} ist da\nAbholcode {{.code}}")
	code, out, _ = hubctl("", "template", "show", "parcel_ready", "email", "--language", "fr")
	require.Equal(t, 0, code)
	require.Contains(t, out, "from built-in")

	code, out, errOut = hubctl("Code {{.code}} at {{.address}}", "template", "preview", "parcel_ready", "sms", "-")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "Code 48213907 at Hauptstraße 5, 10115 Berlin\n", out)
	code, _, errOut = hubctl("Code {{.pickup_code}}", "template", "set", "parcel_ready", "sms", "-")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "template_unknown_field")
	require.Contains(t, errOut, "pickup_code")

	code, out, errOut = hubctl("", "--json", "template", "list")
	require.Equal(t, 0, code, errOut)
	var list struct {
		Templates []struct{ Event, Channel, Language string }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list.Templates, 1, "the refused one was not stored")
	require.Equal(t, "de", list.Templates[0].Language)

	code, out, errOut = hubctl("", "template", "reset", "parcel_ready", "email", "--language", "de")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Removed")
	code, _, errOut = hubctl("", "template", "reset", "parcel_ready", "email", "--language", "de")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not_found")
}
