package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/hubtest"
)

// TestUserManagementAPI: an admin adds, lists, changes and disables users;
// disabling ends the user's session and live stream at once.
func TestUserManagementAPI(t *testing.T) {
	h := hubtest.Start(t)
	admin := caller{token: h.AdminToken}
	u := h.HTTPURL + "/api/v1/users"

	status, m := admin.do(t, "POST", u, `{"username":"Ada","role":"technician"}`)
	require.Equal(t, 201, status, m)
	require.Equal(t, "ada", m["username"])
	pw, _ := m["password"].(string)
	require.Len(t, pw, 24, "a generated password is returned once")
	status, m = admin.do(t, "POST", u, `{"username":"ada","role":"viewer","password":"another long password"}`)
	require.Equal(t, 409, status)
	require.Equal(t, "exists", m["code"])
	status, m = admin.do(t, "POST", u, `{"username":"kim","role":"courier","password":"another long password"}`)
	require.Equal(t, 400, status, "a courier needs a carrier")
	require.Equal(t, "invalid", m["code"])
	status, m = admin.do(t, "POST", u, `{"username":"kim","role":"courier","carrier":"dhl","password":"short"}`)
	require.Equal(t, 400, status)
	require.Contains(t, m["message"], "password")
	status, m = admin.do(t, "POST", u, `{"username":"kim","role":"courier","carrier":"dhl","password":"another long password"}`)
	require.Equal(t, 201, status, m)
	require.Nil(t, m["password"], "a given password is not echoed")
	require.Equal(t, "dhl", m["carrier"])

	status, m = admin.do(t, "GET", u, "")
	require.Equal(t, 200, status)
	var names []string
	for _, x := range m["users"].([]any) {
		names = append(names, x.(map[string]any)["username"].(string))
		require.NotContains(t, x, "password_hash")
	}
	require.Equal(t, []string{"ada", "admin", "kim"}, names)

	s := h.Login("ada", pw)
	ada := caller{client: s.Client, csrf: s.CSRF}
	status, _ = ada.do(t, "POST", h.HTTPURL+"/api/v1/lockers", `{"id":"L1","cells":4}`)
	require.Equal(t, 201, status, "a technician adds lockers")

	status, m = admin.do(t, "PATCH", u+"/ada", `{"role":"viewer"}`)
	require.Equal(t, 200, status, m)
	status, _ = ada.do(t, "POST", h.HTTPURL+"/api/v1/lockers", `{"id":"L2","cells":4}`)
	require.Equal(t, 403, status, "the new role applies to the next request")

	// An open live stream of ada.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(h.HTTPURL, "http", "ws", 1)+"/api/v1/stream",
		&websocket.DialOptions{HTTPClient: s.Client})
	require.NoError(t, err)
	defer ws.CloseNow()
	sendWatch(t, ws, `{"watch":"fleet","filter":{}}`)
	snapshotOf(t, ws)

	status, m = admin.do(t, "PATCH", u+"/ada", `{"disabled":true}`)
	require.Equal(t, 200, status, m)
	require.NotNil(t, m["disabled_at"])
	status, _ = ada.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
	require.Equal(t, 401, status, "disabling ends the session at once")
	for {
		if _, err := readMsg(t, ws, 5*time.Second); err != nil {
			require.NotErrorIs(t, err, context.DeadlineExceeded, "disabling closes the live stream")
			break
		}
	}

	// Reset: a new password, the old one no longer works.
	status, _ = admin.do(t, "PATCH", u+"/ada", `{"disabled":false}`)
	require.Equal(t, 200, status)
	status, m = admin.do(t, "POST", u+"/ada/password", "")
	require.Equal(t, 200, status, m)
	newPW := m["password"].(string)
	require.NotEqual(t, pw, newPW)
	_, err = h.App.Access.Login(context.Background(), "ada", pw, "x")
	require.ErrorIs(t, err, access.ErrBadLogin)
	h.Login("ada", newPW)

	status, m = admin.do(t, "PATCH", u+"/nobody", `{"disabled":true}`)
	require.Equal(t, 404, status)
	require.Equal(t, "not_found", m["code"])
	status, m = admin.do(t, "PATCH", u+"/ada", `{"role":"root"}`)
	require.Equal(t, 400, status)
	require.Equal(t, "invalid", m["code"])
}

