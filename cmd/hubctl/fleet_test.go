package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
)

func ptr[T any](v T) *T { return &v }

func TestParseLayout(t *testing.T) {
	cells, err := parseLayout("A:SSMXL, B:LM,AA:S")
	require.NoError(t, err)
	require.Equal(t, []apiclient.Cell{
		{Name: "A01", Size: "S"}, {Name: "A02", Size: "S"}, {Name: "A03", Size: "M"}, {Name: "A04", Size: "XL"},
		{Name: "B01", Size: "L"}, {Name: "B02", Size: "M"}, {Name: "AA01", Size: "S"},
	}, cells)
	for _, bad := range []string{"", "A", "A:", "a:SS", "1:SS", "A:SX", "A:SQ", "ABC:S", "A:S,,B:M", "A:" + string(bytes.Repeat([]byte("S"), 100))} {
		_, err := parseLayout(bad)
		require.Error(t, err, bad)
	}
}

func TestFormatLayout(t *testing.T) {
	cells, err := parseLayout("A:SSMMLL,B:XLM")
	require.NoError(t, err)
	require.Equal(t, "A:SSMMLL,B:XLM", formatLayout(cells))
	require.Equal(t, "A01 S, A03 M", formatLayout([]apiclient.Cell{{Name: "A01", Size: "S"}, {Name: "A03", Size: "M"}}), "a gap: cell by cell")
	require.Equal(t, "", formatLayout(nil))
}

func TestWriteModel(t *testing.T) {
	cells, err := parseLayout("A:SSM,B:LXL")
	require.NoError(t, err)
	m := apiclient.Model{ID: "kx-5", Manufacturer: "KEBA", Name: "KePol 5", Layout: cells, Cells: 5, Capabilities: []string{"keypad", "screen"},
		CreatedAt: time.Date(2025, 11, 1, 8, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2025, 11, 1, 8, 0, 0, 0, time.UTC)}
	var buf bytes.Buffer
	require.NoError(t, writeModel(&buf, m, time.UTC))
	require.Equal(t, ""+
		"ID            kx-5\n"+
		"Manufacturer  KEBA\n"+
		"Name          KePol 5\n"+
		"Cells         5 (S 2, M 1, L 1, XL 1)\n"+
		"Layout        A:SSM,B:LXL\n"+
		"Capabilities  keypad, screen\n"+
		"Created       2025-11-01 08:00:00 UTC\n"+
		"Updated       2025-11-01 08:00:00 UTC\n", buf.String())
	buf.Reset()
	require.NoError(t, writeModelTable(&buf, []apiclient.Model{m, {ID: "old", Name: "old", Capabilities: []string{}}}))
	require.Equal(t, ""+
		"ID    MANUFACTURER  NAME     CELLS  SIZES                CAPABILITIES\n"+
		"kx-5  KEBA          KePol 5  5      S 2, M 1, L 1, XL 1  keypad,screen\n"+
		"old   -             old      0      -                    -\n", buf.String())
}

