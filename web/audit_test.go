package web_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
)

type auditPage struct {
	Records []struct {
		ID    int64 `json:"id"`
		Actor struct {
			Kind, ID, Name, Role, Addr string
			RequestID                  string `json:"request_id"`
		} `json:"actor"`
		Action     string          `json:"action"`
		ObjectType string          `json:"object_type"`
		ObjectID   string          `json:"object_id"`
		Before     json.RawMessage `json:"before"`
		After      json.RawMessage `json:"after"`
	} `json:"records"`
	Next string `json:"next_cursor"`
}

func getAudit(t *testing.T, h *hubtest.Hub, query string) auditPage {
	t.Helper()
	req, err := http.NewRequest("GET", h.HTTPURL+"/api/v1/audit?"+query, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	require.Equal(t, 200, resp.StatusCode, string(data))
	var p auditPage
	require.NoError(t, json.Unmarshal(data, &p))
	return p
}

func auditCount(t *testing.T, h *hubtest.Hub) int {
	var n int
	require.NoError(t, h.App.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log`).Scan(&n))
	return n
}

// TestAuditOfAPIChanges: a change through the API writes exactly one record
// with the object before and after, the caller and the caller's address; a
// change that fails in its transaction writes none.
func TestAuditOfAPIChanges(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	status, body := call(t, "POST", h.HTTPURL+"/api/v1/lockers", h.AdminToken, `{"id":"AU-1","cells":4,"address":"Old Street 1"}`)
	require.Equal(t, 201, status, body)
	base := auditCount(t, h)

	// A user, through a proxy that says where the request came from.
	pw := h.AddUser("tess", "admin")
	s := h.Login("tess", pw)
	req, err := http.NewRequest("PATCH", h.HTTPURL+"/api/v1/lockers/AU-1", strings.NewReader(`{"address":"New Street 2"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("X-CSRF-Token", s.CSRF)
	req.Header.Set("X-Forwarded-For", "198.51.100.9, 203.0.113.7")
	req.Header.Set("X-Request-ID", "req-patch-1")
	resp, err := s.Client.Do(req)
	require.NoError(t, err)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(data))
	require.Equal(t, "req-patch-1", resp.Header.Get("X-Request-ID"))

	p := getAudit(t, h, "object_type=locker&object_id=AU-1&action=update")
	require.Len(t, p.Records, 1)
	r := p.Records[0]
	require.Equal(t, "user", r.Actor.Kind)
	require.Equal(t, "tess", r.Actor.Name)
	require.Equal(t, "admin", r.Actor.Role)
	require.NotEmpty(t, r.Actor.ID)
	require.Equal(t, "203.0.113.7", r.Actor.Addr, "the right-most address the trusted proxy saw")
	require.Equal(t, "req-patch-1", r.Actor.RequestID)
	var before, after map[string]any
	require.NoError(t, json.Unmarshal(r.Before, &before))
	require.NoError(t, json.Unmarshal(r.After, &after))
	require.Equal(t, "Old Street 1", before["address"])
	require.Equal(t, "New Street 2", after["address"])

	// Failed changes: nothing recorded.
	n := auditCount(t, h)
	status, _ = call(t, "POST", h.HTTPURL+"/api/v1/lockers", h.AdminToken, `{"id":"AU-2","model":"no-such-model"}`)
	require.Equal(t, 400, status)
	status, _ = call(t, "POST", h.HTTPURL+"/api/v1/lockers", h.AdminToken, `{"id":"AU-1","cells":2}`)
	require.Equal(t, 409, status)
	status, _ = call(t, "PATCH", h.HTTPURL+"/api/v1/lockers/AU-1", h.AdminToken, `{"time_zone":"Mars/Olympus"}`)
	require.Equal(t, 400, status)
	require.Equal(t, n, auditCount(t, h), "a rolled-back change leaves no record")
	require.Greater(t, n, base)

	// Desired configuration, by the admin token.
	status, body = call(t, "PUT", h.HTTPURL+"/api/v1/lockers/AU-1/desired", h.AdminToken, `{"config":{"display":"hello","hmac_secret":"s3cr3t"}}`)
	require.Equal(t, 200, status, body)
	p = getAudit(t, h, "object_type=desired&object_id=AU-1")
	require.Len(t, p.Records, 1)
	require.Equal(t, "token", p.Records[0].Actor.Kind)
	require.Equal(t, "admin", p.Records[0].Actor.Name)
	require.Equal(t, "127.0.0.1", p.Records[0].Actor.Addr)
	require.JSONEq(t, `{"version":1,"config":{"display":"hello","hmac_secret":"[redacted]"}}`, string(p.Records[0].After))
	require.NotContains(t, string(p.Records[0].After), "s3cr3t")
	// A stale If-Match changes nothing and records nothing.
	n = auditCount(t, h)
	req, err = http.NewRequest("PUT", h.HTTPURL+"/api/v1/lockers/AU-1/desired", strings.NewReader(`{"config":{"display":"stale"}}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	req.Header.Set("If-Match", `"0"`)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 412, resp.StatusCode)
	require.Equal(t, n, auditCount(t, h))

	// Enrolment token: created, its secret not in the log.
	status, body = call(t, "POST", h.HTTPURL+"/api/v1/lockers/AU-1/enroll-tokens", h.AdminToken, `{}`)
	require.Equal(t, 201, status, body)
	p = getAudit(t, h, "object_type=enroll_token")
	require.Len(t, p.Records, 1)
	require.NotContains(t, string(p.Records[0].After), body["token"].(string))

	// Delete revokes and deletes: a record each.
	status, _ = call(t, "DELETE", h.HTTPURL+"/api/v1/lockers/AU-1", h.AdminToken, "")
	require.Equal(t, 200, status)
	p = getAudit(t, h, "object_id=AU-1&action=delete")
	require.Len(t, p.Records, 1)
	require.Equal(t, "null", string(p.Records[0].After))

	// Only admins read the log.
	vpw := h.AddUser("vera", "viewer")
	v := h.Login("vera", vpw)
	resp, err = v.Client.Get(h.HTTPURL + "/api/v1/audit")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 403, resp.StatusCode)
}

// TestAuditIgnoresForwardedForWithoutTrustedProxy: anyone can send the header.
func TestAuditIgnoresForwardedForWithoutTrustedProxy(t *testing.T) {
	h := hubtest.Start(t)
	req, err := http.NewRequest("POST", h.HTTPURL+"/api/v1/lockers", strings.NewReader(`{"id":"AU-9","cells":1}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "203.0.113.66")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 201, resp.StatusCode)
	rid := resp.Header.Get("X-Request-ID")
	require.NotEmpty(t, rid)
	p := getAudit(t, h, "object_id=AU-9")
	require.Len(t, p.Records, 1)
	require.Equal(t, "127.0.0.1", p.Records[0].Actor.Addr)
	require.Equal(t, rid, p.Records[0].Actor.RequestID)
	require.Equal(t, "create", p.Records[0].Action)
	require.Equal(t, "null", string(p.Records[0].Before))
}

func TestAuditPagesAndCSV(t *testing.T) {
	h := hubtest.Start(t)
	csvBody := "id,cells,address\n"
	for i := range 12 {
		csvBody += fmt.Sprintf("IM-%02d,2,\"Street %d, Town\"\n", i, i)
	}
	status, body := send(t, "POST", h.HTTPURL+"/api/v1/lockers/import", h.AdminToken, "text/csv", csvBody)
	require.Equal(t, 201, status, body)

	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		p := getAudit(t, h, "object_type=locker&action=create&limit=5&cursor="+cursor)
		for _, r := range p.Records {
			require.False(t, seen[r.ObjectID], "no record twice")
			seen[r.ObjectID] = true
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	require.Len(t, seen, 12, "one record per imported locker")

	req, err := http.NewRequest("GET", h.HTTPURL+"/api/v1/audit?format=csv&object_type=locker", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/csv")
	require.Contains(t, resp.Header.Get("Content-Disposition"), "attachment")
	rows, err := csv.NewReader(resp.Body).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 13)
	require.Equal(t, "actor_name", rows[0][4])
	require.Equal(t, "IM-11", rows[1][10])
	require.Contains(t, rows[1][12], "Street 11, Town")

	status, body = call(t, "GET", h.HTTPURL+"/api/v1/audit?cursor=xyz&format=csv", h.AdminToken, "")
	require.Equal(t, 400, status, body)
	status, _ = call(t, "GET", h.HTTPURL+"/api/v1/audit?from=yesterday", h.AdminToken, "")
	require.Equal(t, 400, status)
	p := getAudit(t, h, "from=1h&actor=admin")
	require.NotEmpty(t, p.Records)
	p = getAudit(t, h, "to=1h")
	require.Empty(t, p.Records)
}