// TestAPIClients: an admin makes an API client, whose token (shown once)
// works within its scopes until it is revoked.
func TestAPIClients(t *testing.T) {
	h := hubtest.Start(t)
	admin := caller{token: h.AdminToken}
	u := h.HTTPURL + "/api/v1/clients"
	status, m := admin.do(t, "POST", u, `{"name":"shop","carrier":"dhl","scopes":["lockers:read"]}`)
	require.Equal(t, 201, status, m)
	tok := m["token"].(string)
	require.True(t, strings.HasPrefix(tok, "lhc_"))
	status, m = admin.do(t, "POST", u, `{"name":"shop2","carrier":"dhl","scopes":["everything"]}`)
	require.Equal(t, 400, status)
	require.Contains(t, m["message"], "lockers:read", "the error lists the scopes")

	shop := caller{token: tok}
	status, m = shop.do(t, "GET", h.HTTPURL+"/api/v1/session", "")
	require.Equal(t, 200, status)
	require.Equal(t, "client", m["role"])
	status, _ = shop.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
	require.Equal(t, 200, status)
	status, m = shop.do(t, "POST", h.HTTPURL+"/api/v1/lockers", `{"id":"L1","cells":4}`)
	require.Equal(t, 403, status)
	require.Equal(t, "forbidden", m["code"])

	status, m = admin.do(t, "GET", u, "")
	require.Equal(t, 200, status)
	require.Len(t, m["clients"], 1)
	require.NotContains(t, m["clients"].([]any)[0], "token")
	require.NotContains(t, m["clients"].([]any)[0], "hash")

	// An open live stream of the client ends when it is revoked.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(h.HTTPURL, "http", "ws", 1)+"/api/v1/stream",
		&websocket.DialOptions{HTTPHeader: map[string][]string{"Authorization": {"Bearer " + tok}}})
	require.NoError(t, err)
	defer ws.CloseNow()
	sendWatch(t, ws, `{"watch":"fleet","filter":{}}`)
	snapshotOf(t, ws)

	status, _ = admin.do(t, "DELETE", u+"/shop", "")
	require.Equal(t, 200, status)
	for {
		if _, err := readMsg(t, ws, 5*time.Second); err != nil {
			require.NotErrorIs(t, err, context.DeadlineExceeded, "revoking closes the client's live stream")
			break
		}
	}
	status, m = shop.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
	require.Equal(t, 401, status, "a revoked client is refused at once")
	require.Equal(t, "unauthenticated", m["code"])
}

// TestSessionSaysWhatTheCallerCan: the dashboard hides what the role cannot
// use from the session's "can" list, taken from the role matrix.
func TestSessionSaysWhatTheCallerCan(t *testing.T) {
	h := hubtest.Start(t)
	can := func(c caller) []any {
		status, m := c.do(t, "GET", h.HTTPURL+"/api/v1/session", "")
		require.Equal(t, 200, status)
		return m["can"].([]any)
	}
	admin := h.LoginAdmin()
	require.Contains(t, can(caller{client: admin.Client}), "GET /api/v1/users")
	s := h.Login("vera", h.AddUser("vera", access.RoleViewer))
	v := can(caller{client: s.Client})
	require.Contains(t, v, "GET /api/v1/lockers")
	require.NotContains(t, v, "GET /api/v1/users")
	require.NotContains(t, v, "POST /api/v1/lockers")
	_, tok, err := h.App.Access.CreateClient(context.Background(), "shop", "dhl", []string{access.ScopeTelemetryRead})
	require.NoError(t, err)
	status, m := caller{token: tok}.do(t, "GET", h.HTTPURL+"/api/v1/session", "")
	require.Equal(t, 200, status)
	require.Equal(t, "client", m["role"])
	require.Equal(t, "dhl", m["carrier"])
	require.Contains(t, m["can"], "GET /api/v1/fleet/telemetry/latest")
	require.NotContains(t, m["can"], "GET /api/v1/lockers")
}
