package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/web"
)

// do sends a request with c (which may carry the session cookie) and an
// optional CSRF token, and decodes a JSON answer.
func do(t *testing.T, c *http.Client, method, url, csrf, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf != "" {
		req.Header.Set(web.CSRFHeader, csrf)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(data, &out), string(data))
	}
	return resp, out
}

func newBrowser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar}
}

func loginBody(user, pw string) string {
	b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
	return string(b)
}

func TestLoginSessionCookieAndCSRF(t *testing.T) {
	h := hubtest.Start(t)
	b := newBrowser(t)
	sessionURL := h.HTTPURL + "/api/v1/session"
	lockers := h.HTTPURL + "/api/v1/lockers"

	resp, body := do(t, b, "GET", sessionURL, "", "")
	require.Equal(t, 401, resp.StatusCode)
	require.Equal(t, "unauthenticated", body["code"])
	resp, body = do(t, b, "GET", lockers, "", "")
	require.Equal(t, 401, resp.StatusCode)
	require.Contains(t, body["message"], "POST /api/v1/session")

	// A form post (what another site could make a browser send) is refused.
	req, _ := http.NewRequest("POST", sessionURL, strings.NewReader(loginBody("admin", h.AdminPassword)))
	req.Header.Set("Content-Type", "text/plain")
	r, err := b.Do(req)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusUnsupportedMediaType, r.StatusCode)

	resp, body = do(t, b, "POST", sessionURL, "", loginBody("admin", "wrong password, sorry"))
	require.Equal(t, 401, resp.StatusCode)
	require.Equal(t, "bad_login", body["code"])
	resp, body = do(t, b, "POST", sessionURL, "", loginBody("nobody", "wrong password, sorry"))
	require.Equal(t, 401, resp.StatusCode)
	require.Equal(t, "bad_login", body["code"], "an unknown user looks the same")

	resp, body = do(t, b, "POST", sessionURL, "", loginBody(" Admin ", h.AdminPassword))
	require.Equal(t, 200, resp.StatusCode, body)
	require.Equal(t, "admin", body["user"])
	require.Equal(t, "admin", body["role"])
	csrf, _ := body["csrf_token"].(string)
	require.NotEmpty(t, csrf)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "lockerhub_session" {
			cookie = c
		}
	}
	require.NotNil(t, cookie)
	require.True(t, cookie.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	require.Equal(t, "/", cookie.Path)
	require.False(t, cookie.Secure, "plain HTTP: a Secure cookie would never come back")
	require.NotContains(t, h.Log.String(), cookie.Value, "the session id is not logged")
	require.NotContains(t, h.Log.String(), h.AdminPassword, "nor the password")

	resp, body = do(t, b, "GET", sessionURL, "", "")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, csrf, body["csrf_token"], "a reloaded page gets its CSRF token back")
	resp, _ = do(t, b, "GET", lockers, "", "")
	require.Equal(t, 200, resp.StatusCode, "the cookie authenticates reads")

	newLocker := `{"id":"L1","cells":4}`
	resp, body = do(t, b, "POST", lockers, "", newLocker)
	require.Equal(t, 403, resp.StatusCode)
	require.Equal(t, "csrf", body["code"])
	resp, body = do(t, b, "POST", lockers, "x"+csrf, newLocker)
	require.Equal(t, 403, resp.StatusCode)
	require.Equal(t, "csrf", body["code"])
	resp, body = do(t, b, "POST", lockers, csrf, newLocker)
	require.Equal(t, 201, resp.StatusCode, body)

	// Bearer requests need no CSRF token; a bearer token wins over a cookie.
	req, _ = http.NewRequest("POST", lockers, strings.NewReader(`{"id":"L2","cells":4}`))
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	r, err = b.Do(req)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, 201, r.StatusCode)
	status, who := call(t, "GET", sessionURL, h.AdminToken, "")
	require.Equal(t, 200, status)
	require.Equal(t, "admin", who["role"])
	require.Nil(t, who["csrf_token"], "no session, no CSRF token")

	resp, body = do(t, b, "DELETE", sessionURL, "", "")
	require.Equal(t, 403, resp.StatusCode, "logging out needs the CSRF token too")
	require.Equal(t, "csrf", body["code"])
	resp, _ = do(t, b, "DELETE", sessionURL, csrf, "")
	require.Equal(t, 204, resp.StatusCode)
	resp, _ = do(t, b, "GET", lockers, "", "")
	require.Equal(t, 401, resp.StatusCode, "logged out")

	// The old cookie value is dead on the server, not only in this browser.
	replay := &http.Client{}
	req, _ = http.NewRequest("GET", lockers, nil)
	req.AddCookie(&http.Cookie{Name: "lockerhub_session", Value: cookie.Value})
	r, err = replay.Do(req)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, 401, r.StatusCode)
}

