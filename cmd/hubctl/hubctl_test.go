package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
)

// testCLI runs hubctl in-process with a fixed environment, UTC times and a
// fixed clock, and returns the exit code, stdout and stderr.
func testCLI(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := newCLI(strings.NewReader(stdin), &stdout, &stderr)
	c.getenv = func(k string) string { return env[k] }
	c.loc = time.UTC
	c.now = func() time.Time { return time.Date(2025, 11, 23, 12, 0, 0, 0, time.UTC) }
	code := c.run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		cmd     string
		pos     []string
		flags   map[string]string // flag name → value after parsing
		help    bool
		wantErr string
	}{
		{name: "flags after the ID", args: []string{"locker", "add", "L1", "--cells", "10", "--model", "M", "--segment=north"},
			cmd: "locker add", pos: []string{"L1"}, flags: map[string]string{"cells": "10", "model": "M", "segment": "north"}},
		{name: "flags before the ID", args: []string{"locker", "add", "--cells", "12", "L2"},
			cmd: "locker add", pos: []string{"L2"}, flags: map[string]string{"cells": "12"}},
		{name: "global flags before the command", args: []string{"--server", "http://h:1", "--json", "locker", "list"},
			cmd: "locker list", pos: []string{}, flags: map[string]string{"server": "http://h:1", "json": "true"}},
		{name: "global flags after the command", args: []string{"locker", "show", "L1", "--token=t", "-json"},
			cmd: "locker show", pos: []string{"L1"}, flags: map[string]string{"token": "t", "json": "true"}},
		{name: "global and command flags mixed", args: []string{"--data-dir", "/d", "cert", "issue", "--out", "o", "L1", "--force"},
			cmd: "cert issue", pos: []string{"L1"}, flags: map[string]string{"data-dir": "/d", "out": "o", "force": "true"}},
		{name: "bool flag does not eat the next argument", args: []string{"cert", "issue", "--force", "L1"},
			cmd: "cert issue", pos: []string{"L1"}, flags: map[string]string{"force": "true", "out": "."}},
		{name: "duration flag", args: []string{"enroll-token", "L1", "--ttl", "2h", "--out", "f"},
			cmd: "enroll-token", pos: []string{"L1"}, flags: map[string]string{"ttl": "2h0m0s", "out": "f"}},
		{name: "enroll-token default ttl", args: []string{"enroll-token", "L1"},
			cmd: "enroll-token", pos: []string{"L1"}, flags: map[string]string{"ttl": "24h0m0s"}},
		{name: "api with data", args: []string{"api", "POST", "/api/v1/lockers", "--data", `{"id":"L1","cells":3}`},
			cmd: "api", pos: []string{"POST", "/api/v1/lockers"}, flags: map[string]string{"data": `{"id":"L1","cells":3}`}},
		{name: "data value that looks like a flag", args: []string{"api", "--data", "-", "GET", "x"},
			cmd: "api", pos: []string{"GET", "x"}, flags: map[string]string{"data": "-"}},
		{name: "everything after -- is positional", args: []string{"locker", "show", "--", "--json"},
			cmd: "locker show", pos: []string{"--json"}, flags: map[string]string{"json": "false"}},
		{name: "version", args: []string{"version"}, cmd: "version", pos: []string{}},
		{name: "top-level help", args: []string{"--help"}, help: true},
		{name: "help command", args: []string{"help"}, help: true},
		{name: "command help", args: []string{"locker", "add", "-h"}, cmd: "locker add", help: true},

		{name: "no command", args: nil, wantErr: "missing command"},
		{name: "unknown command", args: []string{"lockers"}, wantErr: `unknown command "lockers"`},
		{name: "missing subcommand", args: []string{"locker"}, wantErr: "locker: missing subcommand (add, list, show, update, delete, import)"},
		{name: "unknown subcommand", args: []string{"cert", "renew", "L1"}, wantErr: `cert: unknown subcommand "renew" (issue, revoke)`},
		{name: "missing ID", args: []string{"locker", "add", "--cells", "3"}, wantErr: "locker add: missing ID"},
		{name: "missing PATH", args: []string{"api", "GET"}, wantErr: "api: missing PATH"},
		{name: "extra argument", args: []string{"locker", "list", "L1"}, wantErr: `locker list: unexpected argument "L1"`},
		{name: "unknown flag", args: []string{"locker", "list", "--cells", "3"}, wantErr: "flag provided but not defined: -cells"},
		{name: "command flag before the command", args: []string{"--cells", "3", "locker", "add", "L1"}, wantErr: "flag provided but not defined: -cells"},
		{name: "bad int", args: []string{"locker", "add", "L1", "--cells", "many"}, wantErr: `invalid value "many" for flag -cells`},
		{name: "flag without its value", args: []string{"locker", "add", "L1", "--cells"}, wantErr: "flag needs an argument: -cells"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI(nil, io.Discard, io.Discard)
			inv, err := c.parse(tt.args)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				var ue *usageError
				require.ErrorAs(t, err, &ue)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.help, inv.help)
			if tt.cmd == "" {
				require.Nil(t, inv.cmd)
				return
			}
			require.Equal(t, tt.cmd, inv.cmd.name)
			if tt.help {
				return
			}
			require.Equal(t, tt.pos, inv.args)
			for name, want := range tt.flags {
				f := inv.fs.Lookup(name)
				require.NotNil(t, f, name)
				require.Equal(t, want, f.Value.String(), name)
			}
		})
	}
}

