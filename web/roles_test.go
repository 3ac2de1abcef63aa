package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/web"
)

// caller is one identity of the matrix walk.
type caller struct {
	name        string // role, or "client:<scope>"
	role, scope string
	client      *http.Client
	csrf, token string
}

func (c caller) do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.csrf != "" {
		req.Header.Set(web.CSRFHeader, c.csrf)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := c.client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return resp.StatusCode, m
}

// matrixCallers logs in one user of every role (the courier with a carrier,
// as it must be) and makes one API client per scope, each holding only it.
func matrixCallers(t *testing.T, h *hubtest.Hub) []caller {
	ctx := context.Background()
	var cs []caller
	for _, role := range access.Roles {
		carrier := ""
		if role == access.RoleCourier {
			carrier = "dhl"
		}
		pw := access.RandomPassword()
		_, err := h.App.Access.AddUser(ctx, access.NewUser{Username: "m-" + role, Password: pw, Role: role, Carrier: carrier})
		require.NoError(t, err)
		s := h.Login("m-"+role, pw)
		cs = append(cs, caller{name: role, role: role, client: s.Client, csrf: s.CSRF})
	}
	for _, sc := range access.Scopes {
		_, tok, err := h.App.Access.CreateClient(ctx, "m-"+strings.ReplaceAll(sc, ":", "-"), "dhl", []string{sc})
		require.NoError(t, err)
		cs = append(cs, caller{name: "client:" + sc, role: access.RoleClient, scope: sc, token: tok})
	}
	return cs
}

var lastUsed = regexp.MustCompile(`,\s*"last_used_at": "[^"]*"`)

// state is what a denied request must not change, read as admin.
func state(t *testing.T, h *hubtest.Hub) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"/api/v1/lockers", "/api/v1/models", "/api/v1/users", "/api/v1/clients", "/api/v1/lockers/L1/twin", "/api/v1/commands"} {
		data, _, err := h.Admin.Do(context.Background(), "GET", p, nil)
		if err != nil && !apiclient.IsCode(err, "not_found") {
			require.NoError(t, err, p)
		}
		// When a client was last used is bookkeeping, not a change.
		b.WriteString(p + " " + lastUsed.ReplaceAllString(string(data), "") + "\n")
	}
	return b.String()
}

// TestRoleMatrix walks the whole role matrix against a real hub: every
// non-public route, called as every role and as API clients of every scope.
// Allowed is never 401 or 403; denied is 403 "forbidden" naming the role or
// scope, and changes nothing. Without a credential every route is 401; with
// the session cookie but without the CSRF token every change is 403 "csrf".
func TestRoleMatrix(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	ensureL1 := func() {
		if _, err := h.Admin.Locker(ctx, "L1"); apiclient.IsCode(err, "not_found") {
			_, err := h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "L1", Cells: 4, Carriers: []string{"dhl"}})
			require.NoError(t, err)
		}
	}
	ensureL1()
	_, err := h.App.Access.AddUser(ctx, access.NewUser{Username: "target", Password: access.RandomPassword(), Role: access.RoleViewer})
	require.NoError(t, err)
	_, _, err = h.App.Access.CreateClient(ctx, "target", "dhl", []string{access.ScopeLockersRead})
	require.NoError(t, err)
	callers := matrixCallers(t, h)
	callers = append(callers, caller{name: "admin token", role: access.RoleAdmin, token: h.AdminToken})
	var adminSession caller
	for _, c := range callers {
		if c.name == access.RoleAdmin {
			adminSession = c
		}
	}
	noCSRF := adminSession
	noCSRF.csrf = ""

	api := web.NewAPI(web.Deps{})
	var keys []string
	for _, k := range api.Routes() {
		if !api.Public(k) {
			keys = append(keys, k)
		}
	}
	// Logging out ends the callers' sessions: last.
	sort.SliceStable(keys, func(i, j int) bool { return keys[j] == "DELETE /api/v1/session" && keys[i] != keys[j] })
	require.Equal(t, "DELETE /api/v1/session", keys[len(keys)-1])

	r := strings.NewReplacer("{id}", "L1", "{name}", "target", "{cell}", "A01")
	var allowed, denied int
	for _, key := range keys {
		method, path, _ := strings.Cut(key, " ")
		url := h.HTTPURL + r.Replace(path)
		body := ""
		if method != "GET" && method != "DELETE" {
			body = "{}"
		}
		ensureL1()

		before := state(t, h)
		for _, c := range callers {
			if web.Allowed(key, c.role, c.scope) {
				continue
			}
			status, m := c.do(t, method, url, body)
			require.Equal(t, 403, status, "%s as %s: denied must be 403, got %v", key, c.name, m)
			require.Equal(t, "forbidden", m["code"], "%s as %s", key, c.name)
			if c.role == access.RoleClient {
				require.Contains(t, m["message"], "client", key)
			} else {
				require.Contains(t, m["message"], c.role, key)
			}
			denied++
		}
		if method != "GET" {
			// The session cookie without the CSRF token: refused, even for an admin.
			status, m := noCSRF.do(t, method, url, body)
			require.Equal(t, 403, status, "%s with the cookie but no CSRF token", key)
			require.Equal(t, "csrf", m["code"], key)
		}
		require.Equal(t, before, state(t, h), "%s: a denied request changed something", key)

		status, _ := (caller{}).do(t, method, url, body)
		require.Equal(t, 401, status, "%s without a credential", key)

		for _, c := range callers {
			if !web.Allowed(key, c.role, c.scope) {
				continue
			}
			status, m := c.do(t, method, url, body)
			require.NotContains(t, []int{401, 403}, status, "%s as %s: allowed, got %d %v", key, c.name, status, m)
			allowed++
		}
		// The admin token may do what an admin may.
		require.True(t, web.Allowed(key, access.RoleAdmin, ""), "admins may call every route: %s", key)
	}
	t.Logf("role matrix: %d routes, %d callers, %d allowed and %d denied calls", len(keys), len(callers), allowed, denied)
}
