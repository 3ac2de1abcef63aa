//go:build soak

package soak_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

// counter is an HTTP endpoint of a partner system (the shop's webhook
// receiver, the fiscal service): it answers 200 and counts each request by
// the value of one header (the stable id the hub deduplicates by).
type counter struct {
	srv    *httptest.Server
	header string
	mu     sync.Mutex
	seen   map[string]int
	reply  func(key string) string // the body of the answer; nil: empty
}

func newCounter(t *testing.T, header string, reply func(string) string) *counter {
	c := &counter{header: header, seen: map[string]int{}, reply: reply}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		key := r.Header.Get(c.header)
		c.mu.Lock()
		c.seen[key]++
		c.mu.Unlock()
		if c.reply != nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, c.reply(key))
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counter) has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key] > 0
}

func (c *counter) total() (keys, requests int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.seen {
		keys++
		requests += n
	}
	return keys, requests
}

// shop is a marketplace integrated through the partner API: its own token
// and carrier, a hundredth of the fleet with POS terminals for it, its
// webhook receiver, and the fiscal service that gets a receipt per payment.
type shop struct {
	api     *apiclient.Client
	lockers []*lockersim.Locker
	hooks   *counter // Lockerhub-Delivery → deliveries
	fiscal  *counter // Idempotency-Key (the payment) → requests

	mu      sync.Mutex
	done    []string // parcels picked up
	paid    int      // … of them paid at the locker
	missing []string // webhooks or receipts not delivered at the end

	parcelsDone, parcelsFailed atomic.Int64
}

// newShop makes the fiscal service; setup, once the hub runs, does the rest.
func newShop(t *testing.T) *shop {
	return &shop{
		fiscal: newCounter(t, "Idempotency-Key", func(key string) string { return fmt.Sprintf(`{"receipt_id":"R-%s"}`, key) }),
	}
}

// setup gives every 100th locker (from the 6th) a model with a POS
// terminal and the shop's carrier, makes the shop's API client and its
// webhook endpoint.
func (s *shop) setup(t *testing.T, ctx context.Context, admin *apiclient.Client, hubURL string, sim *lockersim.Sim, cells int) {
	var layout []apiclient.Cell
	for _, c := range lockersim.CellNames(cells) {
		layout = append(layout, apiclient.Cell{Name: c, Size: "M"})
	}
	_, err := admin.CreateModel(ctx, apiclient.NewModel{ID: "soak-paybox", Manufacturer: "Soak", Name: "PayBox",
		Layout: layout, Capabilities: []string{"keypad", "pos", "scanner"}})
	require.NoError(t, err)
	for i, l := range sim.Lockers() {
		if i%100 != 5 {
			continue
		}
		_, err := admin.UpdateLocker(ctx, l.ID(), map[string]any{"model": "soak-paybox", "carriers": []string{"soakshop"}})
		require.NoError(t, err)
		s.lockers = append(s.lockers, l)
	}
	require.NotEmpty(t, s.lockers, "a fleet of at least 6 lockers")
	c, err := admin.CreateAPIClient(ctx, "soakshop", "soakshop", []string{"parcels:read", "parcels:write"})
	require.NoError(t, err)
	s.api = apiclient.New(hubURL, c.Token)
	s.hooks = newCounter(t, "Lockerhub-Delivery", nil)
	require.NoError(t, s.api.JSON(ctx, http.MethodPut, "/api/v1/webhook", map[string]any{"url": s.hooks.srv.URL + "/lockerhub"}, nil))
}

// run: a delivery of the shop every 5 s: created with the shop's token (every
// second one with an amount due), dropped off by the courier scanning its
// label, collected by the recipient typing the SMS code (and paying at the
// locker's terminal).
func (s *shop) run(ctx context.Context, d *driver) {
	seq := 0
	every(ctx, 5*time.Second, func() {
		seq++
		if err := s.delivery(ctx, d, seq); err != nil {
			if ctx.Err() == nil {
				d.fail("shop delivery", err, &s.parcelsFailed)
			}
			return
		}
		s.parcelsDone.Add(1)
	})
}