func TestReorder(t *testing.T) {
	c := newCLI(nil, io.Discard, io.Discard)
	inv, err := c.parse([]string{"api", "GET", "x"})
	require.NoError(t, err)
	fs := inv.fs
	tests := []struct{ in, want []string }{
		{[]string{"GET", "x", "--data", "{}"}, []string{"--data", "{}", "--", "GET", "x"}},
		{[]string{"--json", "GET", "--data={}", "x"}, []string{"--json", "--data={}", "--", "GET", "x"}},
		{[]string{"GET", "-", "x"}, []string{"--", "GET", "-", "x"}},
		{[]string{"GET", "--", "--data", "x"}, []string{"--", "GET", "--data", "x"}},
		{[]string{"--nope", "GET"}, []string{"--nope", "--", "GET"}},
		{[]string{"GET", "--data"}, []string{"--data"}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, reorder(fs, tt.in), "%q", tt.in)
	}
}

func TestRunErrorsAreOneLine(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"usage", nil, []string{"locker", "add"}, exitUsage, "hubctl: locker add: missing ID (usage: hubctl locker add ID (--cells N | --model M) [--address A]"},
		{"cells required", nil, []string{"locker", "add", "L1"}, exitUsage, "hubctl: locker add: --cells N is required without --model, and must be at least 1"},
		{"bad locker ID", nil, []string{"cert", "issue", "../L1"}, exitUsage, `character '.' at 0 is not allowed`},
		{"bad ttl", nil, []string{"enroll-token", "L1", "--ttl", "0s"}, exitUsage, "--ttl must be at least 1s"},
		{"bad method", nil, []string{"api", "GE T", "/x"}, exitUsage, `api: "GE T" is not an HTTP method`},
		{"bad data", nil, []string{"api", "POST", "/x", "--data", "{nope"}, exitUsage, "api --data: the body is not valid JSON"},
		{"no local hub", nil, []string{"locker", "list", "--data-dir", empty}, exitFail,
			"no local hub found in " + empty},
		{"no local hub from env", map[string]string{envDataDir: empty}, []string{"locker", "list"}, exitFail,
			"start one with `make run` or pass --server/--token"},
		{"server without token", nil, []string{"locker", "list", "--server", "127.0.0.1:1", "--data-dir", empty}, exitFail,
			"hubctl: no token for http://127.0.0.1:1: pass --token or set HUBCTL_TOKEN"},
		{"bad server", nil, []string{"locker", "list", "--server", "ftp://x", "--token", "t"}, exitFail, `server "ftp://x" is not an http(s) URL`},
		{"hub not running", nil, []string{"locker", "list", "--server", "127.0.0.1:1", "--token", "t"}, exitFail,
			"hubctl: cannot reach the hub at http://127.0.0.1:1, from --server (connection refused)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := testCLI(t, tt.env, "", tt.args...)
			require.Equal(t, tt.code, code)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tt.want)
			require.True(t, strings.HasPrefix(stderr, "hubctl: "), stderr)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		})
	}
}

