package outbox_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/outbox"
)

// TestHTTPChannel: an http message's data is posted as the body, signed
// with the message's secret (unsigned without one); Deliveries reports the
// state; a bad URL is refused at Enqueue.
func TestHTTPChannel(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{} // delivery id → body
	sigOK := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get(outbox.DeliveryHeader)
		got[id] = string(body)
		sigOK[id] = outbox.Verify("k", r.Header.Get(outbox.SignatureHeader), body, time.Now(), time.Minute) == nil
	}))
	t.Cleanup(srv.Close)
	r := newRig(t, fastConfig())
	r.enqueue(outbox.Message{ID: "h-1", Channel: outbox.ChannelHTTP, To: srv.URL + "/hook", Template: "alarm", Secret: "k",
		Data: map[string]any{"text": "door forced"}})
	r.enqueue(outbox.Message{ID: "h-2", Channel: outbox.ChannelHTTP, To: srv.URL + "/chat", Template: "alarm", Data: map[string]any{"text": "hi"}})
	hubtest.Eventually(t, 10*time.Second, "both posted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	mu.Lock()
	var body map[string]any
	require.NoError(t, json.Unmarshal([]byte(got["h-1"]), &body))
	require.Equal(t, map[string]any{"text": "door forced"}, body, "the data is the body")
	require.True(t, sigOK["h-1"], "signed with the message's secret")
	require.False(t, sigOK["h-2"], "no secret: unsigned")
	mu.Unlock()
	hubtest.Eventually(t, 5*time.Second, "recorded as sent", func() bool {
		d, err := outbox.Deliveries(context.Background(), r.pool, []string{"h-1", "h-2", "nope"})
		require.NoError(t, err)
		return len(d) == 2 && d["h-1"].State == "sent" && d["h-2"].State == "sent"
	})
	err := outbox.Message{ID: "h-3", Channel: outbox.ChannelHTTP, To: "ftp://x/", Template: "alarm"}.Validate()
	require.ErrorIs(t, err, outbox.ErrInvalid)
}
