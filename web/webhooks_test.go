package web_test

import (
	"context"
	"encoding/json"
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
	"github.com/lockerhub/lockerhub/app"
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

// TestWebhookDeliveryLogAndReplay: a partner's endpoint fails once (500),
// then takes the webhook: the partner's delivery log shows both attempts
// (status, duration, the next try after the failure), filtered as asked; a
// replay sends the same event id again and is logged as replay 1 and
// audited; another client sees and replays none of it, a delivery still
// pending is not replayed.
func TestWebhookDeliveryLogAndReplay(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) {
		c.Outbox.PollInterval = 200 * time.Millisecond
		c.Outbox.BackoffMin, c.Outbox.BackoffMax = 200*time.Millisecond, 400*time.Millisecond
	})
	ctx := context.Background()
	a, tokA, err := h.App.Access.CreateClient(ctx, "shop-a", "dhl", []string{access.ScopeParcelsWrite})
	require.NoError(t, err)
	_, tokB, err := h.App.Access.CreateClient(ctx, "shop-b", "dhl", []string{access.ScopeParcelsRead})
	require.NoError(t, err)
	ca, cb := caller{token: tokA}, caller{token: tokB}

	var mu sync.Mutex
	var got []string // Lockerhub-Delivery of each POST
	var bodies []string
	fail := map[string]bool{"evt-1": true} // its first try fails
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		id := r.Header.Get(outbox.DeliveryHeader)
		mu.Lock()
		defer mu.Unlock()
		got, bodies = append(got, id), append(bodies, string(b))
		if fail[id] {
			fail[id] = false
			http.Error(w, "busy", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(recv.Close)
	status, m := ca.do(t, "PUT", h.HTTPURL+"/api/v1/webhook", `{"url":"`+recv.URL+`/hooks"}`)
	require.Equal(t, 200, status, m)
	require.Equal(t, "json", m["format"])
	status, m = ca.do(t, "PUT", h.HTTPURL+"/api/v1/webhook", `{"url":"`+recv.URL+`/hooks","format":"edifact"}`)
	require.Equal(t, 400, status, m)

	require.NoError(t, pg.Tx(ctx, h.App.Pool, func(tx pgx.Tx) error {
		return outbox.Enqueue(ctx, tx, outbox.Message{ID: "evt-1", Channel: outbox.ChannelWebhook, ClientID: a.ID, Template: "parcel.deposited",
			Data: map[string]any{"parcel": "p-1"}, About: "p-1"})
	}))
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, g := range got {
			if g == id {
				n++
			}
		}
		return n
	}
	type logged struct {
		Deliveries []outbox.WebhookDelivery `json:"deliveries"`
	}
	list := func(c caller, path string) logged {
		t.Helper()
		req, err := http.NewRequest("GET", h.HTTPURL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		var l logged
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
		return l
	}
	var l logged
	hubtest.Eventually(t, 15*time.Second, "evt-1 sent after one failure", func() bool {
		l = list(ca, "/api/v1/webhook/deliveries")
		return len(l.Deliveries) == 1 && l.Deliveries[0].State == "sent"
	})
	d := l.Deliveries[0]
	require.Equal(t, "evt-1", d.ID)
	require.Equal(t, "parcel.deposited", d.Event)
	require.Equal(t, "p-1", d.Parcel)
	require.Len(t, d.Log, 2, "%+v", d.Log)
	require.Equal(t, "retry", d.Log[0].Outcome)
	require.Equal(t, 500, d.Log[0].HTTPStatus)
	require.Contains(t, d.Log[0].Error, "HTTP 500")
	require.NotNil(t, d.Log[0].NextTry, "a failed attempt says when the next one is due")
	require.True(t, d.Log[0].NextTry.After(d.Log[0].At))
	require.Equal(t, "sent", d.Log[1].Outcome)
	require.Equal(t, 200, d.Log[1].HTTPStatus)
	require.Equal(t, []int{1, 2}, []int{d.Log[0].Attempt, d.Log[1].Attempt})
	require.Nil(t, d.Log[1].NextTry)

	// The admin reads the same log; filters narrow it.
	data, _, err := h.Admin.Do(ctx, "GET", "/api/v1/clients/shop-a/webhook-deliveries?state=sent&event=parcel.deposited&since=1h", nil)
	require.NoError(t, err)
	require.Contains(t, string(data), `"id": "evt-1"`)
	require.Contains(t, string(data), `"http_status": 500`)
	require.Empty(t, list(ca, "/api/v1/webhook/deliveries?state=failed").Deliveries)
	require.Empty(t, list(ca, "/api/v1/webhook/deliveries?parcel=p-2").Deliveries)
	require.Empty(t, list(cb, "/api/v1/webhook/deliveries").Deliveries, "shop-b has no deliveries")
	status, m = ca.do(t, "GET", h.HTTPURL+"/api/v1/webhook/deliveries?state=lost", "")
	require.Equal(t, 400, status, m)
	status, m = ca.do(t, "GET", h.HTTPURL+"/api/v1/webhook/deliveries?colour=red", "")
	require.Equal(t, 400, status, m)
	status, m = cb.do(t, "GET", h.HTTPURL+"/api/v1/clients/shop-a/webhook-deliveries", "")
	require.Equal(t, 403, status, m)

	// Replay: the same id again, signed anew, logged as replay 1.
	status, m = cb.do(t, "POST", h.HTTPURL+"/api/v1/webhook/deliveries/evt-1/replay", "")
	require.Equal(t, 404, status, "not shop-b's: %v", m)
	status, m = ca.do(t, "POST", h.HTTPURL+"/api/v1/webhook/deliveries/nope/replay", "")
	require.Equal(t, 404, status, m)
	status, m = ca.do(t, "POST", h.HTTPURL+"/api/v1/webhook/deliveries/evt-1/replay", "")
	require.Equal(t, 202, status, m)
	require.Equal(t, "pending", m["state"])
	hubtest.Eventually(t, 10*time.Second, "evt-1 delivered again", func() bool { return count("evt-1") == 3 })
	mu.Lock()
	require.Equal(t, bodies[1], bodies[2], "the replay is the same event, byte for byte")
	mu.Unlock()
	hubtest.Eventually(t, 10*time.Second, "the replay logged", func() bool {
		d = list(ca, "/api/v1/webhook/deliveries").Deliveries[0]
		return d.State == "sent" && len(d.Log) == 3
	})
	require.Equal(t, 1, d.Replays)
	require.Equal(t, 1, d.Log[2].Replay)
	require.Equal(t, 1, d.Log[2].Attempt)
	require.Equal(t, "sent", d.Log[2].Outcome)

	// The admin replays it too; both are in the audit log.
	_, _, err = h.Admin.Do(ctx, "POST", "/api/v1/clients/shop-a/webhook-deliveries/evt-1/replay", nil)
	require.NoError(t, err)
	hubtest.Eventually(t, 10*time.Second, "evt-1 delivered a fourth time", func() bool { return count("evt-1") == 4 })
	data, _, err = h.Admin.Do(ctx, "GET", "/api/v1/audit?object_type=webhook_delivery", nil)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(data), `"action": "replay"`), string(data))
	require.Contains(t, string(data), `"name": "shop-a"`)

	// A delivery waiting for its next try (here: shop-b has no endpoint) is
	// tried now; one being sent at this moment is refused.
	b, err := h.App.Access.Clients(ctx)
	require.NoError(t, err)
	var bID int64
	for _, c := range b {
		if c.Name == "shop-b" {
			bID = c.ID
		}
	}
	require.NoError(t, pg.Tx(ctx, h.App.Pool, func(tx pgx.Tx) error {
		return outbox.Enqueue(ctx, tx, outbox.Message{ID: "evt-2", Channel: outbox.ChannelWebhook, ClientID: bID, Template: "parcel.reserved"})
	}))
	hubtest.Eventually(t, 10*time.Second, "evt-2 waits for an endpoint", func() bool {
		ds := list(cb, "/api/v1/webhook/deliveries").Deliveries
		return len(ds) == 1 && len(ds[0].Log) == 1 && ds[0].Log[0].Outcome == "waiting"
	})
	status, m = cb.do(t, "POST", h.HTTPURL+"/api/v1/webhook/deliveries/evt-2/replay", "")
	require.Equal(t, 202, status, m)
	hubtest.Eventually(t, 10*time.Second, "evt-2 tried again at once", func() bool {
		ds := list(cb, "/api/v1/webhook/deliveries").Deliveries
		return len(ds[0].Log) == 2 && ds[0].Log[1].Outcome == "waiting"
	})
	require.Zero(t, list(cb, "/api/v1/webhook/deliveries").Deliveries[0].Replays, "tried now, not replayed")
	// As a dispatcher's claim leaves it: pending, leased, no attempt logged yet.
	_, err = h.App.Pool.Exec(ctx, `INSERT INTO outbox_messages (id, channel, client_id, template, attempts, next_attempt_at)
		VALUES ('evt-3', 'webhook', $1, 'parcel.reserved', 1, now() + interval '1 minute')`, a.ID)
	require.NoError(t, err)
	status, m = ca.do(t, "POST", h.HTTPURL+"/api/v1/webhook/deliveries/evt-3/replay", "")
	require.Equal(t, 409, status, m)
	require.Equal(t, "conflict", m["code"])
	require.Equal(t, 4, count("evt-1"), "nothing else sent")
}