func TestHelp(t *testing.T) {
	code, stdout, stderr := testCLI(t, nil, "", "--help")
	require.Equal(t, exitOK, code)
	require.Empty(t, stderr)
	for _, cmd := range commands {
		require.Contains(t, stdout, cmd.name+" "+cmd.args)
	}
	require.Contains(t, stdout, "--server URL")

	code, stdout, _ = testCLI(t, nil, "", "cert", "issue", "--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "Usage: hubctl cert issue ID [--out DIR] [--force]")
	require.Contains(t, stdout, "--out DIR")
	require.Contains(t, stdout, "--token TOKEN")
}

func TestEndpoint(t *testing.T) {
	local := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(local, apiclient.HubInfoFile), []byte(`{"http":"http://127.0.0.1:8080","mqtt":"127.0.0.1:8883","device":"https://127.0.0.1:8443"}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(local, apiclient.AdminTokenFile), []byte("local-token\n"), 0o600))
	noToken := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(noToken, apiclient.HubInfoFile), []byte(`{"http":"http://127.0.0.1:9090"}`), 0o644))
	empty := t.TempDir()

	tests := []struct {
		name        string
		g           globals
		env         map[string]string
		server, tok string
		wantErr     string
	}{
		{name: "flags", g: globals{server: "http://h:1/", token: "t"}, server: "http://h:1", tok: "t"},
		{name: "host:port", g: globals{server: "h:1", token: "t"}, server: "http://h:1", tok: "t"},
		{name: "env", env: map[string]string{envServer: "https://h", envToken: "e"}, server: "https://h", tok: "e"},
		{name: "flags win over env", g: globals{server: "http://f", token: "f"}, env: map[string]string{envServer: "http://e", envToken: "e"}, server: "http://f", tok: "f"},
		{name: "local data dir", g: globals{dataDir: local}, server: "http://127.0.0.1:8080", tok: "local-token"},
		{name: "data dir from env", env: map[string]string{envDataDir: local}, server: "http://127.0.0.1:8080", tok: "local-token"},
		{name: "token flag, server from local", g: globals{dataDir: local, token: "t"}, server: "http://127.0.0.1:8080", tok: "t"},
		{name: "token flag, local hub has no token file", g: globals{dataDir: noToken, token: "t"}, server: "http://127.0.0.1:9090", tok: "t"},
		{name: "local token for the local server", g: globals{dataDir: local, server: "127.0.0.1:8080"}, server: "http://127.0.0.1:8080", tok: "local-token"},
		{name: "local token never goes elsewhere", g: globals{dataDir: local, server: "http://other:8080"}, wantErr: "no token for http://other:8080"},
		{name: "no hub.json", g: globals{dataDir: empty}, wantErr: "start one with `make run` or pass --server/--token"},
		{name: "no admin.token", g: globals{dataDir: noToken}, wantErr: "no admin credential in " + noToken},
		{name: "token but no hub.json", g: globals{dataDir: empty, token: "t"}, wantErr: "no local hub found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI(nil, io.Discard, io.Discard)
			c.getenv = func(k string) string { return tt.env[k] }
			c.g = tt.g
			server, tok, err := c.endpoint()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.server, server)
			require.Equal(t, tt.tok, tok)
		})
	}
}

func TestWriteLockerTable(t *testing.T) {
	conn := time.Date(2025, 11, 23, 10, 0, 0, 0, time.UTC)
	disc := time.Date(2025, 11, 23, 11, 30, 5, 0, time.UTC)
	var buf bytes.Buffer
	require.NoError(t, writeLockerTable(&buf, []apiclient.Locker{
		{ID: "L1", Model: "kx-40", Cells: 40, Segments: []string{"north", "pilot"}, Enabled: true, Online: true, ConnectedAt: &conn},
		{ID: "L2-long-id", Cells: 8, Enabled: true, ConnectedAt: &conn, DisconnectedAt: &disc},
		{ID: "L3", Model: "kx-40", Cells: 40, Segments: []string{"south"}},
	}, time.UTC))
	want := "" +
		"ID          MODEL  CELLS  SEGMENTS     ONLINE         CONNECTED                DISCONNECTED\n" +
		"L1          kx-40  40     north,pilot  yes            2025-11-23 10:00:00 UTC  -\n" +
		"L2-long-id  -      8      -            no             2025-11-23 10:00:00 UTC  2025-11-23 11:30:05 UTC\n" +
		"L3          kx-40  40     south        no (disabled)  -                        -\n"
	require.Equal(t, want, buf.String())
}

func TestWriteLocker(t *testing.T) {
	conn := time.Date(2025, 11, 23, 10, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	require.NoError(t, writeLocker(&buf, apiclient.Locker{
		ID: "L1", Model: "kx-40", Cells: 4, Enabled: true, Online: true, ConnectedAt: &conn,
		Address: "Hauptstraße 1, Berlin", TimeZone: "Europe/Berlin", Lat: ptr(52.52), Lon: ptr(13.405),
		Segments: []string{"berlin", "pilot"}, Carriers: []string{},
		CreatedAt: time.Date(2025, 11, 1, 8, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2025, 11, 2, 8, 0, 0, 0, time.UTC),
	}, []apiclient.Cell{{Name: "A01", Size: "S"}, {Name: "A02", Size: "M"}, {Name: "A03", Size: "XL"}, {Name: "B01", Size: "S"}}, time.UTC))
	want := "" +
		"ID            L1\n" +
		"Model         kx-40\n" +
		"Cells         4 (S 2, M 1, XL 1)\n" +
		"Address       Hauptstraße 1, Berlin\n" +
		"Time zone     Europe/Berlin\n" +
		"Location      52.52, 13.405\n" +
		"Segments      berlin, pilot\n" +
		"Carriers      -\n" +
		"Enabled       yes\n" +
		"Online        yes\n" +
		"Connected     2025-11-23 10:00:00 UTC\n" +
		"Disconnected  -\n" +
		"Created       2025-11-01 08:00:00 UTC\n" +
		"Updated       2025-11-02 08:00:00 UTC\n"
	require.Equal(t, want, buf.String())
}

func TestWriteEnrollToken(t *testing.T) {
	now := time.Date(2025, 11, 23, 12, 0, 0, 0, time.UTC)
	tok := apiclient.EnrollToken{LockerID: "L1", Token: "tok-123", ExpiresAt: now.Add(24*time.Hour + 20*time.Second)}
	var buf bytes.Buffer
	require.NoError(t, writeEnrollToken(&buf, tok, "", now, time.UTC))
	require.Equal(t, ""+
		"Locker   L1\n"+
		"Token    tok-123\n"+
		"Expires  2025-11-24 12:00:20 UTC (in 24h0m0s; valid for one enrolment)\n", buf.String())
	buf.Reset()
	require.NoError(t, writeEnrollToken(&buf, tok, "out/ca.crt", now, time.UTC))
	require.Contains(t, buf.String(), "CA       out/ca.crt\n")
}

func TestRevokedMessage(t *testing.T) {
	require.Equal(t, "Revoked 0 certificates of L1 (it had none still valid).", revokedMessage("L1", 0))
	require.Equal(t, "Revoked 1 certificate of L1.", revokedMessage("L1", 1))
	require.Equal(t, "Revoked 3 certificates of L1.", revokedMessage("L1", 3))
}

func TestWriteBody(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":1,"b":[1,2]}`, "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ]\n}\n"},
		{"{\"a\":1}\n", "{\n  \"a\": 1\n}\n"},
		{"-----BEGIN CERTIFICATE-----\nx\n", "-----BEGIN CERTIFICATE-----\nx\n"},
		{"", ""},
		{"  \n", ""},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		require.NoError(t, writeBody(&buf, []byte(tt.in)))
		require.Equal(t, tt.want, buf.String())
	}
}

