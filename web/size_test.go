package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/connectors"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/web"
)

// TestEveryBodyIsBounded walks every POST, PUT and PATCH of both listeners
// (from the route tables, so a new route is walked too) with a body one byte
// over its limit: 413 too_large, and nothing changed (the audit log, which
// records every change, has no new record). A route whose operation in
// web/openapi.json has no request body may instead ignore the body. Path
// parameters name objects that exist, so the handlers get as far as the
// body. The limits: 1 MiB for JSON, 10 MiB for the CSV import, 64
// KiB for a partner's document and an SDP offer, --ota-max-artifact-bytes
// (1 MiB here) for a firmware file.
func TestEveryBodyIsBounded(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.OTA.MaxArtifactBytes = 1 << 20 })
	ctx := context.Background()
	// Expect: 100-continue, so that a handler that answers without reading
	// the body gets its answer back before the client has sent it all.
	device := &http.Client{Transport: &http.Transport{TLSClientConfig: h.ClientTLS(h.Locker("SZ-DEV")), ExpectContinueTimeout: time.Second}}
	h.AddLocker("SZ-1")
	api := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Second}}
	h.AddUser("sz-user", "viewer")
	_, _, err := h.App.Access.CreateClient(ctx, "sz-client", "acme", []string{"lockers:read"})
	require.NoError(t, err)

	params := map[string]string{"{id}": "1", "{name}": "sz-user", "{cell}": "A01", "{event}": "parcel_available", "{channel}": "sms"}
	fill := func(path string) string {
		if strings.HasPrefix(path, "/api/v1/lockers/{id}") {
			path = strings.Replace(path, "{id}", "SZ-1", 1)
		}
		if strings.HasPrefix(path, "/api/v1/connectors/{name}") {
			path = strings.Replace(path, "{name}", "xml-orders", 1)
		}
		for k, v := range params {
			path = strings.ReplaceAll(path, k, v)
		}
		return path
	}
	// The body of each kind of route, one byte over its limit.
	body := func(path string) (string, []byte) {
		over := func(prefix string, limit int, suffix string) []byte {
			return []byte(prefix + strings.Repeat("x", limit+1-len(prefix)-len(suffix)) + suffix)
		}
		switch {
		case path == "/api/v1/lockers/import":
			return "text/csv", over("id,cells\n", fleet.MaxImportBytes, "\n")
		case path == "/api/v1/ota/artifacts":
			return "application/octet-stream", over("", 1<<20, "")
		case strings.HasPrefix(path, "/api/v1/connectors/"):
			return "application/xml", over("<order><id>", connectors.MaxDocument, "</id></order>")
		case strings.HasSuffix(path, "/video/whep"):
			return "application/sdp", over("v=0\r\n", 64<<10, "\r\n")
		default:
			return "application/json", over(`{"name":"`, web.MaxBody, `"}`)
		}
	}

	var doc struct {
		Paths map[string]map[string]struct {
			RequestBody json.RawMessage `json:"requestBody"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(web.OpenAPI(), &doc))
	audits := func() int {
		var n int
		require.NoError(t, h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n))
		return n
	}
	_, clientToken, err := h.App.Access.CreateClient(ctx, "sz-hook", "acme", []string{"parcels:write"})
	require.NoError(t, err)
	type route struct{ base, method, path string }
	var routes []route
	for _, rt := range web.NewAPI(web.Deps{}).Routes() {
		routes = append(routes, route{h.HTTPURL, strings.Fields(rt)[0], strings.Fields(rt)[1]})
	}
	for _, rt := range web.DeviceRoutes() {
		routes = append(routes, route{h.DeviceURL, strings.Fields(rt)[0], strings.Fields(rt)[1]})
	}
	walked := 0
	for _, rt := range routes {
		if rt.method != "POST" && rt.method != "PUT" && rt.method != "PATCH" {
			continue
		}
		walked++
		ctype, data := body(rt.path)
		url := rt.base + fill(rt.path)
		if rt.path == "/api/v1/ota/artifacts" {
			url += "?version=9.9.9"
		}
		req, err := http.NewRequest(rt.method, url, bytes.NewReader(data))
		require.NoError(t, err)
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Expect", "100-continue")
		req.Header.Set("Authorization", "Bearer "+h.AdminToken)
		if rt.path == "/api/v1/webhook" { // an API client's own route
			req.Header.Set("Authorization", "Bearer "+clientToken)
		}
		c := api
		if rt.base == h.DeviceURL {
			c = device
		}
		before := audits()
		resp, err := c.Do(req)
		require.NoError(t, err, "%s %s", rt.method, rt.path)
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		takesBody := len(doc.Paths[rt.path][strings.ToLower(rt.method)].RequestBody) > 0
		switch {
		case resp.StatusCode == http.StatusRequestEntityTooLarge && strings.Contains(string(out), "too_large"):
			require.Equal(t, before, audits(), "%s %s: a refused body changed something", rt.method, rt.path)
		case takesBody:
			t.Errorf("%s %s: %d %.200s", rt.method, rt.path, resp.StatusCode, out)
		default:
			t.Logf("%s %s takes no body: %d", rt.method, rt.path, resp.StatusCode)
		}
	}
	require.Greater(t, walked, 40, "every route with a body")
}
