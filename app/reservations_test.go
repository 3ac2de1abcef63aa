package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/outbox"
)

// partner is a partner's webhook receiver: it checks signatures and counts
// deliveries per event id (a receiver deduplicates on it; here a second
// delivery of one id would show as a count of 2).
type partner struct {
	mu     sync.Mutex
	secret string
	byID   map[string]int
	types  map[string]string
	bad    int
}

func (p *partner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := outbox.Verify(p.secret, r.Header.Get(outbox.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
		p.bad++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev struct{ ID, Type string }
	_ = json.Unmarshal(body, &ev)
	p.byID[ev.ID]++
	p.types[ev.ID] = ev.Type
}

func (p *partner) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byID[id]
}

// clock is a parcels clock the test moves forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// TestReservationExpiry: a partner's reservations wait for the drop-off as
// long as its own setting says (set through the API); one not dropped off in
// time expires, frees its cell (the free-cell count is back) and the partner
// gets parcel.reservation_expired once. A deadline that passes while the
// hub is down expires once after the start, and a further restart neither
// expires it again nor sends the webhook twice. A reservation by a user
// gets the hub's default deadline.
func TestReservationExpiry(t *testing.T) {
	clk := &clock{}
	h := hubtest.Start(t, func(c *app.Config) {
		c.Parcels.Now = clk.Now
		c.Parcels.Sweep = 200 * time.Millisecond
		c.Outbox.PollInterval = 200 * time.Millisecond
	})
	ctx := context.Background()
	startLockers(t, h, "RX", 1)
	const lockerID = "RX00001"
	_, err := h.Admin.UpdateLocker(ctx, lockerID, map[string]any{"carriers": []string{"dhl"}})
	require.NoError(t, err)
	free := func() int { row, _ := h.App.Overview.Row(lockerID); return row.FreeCells["M"] }
	hubtest.Eventually(t, 10*time.Second, "4 free M cells", func() bool { return free() == 4 })

	_, tok, err := h.App.Access.CreateClient(ctx, "shop", "dhl", []string{access.ScopeParcelsRead, access.ScopeParcelsWrite})
	require.NoError(t, err)
	c, err := h.Admin.SetClientReservation(ctx, "shop", 2)
	require.NoError(t, err)
	require.Equal(t, 2, c.ReservationHours)
	_, err = h.Admin.SetClientReservation(ctx, "shop", 721)
	require.Error(t, err, "at most 30 days")

	p := &partner{byID: map[string]int{}, types: map[string]string{}}
	recv := httptest.NewServer(p)
	t.Cleanup(recv.Close)
	shop := apiclient.New(h.HTTPURL, tok)
	var ep struct{ Secret string }
	require.NoError(t, shop.JSON(ctx, "PUT", "/api/v1/webhook", map[string]string{"url": recv.URL}, &ep))
	p.mu.Lock()
	p.secret = ep.Secret
	p.mu.Unlock()

	newParcel := func(ref string) apiclient.Parcel {
		t.Helper()
		x, err := shop.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Reference: ref,
			Recipient: apiclient.Recipient{Name: "Erika", Phone: "+4915112345678"}}, ref)
		require.NoError(t, err)
		require.Equal(t, "reserved", x.State)
		require.NotNil(t, x.ReservedUntil)
		require.WithinDuration(t, x.CreatedAt.Add(2*time.Hour), *x.ReservedUntil, time.Second, "the partner's own deadline")
		return x
	}
	a := newParcel("order-a")
	hubtest.Eventually(t, 10*time.Second, "the cell taken", func() bool { return free() == 3 })

	// Within the deadline nothing happens.
	clk.advance(time.Hour)
	hubtest.Eventually(t, 10*time.Second, "parcel.reserved delivered", func() bool { return p.count(a.ID+":reserved") == 1 })
	got, err := shop.Parcel(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, "reserved", got.State)

	// Past it: expired, the cell free again, the partner told.
	clk.advance(90 * time.Minute)
	hubtest.Eventually(t, 10*time.Second, "reservation expired", func() bool {
		got, err = shop.Parcel(ctx, a.ID)
		require.NoError(t, err)
		return got.State == "reservation_expired"
	})
	hubtest.Eventually(t, 10*time.Second, "the cell free again", func() bool { return free() == 4 })
	hubtest.Eventually(t, 10*time.Second, "parcel.reservation_expired delivered", func() bool { return p.count(a.ID+":reservation_expired") == 1 })
	p.mu.Lock()
	require.Equal(t, "parcel.reservation_expired", p.types[a.ID+":reservation_expired"])
	p.mu.Unlock()
	last := got.History[len(got.History)-1]
	require.Equal(t, "reservation_expired", last.To)
	require.Equal(t, "sweep", last.Source)
	_, err = shop.CancelParcel(ctx, a.ID, "too late")
	require.Error(t, err, "an expired reservation cannot be cancelled")

	// A deadline that passes while the hub is down.
	b := newParcel("order-b")
	hubtest.Eventually(t, 10*time.Second, "parcel.reserved of b delivered", func() bool { return p.count(b.ID+":reserved") == 1 })
	clk.advance(3 * time.Hour)
	h.Restart()
	shop = apiclient.New(h.HTTPURL, tok)
	hubtest.Eventually(t, 15*time.Second, "b expired after the restart", func() bool {
		got, err = shop.Parcel(ctx, b.ID)
		return err == nil && got.State == "reservation_expired"
	})
	hubtest.Eventually(t, 10*time.Second, "b's webhook delivered", func() bool { return p.count(b.ID+":reservation_expired") == 1 })
	hubtest.Eventually(t, 30*time.Second, "the cells free after the restart", func() bool { return free() == 4 })

	// Another restart, and sweeps after it: nothing twice.
	h.Restart()
	shop = apiclient.New(h.HTTPURL, tok)
	sweeps := time.Now().Add(2 * time.Second) // ten sweeps
	hubtest.Eventually(t, 10*time.Second, "ten sweeps after the restart", func() bool { return time.Now().After(sweeps) })
	for _, x := range []apiclient.Parcel{a, b} {
		got, err := shop.Parcel(ctx, x.ID)
		require.NoError(t, err)
		n := 0
		for _, st := range got.History {
			if st.To == "reservation_expired" && st.From == "reserved" {
				n++
			}
		}
		require.Equal(t, 1, n, "one expiry in %s's history: %+v", x.ID, got.History)
		require.Equal(t, 1, p.count(x.ID+":reservation_expired"), "one webhook of %s's expiry", x.ID)
	}
	var ds []apiclient.WebhookDelivery
	ds, err = h.Admin.WebhookDeliveries(ctx, "shop", apiclient.DeliveryFilter{Event: "parcel.reservation_expired"})
	require.NoError(t, err)
	require.Len(t, ds, 2)
	p.mu.Lock()
	require.Zero(t, p.bad)
	p.mu.Unlock()

	// A user's reservation gets the hub's default (48 h).
	u, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Carrier: "dhl",
		Recipient: apiclient.Recipient{Phone: "+4915112345678"}}, "")
	require.NoError(t, err)
	require.NotNil(t, u.ReservedUntil)
	require.WithinDuration(t, u.CreatedAt.Add(48*time.Hour), *u.ReservedUntil, time.Second)
}