// TestAgainstFakeHub checks what a unit test can without PostgreSQL: the
// request hubctl sends, --json printing the hub's own bytes, and API errors.
func TestAgainstFakeHub(t *testing.T) {
	type seen struct{ method, path, auth, body string }
	reqs := make(chan seen, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqs <- seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), string(body)}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/lockers":
			io.WriteString(w, `{"lockers":[{"id":"L1","cells":4,"enabled":true,"created_at":"2025-11-23T10:00:00.000Z","extra":"kept"}]}`)
		case "/api/v1/lockers/L1/certificates/revoke":
			io.WriteString(w, `{"revoked":2}`)
		case "/api/v1/ca.crt":
			w.Header().Set("Content-Type", "application/x-pem-file")
			io.WriteString(w, "-----BEGIN CERTIFICATE-----\n")
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":"not_found","message":"locker L9 not found"}`)
		}
	}))
	defer srv.Close()
	env := map[string]string{envServer: srv.URL, envToken: "secret"}

	code, stdout, stderr := testCLI(t, env, "", "locker", "list")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, seen{"GET", "/api/v1/lockers", "Bearer secret", ""}, <-reqs)
	require.Contains(t, stdout, "L1  -      4")

	code, stdout, _ = testCLI(t, env, "", "locker", "list", "--json")
	require.Equal(t, exitOK, code)
	<-reqs
	require.Contains(t, stdout, `"extra": "kept"`, "raw JSON, not a re-encoding")

	code, stdout, _ = testCLI(t, env, "", "cert", "revoke", "L1")
	require.Equal(t, exitOK, code)
	require.Equal(t, seen{"POST", "/api/v1/lockers/L1/certificates/revoke", "Bearer secret", ""}, <-reqs)
	require.Equal(t, "Revoked 2 certificates of L1.\n", stdout)

	code, stdout, stderr = testCLI(t, env, `{"id":"L9"}`, "api", "post", "lockers/L9?x=1", "--data", "@-")
	require.Equal(t, exitFail, code)
	require.Equal(t, seen{"POST", "/api/v1/lockers/L9?x=1", "Bearer secret", `{"id":"L9"}`}, <-reqs)
	require.Empty(t, stdout)
	require.Equal(t, "hubctl: POST /api/v1/lockers/L9?x=1: HTTP 404: {\"code\":\"not_found\",\"message\":\"locker L9 not found\"}\n", stderr)

	code, stdout, _ = testCLI(t, env, "", "api", "GET", "/api/v1/ca.crt")
	require.Equal(t, exitOK, code)
	<-reqs
	require.Equal(t, "-----BEGIN CERTIFICATE-----\n", stdout)

	dataFile := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(dataFile, []byte(`{"cells": 3}`), 0o644))
	code, _, _ = testCLI(t, env, "", "api", "PATCH", "/api/v1/lockers/L1", "--data", "@"+dataFile)
	require.Equal(t, exitFail, code)
	require.Equal(t, seen{"PATCH", "/api/v1/lockers/L1", "Bearer secret", `{"cells": 3}`}, <-reqs)

	code, _, stderr = testCLI(t, env, "", "locker", "show", "L9")
	require.Equal(t, exitFail, code)
	<-reqs
	require.Equal(t, "hubctl: locker show L9: locker L9 not found (HTTP 404, not_found)\n", stderr)
}