func (s *shop) delivery(ctx context.Context, d *driver, seq int) error {
	l, release := d.takeFrom(s.lockers)
	defer release()
	ref := fmt.Sprintf("shop-%d", seq)
	phone := fmt.Sprintf("+4916%09d", seq)
	var due *apiclient.Money
	if seq%2 == 0 {
		due = &apiclient.Money{Amount: 1250, Currency: "EUR"}
	}
	p, err := s.api.CreateParcel(ctx, apiclient.NewParcel{Locker: l.ID(), Size: "M", Reference: ref, Barcode: "SHOP-" + ref,
		AmountDue: due, Recipient: apiclient.Recipient{Name: "Shopper", Phone: phone}}, ref)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	res, err := l.ScanBarcode(ctx, protocol.BarcodeCheckParams{Barcode: p.Barcode, Purpose: protocol.ScanDropoff})
	if err != nil {
		return fmt.Errorf("drop-off scan %s: %w", p.ID, err)
	}
	if res.Error != nil {
		return fmt.Errorf("drop-off scan %s: %s", p.ID, res.Error.Code)
	}
	if err := d.fillAndCollect(ctx, l, p.ID, res.Cell, phone); err != nil {
		return err
	}
	s.mu.Lock()
	s.done = append(s.done, p.ID)
	if due != nil {
		s.paid++
	}
	s.mu.Unlock()
	return nil
}

// check waits until every picked-up delivery's three webhooks (reserved,
// deposited, picked_up) reached the shop and every payment's receipt the
// fiscal service, and returns what is still missing after within.
func (s *shop) check(t *testing.T, admin *apiclient.Client, within time.Duration) []string {
	ctx := context.Background()
	s.mu.Lock()
	done, paid := append([]string(nil), s.done...), s.paid
	s.mu.Unlock()
	var missing []string
	err := poll(ctx, within, "webhooks and receipts delivered", func() bool {
		missing = missing[:0]
		for _, id := range done {
			for _, st := range []string{"reserved", "deposited", "picked_up"} {
				if !s.hooks.has(id + ":" + st) {
					missing = append(missing, "webhook "+id+":"+st)
				}
			}
		}
		if keys, _ := s.fiscal.total(); keys < paid {
			missing = append(missing, fmt.Sprintf("fiscal receipts: %d of %d", keys, paid))
		}
		return len(missing) == 0
	})
	hk, hr := s.hooks.total()
	fk, fr := s.fiscal.total()
	t.Logf("shop: %d deliveries picked up (%d paid at the locker, %d failed); %d webhooks received (%d requests), %d fiscal receipts (%d requests)",
		len(done), paid, s.parcelsFailed.Load(), hk, hr, fk, fr)
	if err != nil {
		if len(missing) > 10 {
			missing = append(missing[:10], fmt.Sprintf("… %d more", len(missing)-10))
		}
		return missing
	}
	return nil
}

// video: someone watches a random locker's camera for 30 s, every 90 s: the
// WHEP offer answered, a keyframe within 20 s, the picture running (at least
// a third of the clip's 15 frames a second), then the viewer leaves.
func (d *driver) video(ctx context.Context) {
	every(ctx, 90*time.Second, func() {
		ls := d.sim.Lockers()
		id := ls[mrand.IntN(len(ls))].ID()
		frames, err := d.watch(ctx, id, 30*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				d.fail("video "+id, err, &d.videoFailed)
			}
			return
		}
		d.videoDone.Add(1)
		d.videoFrames.Add(frames)
	})
}

func (d *driver) watch(ctx context.Context, id string, watch time.Duration) (int64, error) {
	v, err := hubtest.DialViewer()
	if err != nil {
		return 0, err
	}
	defer v.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	status, body, err := v.Post(pctx, d.hub.http+"/api/v1/lockers/"+id+"/video/whep", d.hub.token)
	cancel()
	if err != nil {
		return 0, err
	}
	if status != http.StatusCreated {
		var e struct{ Code, Message string }
		_ = json.Unmarshal([]byte(body), &e)
		return 0, fmt.Errorf("WHEP %d %s %s", status, e.Code, e.Message)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = v.Delete(dctx, d.hub.http, d.hub.token)
	}()
	if err := poll(ctx, 20*time.Second, "a keyframe", func() bool { return v.Keyframes.Load() > 0 }); err != nil {
		return 0, err
	}
	f0 := v.Frames.Load()
	sleepCtx(ctx, watch)
	frames := v.Frames.Load() - f0
	if ctx.Err() == nil && float64(frames) < 5*watch.Seconds() {
		return frames, fmt.Errorf("%d frames in %s", frames, watch)
	}
	return frames, nil
}