// TestReadOnlyRoles: on-call staff and viewers read and may log out; what
// every role may do is walked in TestRoleMatrix.
func TestReadOnlyRoles(t *testing.T) {
	h := hubtest.Start(t)
	h.AddLocker("L1")
	for _, role := range []string{access.RoleOnCall, access.RoleViewer} {
		t.Run(role, func(t *testing.T) {
			s := h.Login("u-"+role, h.AddUser("u-"+role, role))
			require.Equal(t, role, s.Role)
			resp, _ := do(t, s.Client, "GET", h.HTTPURL+"/api/v1/lockers/L1", "", "")
			require.Equal(t, 200, resp.StatusCode)
			resp, body := do(t, s.Client, "POST", h.HTTPURL+"/api/v1/lockers", s.CSRF, `{"id":"L9","cells":4}`)
			require.Equal(t, 403, resp.StatusCode)
			require.Equal(t, "forbidden", body["code"])
			require.Contains(t, body["message"], role)
			resp, _ = do(t, s.Client, "DELETE", h.HTTPURL+"/api/v1/session", s.CSRF, "")
			require.Equal(t, 204, resp.StatusCode, "everyone may log out")
		})
	}
	require.NoError(t, h.App.Access.DisableUser(t.Context(), "u-viewer"))
	resp, body := do(t, newBrowser(t), "POST", h.HTTPURL+"/api/v1/session", "", loginBody("u-viewer", "not the password at all"))
	require.Equal(t, 401, resp.StatusCode)
	require.Equal(t, "bad_login", body["code"])
}

func TestDisabledUserIsToldOnlyWithTheRightPassword(t *testing.T) {
	h := hubtest.Start(t)
	pw := h.AddUser("ada", access.RoleViewer)
	s := h.Login("ada", pw)
	require.NoError(t, h.App.Access.DisableUser(t.Context(), "ada"))
	resp, _ := do(t, s.Client, "GET", h.HTTPURL+"/api/v1/lockers", "", "")
	require.Equal(t, 401, resp.StatusCode, "disabling ends the session")
	resp, body := do(t, newBrowser(t), "POST", h.HTTPURL+"/api/v1/session", "", loginBody("ada", pw))
	require.Equal(t, 403, resp.StatusCode)
	require.Equal(t, "disabled", body["code"])
}

func TestFailedLoginsAreLimited(t *testing.T) {
	h := hubtest.Start(t)
	b := newBrowser(t)
	u := h.HTTPURL + "/api/v1/session"

	// Per username: 5 failures, then 429 even with the right password.
	for i := range 5 {
		resp, body := do(t, b, "POST", u, "", loginBody("admin", fmt.Sprintf("guess number %d", i)))
		require.Equal(t, 401, resp.StatusCode, body)
	}
	resp, body := do(t, b, "POST", u, "", loginBody("ADMIN", h.AdminPassword))
	require.Equal(t, 429, resp.StatusCode)
	require.Equal(t, "too_many_attempts", body["code"])
	require.Contains(t, body["message"], "this user")
	// About a minute: the limiter's clock started at the first failure.
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.InDelta(t, 60, retry, 10)

	// Another user from the same address still gets in, and a success does
	// not count against the address.
	pw := h.AddUser("ada", access.RoleViewer)
	h.Login("ada", pw)

	// Per address: 30 failures over many usernames, then 429 for everyone.
	for i := range 25 {
		resp, body := do(t, b, "POST", u, "", loginBody(fmt.Sprintf("user%d", i), "wrong password, sorry"))
		require.Equal(t, 401, resp.StatusCode, "attempt %d: %v", i, body)
	}
	// The address regains one attempt per 10 s. On a slow machine (argon2id
	// under -race) the attempts above may take longer than that, so a few
	// more failures may pass before the limit answers; at most 10 more.
	limited := false
	for i := range 10 {
		resp, body := do(t, b, "POST", u, "", loginBody(fmt.Sprintf("late%d", i), "wrong password, sorry"))
		if resp.StatusCode == 429 {
			limited = true
			break
		}
		require.Equal(t, 401, resp.StatusCode, body)
	}
	require.True(t, limited, "the address was never limited")
	resp, body = do(t, b, "POST", u, "", loginBody("ada", pw))
	require.Equal(t, 429, resp.StatusCode, body)
	require.Contains(t, body["message"], "this address")
	require.Contains(t, h.Log.String(), "login failed", "failures are logged")
}

func TestSessionCookieIsSecureOverTLS(t *testing.T) {
	withTLS, client := hubtest.HTTPTLS(t)
	h := hubtest.Start(t, withTLS)
	resp, err := client.Post("https://"+h.App.HTTPAddr()+"/api/v1/session", "application/json",
		bytes.NewReader([]byte(loginBody("admin", h.AdminPassword))))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Len(t, resp.Cookies(), 1)
	require.True(t, resp.Cookies()[0].Secure)
}
