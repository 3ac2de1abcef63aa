package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/pg"
)

// TestWebhookEndpointRoutes: a client sets its endpoint and sees the secret
// once; reading it again shows no secret; another client sees only its own
// (none) and cannot use the admin route; an admin reads it without the
// secret; the hub's own dispatcher delivers a signed webhook to it; every
// change is in the audit log without the secret.
func TestWebhookEndpointRoutes(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	a, tokA, err := h.App.Access.CreateClient(ctx, "shop-a", "dhl", []string{access.ScopeParcelsWrite})
	require.NoError(t, err)
	_, tokB, err := h.App.Access.CreateClient(ctx, "shop-b", "dhl", []string{access.ScopeParcelsRead})
	require.NoError(t, err)
	ca, cb := caller{token: tokA}, caller{token: tokB}

	var mu sync.Mutex
	var bodies []string
	var sigs []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, sigs = append(bodies, string(b)), append(sigs, r.Header.Get(outbox.SignatureHeader))
		mu.Unlock()
	}))
	t.Cleanup(recv.Close)

	status, m := ca.do(t, "PUT", h.HTTPURL+"/api/v1/webhook", `{"url":"ftp://x"}`)
	require.Equal(t, 400, status, m)
	require.Equal(t, "invalid", m["code"])
	status, m = ca.do(t, "GET", h.HTTPURL+"/api/v1/webhook", "")
	require.Equal(t, 404, status, m)

	status, m = ca.do(t, "PUT", h.HTTPURL+"/api/v1/webhook", `{"url":"`+recv.URL+`/hooks"}`)
	require.Equal(t, 200, status, m)
	secret, _ := m["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"), m)
	require.Equal(t, recv.URL+"/hooks", m["url"])

	status, m = ca.do(t, "GET", h.HTTPURL+"/api/v1/webhook", "")
	require.Equal(t, 200, status, m)
	require.NotContains(t, m, "secret")
	require.Equal(t, recv.URL+"/hooks", m["url"])

	status, m = cb.do(t, "GET", h.HTTPURL+"/api/v1/webhook", "")
	require.Equal(t, 404, status, "shop-b has no endpoint of its own: %v", m)
	status, m = cb.do(t, "GET", h.HTTPURL+"/api/v1/clients/shop-a/webhook", "")
	require.Equal(t, 403, status, m)

	data, _, err := h.Admin.Do(ctx, "GET", "/api/v1/clients/shop-a/webhook", nil)
	require.NoError(t, err)
	require.Contains(t, string(data), recv.URL)
	require.NotContains(t, string(data), secret)
	require.NotContains(t, string(data), `"secret"`)
	status, m = (caller{token: h.AdminToken}).do(t, "GET", h.HTTPURL+"/api/v1/webhook", "")
	require.Equal(t, 400, status, m)
	require.Equal(t, "not_a_client", m["code"])

	// The hub's dispatcher delivers to it, signed with the secret.
	require.NoError(t, pg.Tx(ctx, h.App.Pool, func(tx pgx.Tx) error {
		return outbox.Enqueue(ctx, tx, outbox.Message{ID: "evt-1", Channel: outbox.ChannelWebhook, ClientID: a.ID, Template: "parcel.deposited", Data: map[string]any{"parcel": "p-1"}})
	}))
	hubtest.Eventually(t, 10*time.Second, "webhook delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(bodies) == 1 })
	mu.Lock()
	require.NoError(t, outbox.Verify(secret, sigs[0], []byte(bodies[0]), time.Now(), 5*time.Minute))
	require.Contains(t, bodies[0], `"id":"evt-1"`)
	mu.Unlock()
	hubtest.Eventually(t, 5*time.Second, "counted", func() bool { return h.Metric("lockerhub_outbox_sent_total", "channel", "webhook") == 1 })

	audit, _, err := h.Admin.Do(ctx, "GET", "/api/v1/audit?object_type=webhook_endpoint", nil)
	require.NoError(t, err)
	require.Contains(t, string(audit), recv.URL)
	require.NotContains(t, string(audit), secret)

	status, _ = ca.do(t, "DELETE", h.HTTPURL+"/api/v1/webhook", "")
	require.Equal(t, 204, status)
	status, _ = ca.do(t, "GET", h.HTTPURL+"/api/v1/webhook", "")
	require.Equal(t, 404, status)
}
