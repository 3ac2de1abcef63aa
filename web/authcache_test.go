package web_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestAuthCacheThroughTheHub: a repeated credential is answered from the
// access cache (lockerhub_access_auth_cache_total{result="hit"}), and a
// revocation or role change through the API applies to the very next
// request even though the credential was cached.
func TestAuthCacheThroughTheHub(t *testing.T) {
	h := hubtest.Start(t)
	admin := caller{token: h.AdminToken}
	hits := func() float64 { return h.Metric("lockerhub_access_auth_cache_total", "result", "hit") }
	misses := func() float64 { return h.Metric("lockerhub_access_auth_cache_total", "result", "miss") }

	status, _ := admin.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
	require.Equal(t, 200, status)
	hit0, miss0 := hits(), misses()
	for range 3 {
		status, _ = admin.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
		require.Equal(t, 200, status)
	}
	require.Equal(t, hit0+3, hits(), "the same token again: from the cache")
	require.Equal(t, miss0, misses(), "no lookup in PostgreSQL")

	// An API client, cached, then revoked.
	status, m := admin.do(t, "POST", h.HTTPURL+"/api/v1/clients", `{"name":"shop","carrier":"dhl","scopes":["lockers:read"]}`)
	require.Equal(t, 201, status, m)
	shop := caller{token: m["token"].(string)}
	for range 2 {
		status, _ = shop.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
		require.Equal(t, 200, status)
	}
	status, _ = admin.do(t, "DELETE", h.HTTPURL+"/api/v1/clients/shop", "")
	require.Equal(t, 200, status)
	status, m = shop.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
	require.Equal(t, 401, status, "a revoked client's very next request")
	require.Equal(t, "unauthenticated", m["code"])

	// A user's session, cached, then its role changed, then disabled.
	pw := h.AddUser("ada", "technician")
	s := h.Login("ada", pw)
	ada := caller{client: s.Client, csrf: s.CSRF}
	for range 2 {
		status, m = ada.do(t, "GET", h.HTTPURL+"/api/v1/session", "")
		require.Equal(t, 200, status)
		require.Equal(t, "technician", m["role"])
	}
	status, m = admin.do(t, "PATCH", h.HTTPURL+"/api/v1/users/ada", `{"role":"viewer"}`)
	require.Equal(t, 200, status, m)
	status, m = ada.do(t, "GET", h.HTTPURL+"/api/v1/session", "")
	require.Equal(t, 200, status)
	require.Equal(t, "viewer", m["role"], "the new role applies to the next request")
	status, _ = ada.do(t, "POST", h.HTTPURL+"/api/v1/lockers", `{"id":"L1","cells":4}`)
	require.Equal(t, 403, status)

	status, m = admin.do(t, "PATCH", h.HTTPURL+"/api/v1/users/ada", `{"disabled":true}`)
	require.Equal(t, 200, status, m)
	status, _ = ada.do(t, "GET", h.HTTPURL+"/api/v1/session", "")
	require.Equal(t, 401, status, "a disabled user's very next request")

	// Logging out ends the cached session at once too.
	s = h.LoginAdmin()
	me := caller{client: s.Client, csrf: s.CSRF}
	status, _ = me.do(t, "GET", h.HTTPURL+"/api/v1/session", "")
	require.Equal(t, 200, status)
	cookie := s.Cookie
	status, _ = me.do(t, "DELETE", h.HTTPURL+"/api/v1/session", "")
	require.Equal(t, 204, status)
	again := caller{client: cookieClient(t, h.HTTPURL, cookie)}
	status, _ = again.do(t, "GET", h.HTTPURL+"/api/v1/session", "")
	require.Equal(t, 401, status, "a logged-out session's cookie, sent again")
}

// cookieClient is a client that sends cookie to base, as a browser that
// kept it would.
func cookieClient(t *testing.T, base string, cookie *http.Cookie) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	u, err := url.Parse(base)
	require.NoError(t, err)
	jar.SetCookies(u, []*http.Cookie{{Name: cookie.Name, Value: cookie.Value, Path: "/"}})
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}