// TestFleetCommandsAgainstFakeHub checks the requests the fleet commands send.
func TestFleetCommandsAgainstFakeHub(t *testing.T) {
	type seen struct{ method, uri, ctype, body string }
	reqs := make(chan seen, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqs <- seen{r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), string(body)}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/lockers" && r.URL.Query().Get("offset") == "50":
			io.WriteString(w, `{"lockers":[],"total":3,"limit":100,"offset":50}`)
		case r.URL.Path == "/api/v1/lockers":
			io.WriteString(w, `{"lockers":[{"id":"L1","cells":4,"segments":["a"],"enabled":true}],"total":3,"limit":1,"offset":0}`)
		case r.URL.Path == "/api/v1/lockers/import":
			io.WriteString(w, `{"created":2}`)
		case r.Method == "DELETE":
			io.WriteString(w, `{"revoked":1}`)
		default:
			io.WriteString(w, `{"id":"L1","cells":4,"enabled":true}`)
		}
	}))
	defer srv.Close()
	env := map[string]string{envServer: srv.URL, envToken: "secret"}

	code, stdout, stderr := testCLI(t, env, "", "locker", "list", "--segment", "north", "--status", "online", "--q", "haupt str", "--limit", "1")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, seen{"GET", "/api/v1/lockers?limit=1&q=haupt+str&segment=north&status=online", "", ""}, <-reqs)
	require.Contains(t, stdout, "L1  -      4      a")
	require.Equal(t, "Lockers 1–1 of 3; see more with --offset 1 (--limit up to 10000).\n", stderr)

	code, _, stderr = testCLI(t, env, "", "locker", "list", "--offset", "50")
	require.Equal(t, exitOK, code)
	<-reqs
	require.Equal(t, "No lockers from offset 50 on (3 in all).\n", stderr)

	code, _, stderr = testCLI(t, env, "", "locker", "list", "--status", "asleep")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "--status is online or offline")

	// Only the flags given go into the patch; an empty value clears.
	code, stdout, stderr = testCLI(t, env, "", "locker", "update", "L1", "--address", "Ring 1", "--segments", "a, b",
		"--model", "", "--lat", "", "--lon", "", "--carriers", "", "--disable")
	require.Equal(t, exitOK, code, stderr)
	r := <-reqs
	require.Equal(t, "PATCH", r.method)
	require.Equal(t, "/api/v1/lockers/L1", r.uri)
	var patch map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.body), &patch))
	require.Equal(t, map[string]any{"address": "Ring 1", "segments": []any{"a", "b"}, "model": nil, "lat": nil, "lon": nil,
		"carriers": []any{}, "enabled": false}, patch)
	require.Contains(t, stdout, "Locker L1 updated.")

	code, _, _ = testCLI(t, env, "", "locker", "update", "L1", "--lat", "52.5", "--lon", "13.4", "--cells", "20", "--time-zone", "UTC", "--enable")
	require.Equal(t, exitOK, code)
	patch = nil
	require.NoError(t, json.Unmarshal([]byte((<-reqs).body), &patch))
	require.Equal(t, map[string]any{"lat": 52.5, "lon": 13.4, "cells": 20.0, "time_zone": "UTC", "enabled": true}, patch)

	for _, args := range [][]string{
		{"locker", "update", "L1"},
		{"locker", "update", "L1", "--enable", "--disable"},
		{"locker", "update", "L1", "--lat", "north"},
		{"model", "add", "m", "--manufacturer", "M", "--name", "N"},
		{"model", "add", "m", "--layout", "A:SQ"},
	} {
		code, _, stderr := testCLI(t, env, "", args...)
		require.Equal(t, exitUsage, code, "%q: %s", args, stderr)
	}

	code, stdout, _ = testCLI(t, env, "", "locker", "delete", "L1")
	require.Equal(t, exitOK, code)
	require.Equal(t, seen{"DELETE", "/api/v1/lockers/L1", "", ""}, <-reqs)
	require.Equal(t, "Locker L1 deleted. Revoked 1 certificate of L1.\n", stdout)

	csv := filepath.Join(t.TempDir(), "lockers.csv")
	require.NoError(t, os.WriteFile(csv, []byte("id,cells\nA,1\nB,2\n"), 0o644))
	code, stdout, _ = testCLI(t, env, "", "locker", "import", csv)
	require.Equal(t, exitOK, code)
	require.Equal(t, seen{"POST", "/api/v1/lockers/import", "text/csv", "id,cells\nA,1\nB,2\n"}, <-reqs)
	require.Equal(t, "Imported 2 lockers.\n", stdout)
	code, _, _ = testCLI(t, env, "id,cells\nC,1\n", "locker", "import", "-")
	require.Equal(t, exitOK, code)
	require.Equal(t, "id,cells\nC,1\n", (<-reqs).body)

	code, _, stderr = testCLI(t, env, "", "locker", "import", filepath.Join(t.TempDir(), "missing.csv"))
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "no such file")

	code, _, stderr = testCLI(t, env, "", "model", "add", "kx-2", "--manufacturer", "KEBA", "--name", "Two", "--layout", "A:SXL", "--capabilities", "screen, pos")
	require.Equal(t, exitOK, code, stderr)
	r = <-reqs
	require.Equal(t, "/api/v1/models", r.uri)
	require.JSONEq(t, `{"id":"kx-2","manufacturer":"KEBA","name":"Two","layout":[{"name":"A01","size":"S"},{"name":"A02","size":"XL"}],"capabilities":["screen","pos"]}`, r.body)
}
