package parcels_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/protocol"
	"github.com/lockerhub/lockerhub/web"
)

// testKeys is a CodeKeys of fixed secrets: sha256 of the locker ID.
type testKeys struct{}

func (testKeys) Key(_ context.Context, lockerID string) ([]byte, error) {
	s := sha256.Sum256([]byte("test-secret:" + lockerID))
	return s[:], nil
}

// outbox records the messages enqueued in committed transactions.
type outbox struct {
	mu   sync.Mutex
	msgs []parcels.OutMessage
}

func (o *outbox) Enqueue(_ context.Context, tx pgx.Tx, m parcels.OutMessage) error {
	// Kept only if the transaction commits, as the real outbox's row is.
	_, err := tx.Exec(context.Background(), `SELECT 1`)
	if err != nil {
		return err
	}
	o.mu.Lock()
	o.msgs = append(o.msgs, m)
	o.mu.Unlock()
	return nil
}

func (o *outbox) find(id string) (parcels.OutMessage, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.msgs {
		if m.ID == id {
			return m, true
		}
	}
	return parcels.OutMessage{}, false
}

func (o *outbox) count(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, m := range o.msgs {
		if m.ID == id {
			n++
		}
	}
	return n
}

// clock is the parcels' clock, moved on by tests.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

type env struct {
	h   *hubtest.Hub
	box *outbox
	clk *clock
	sim *lockersim.Sim
}

func start(t *testing.T, cells int) env {
	t.Helper()
	e := env{box: &outbox{}, clk: &clock{}}
	e.h = hubtest.Start(t, func(c *app.Config) {
		c.Parcels.Keys = testKeys{}
		c.Parcels.Outbox = e.box
		c.Parcels.Now = e.clk.Now
		c.Parcels.Sweep = 50 * time.Millisecond
		c.Commands.ConfirmWithin = 2 * time.Second
		c.Commands.ResendAfter = 500 * time.Millisecond
	})
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = e.h.MQTTAddr, e.h.DeviceURL, e.h.HTTPURL, e.h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = 1, cells, "P"
	cfg.Ramp, cfg.StatusEvery = 0, 0
	cfg.DoorClose = time.Hour   // doors stay open until the test closes them
	cfg.Control = "127.0.0.1:0" // the control API, as a person at the locker uses it
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { cancel(); sim.Stop() })
	e.sim = sim
	hubtest.Eventually(t, 30*time.Second, "locker online with its cells reported", func() bool {
		row, ok := e.h.App.Overview.Row(lockerID)
		return e.h.App.Broker.Online(lockerID) && ok && row.FreeCells["M"] == cells
	})
	_, err = e.h.Admin.UpdateLocker(context.Background(), lockerID, map[string]any{"carriers": []string{"dhl"}})
	require.NoError(t, err)
	return e
}

const lockerID = "P00001"

func (e env) locker() *lockersim.Locker { return e.sim.Locker(lockerID) }

func (e env) parcel(t *testing.T, id string) apiclient.Parcel {
	t.Helper()
	p, err := e.h.Admin.Parcel(context.Background(), id)
	require.NoError(t, err)
	return p
}

func (e env) waitState(t *testing.T, id, state string) apiclient.Parcel {
	t.Helper()
	var p apiclient.Parcel
	hubtest.Eventually(t, 10*time.Second, id+" "+state, func() bool {
		p = e.parcel(t, id)
		return p.State == state
	})
	return p
}

func (e env) waitDoor(t *testing.T, cell, door string) {
	t.Helper()
	hubtest.Eventually(t, 10*time.Second, cell+" "+door+" at the locker", func() bool {
		return e.locker().View(true).Cells[cell].Door == door
	})
}

func (e env) free(t *testing.T) int {
	row, ok := e.h.App.Overview.Row(lockerID)
	require.True(t, ok)
	return row.FreeCells["M"]
}

// deposit drops a parcel off: the courier opens the cell, puts it in and closes.
func (e env) deposit(t *testing.T, c *apiclient.Client, id string) apiclient.Parcel {
	t.Helper()
	ctx := context.Background()
	open, err := c.DropoffParcel(ctx, id)
	require.NoError(t, err)
	again, err := c.DropoffParcel(ctx, id)
	require.NoError(t, err)
	require.Equal(t, open.Command.ID, again.Command.ID, "a repeated drop-off is the same command")
	cell := open.Parcel.Cell
	e.waitDoor(t, cell, protocol.DoorOpen)
	require.NoError(t, e.locker().SetOccupied(cell, true))
	require.NoError(t, e.locker().CloseDoor(cell))
	return e.waitState(t, id, parcels.StateDeposited)
}

func codeOf(t *testing.T, p apiclient.Parcel) string {
	t.Helper()
	key, _ := testKeys{}.Key(context.Background(), p.LockerID)
	code, err := protocol.PickupCode(key, protocol.PickupCodeInput{LockerID: p.LockerID, ParcelID: p.ID, Cell: p.Cell,
		ValidFrom: p.DepositedAt.Truncate(time.Second), ValidTo: p.ExpiresAt.Truncate(time.Second)})
	require.NoError(t, err)
	return code
}

func checkCode(t *testing.T, e env, askID, code string) (protocol.CodeCheckResult, *protocol.Error) {
	t.Helper()
	params, _ := json.Marshal(protocol.CodeCheckParams{Code: code})
	raw, perr := e.h.App.Parcels.CheckCode(context.Background(), lockerID, askID, params)
	var res protocol.CodeCheckResult
	if perr == nil {
		require.NoError(t, json.Unmarshal(raw, &res))
		require.Contains(t, string(raw), `"charge":null`)
	}
	return res, perr
}

// TestParcelLifecycleOnline: create → drop-off → deposited (code sent) →
// code.check → door opens once per ask → taken out, closed → picked_up; the
// cell is free again, the code appears in no API answer nor audit record.
func TestParcelLifecycleOnline(t *testing.T) {
	e := start(t, 4)
	ctx := context.Background()
	_, tok, err := e.h.App.Access.CreateClient(ctx, "shop", "dhl", []string{access.ScopeParcelsRead, access.ScopeParcelsWrite})
	require.NoError(t, err)
	shop := apiclient.New(e.h.HTTPURL, tok)

	p, err := shop.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Reference: "order-1",
		Recipient: apiclient.Recipient{Name: "Ann", Phone: "+49 170 1234567", Email: "ann@example.com", Language: "de-AT"}}, "order-1")
	require.NoError(t, err)
	require.Equal(t, parcels.StateReserved, p.State)
	require.Equal(t, "de-AT", p.Recipient.Language)
	_, err = shop.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M",
		Recipient: apiclient.Recipient{Phone: "+49 170 1234567", Language: "German"}}, "")
	require.True(t, apiclient.IsCode(err, "invalid"), "a language that is not BCP 47: %v", err)
	require.Equal(t, "dhl", p.Carrier)
	require.Equal(t, 72, p.StorageHours)
	require.True(t, strings.HasPrefix(p.ID, "p-"))
	hubtest.Eventually(t, 5*time.Second, "reserved cell not free", func() bool { return e.free(t) == 3 })
	_, ok := e.box.find(p.ID + ":reserved")
	require.True(t, ok, "webhook parcel.reserved")

	dep := e.deposit(t, e.h.Admin, p.ID)
	require.NotNil(t, dep.DepositedAt)
	require.WithinDuration(t, dep.DepositedAt.Add(72*time.Hour), *dep.ExpiresAt, time.Second)
	code := codeOf(t, dep)
	sms, ok := e.box.find(p.ID + ":parcel_ready:sms")
	require.True(t, ok, "SMS with the code")
	require.Equal(t, code, sms.Data["code"])
	require.Equal(t, "+49 170 1234567", sms.To)
	require.Equal(t, "dhl", sms.Carrier, "the carrier and language choose the template")
	require.Equal(t, "de-AT", sms.Language)
	require.Equal(t, p.ID, sms.Parcel)
	mail, ok := e.box.find(p.ID + ":parcel_ready:email")
	require.True(t, ok)
	require.Equal(t, code, mail.Data["code"])
	hook, ok := e.box.find(p.ID + ":deposited")
	require.True(t, ok)
	require.Equal(t, parcels.ChannelWebhook, hook.Channel)
	require.NotZero(t, hook.ClientID)
	require.Equal(t, "parcel.deposited", hook.Template)

	opensBefore := e.locker().View(false).CommandOpens
	res, perr := checkCode(t, e, "a-1", code)
	require.Nil(t, perr)
	require.Equal(t, p.Cell, res.Cell)
	require.Equal(t, p.ID, res.Parcel)
	e.waitDoor(t, p.Cell, protocol.DoorOpen)
	// The ask again (re-delivered): the same answer, no second opening.
	res2, perr := checkCode(t, e, "a-1", code)
	require.Nil(t, perr)
	require.Equal(t, res, res2)
	require.NoError(t, e.locker().SetOccupied(p.Cell, false))
	require.NoError(t, e.locker().CloseDoor(p.Cell))
	up := e.waitState(t, p.ID, parcels.StatePickedUp)
	require.NotNil(t, up.PickedUpAt)
	require.EqualValues(t, opensBefore+1, e.locker().View(false).CommandOpens, "one opening for one ask")
	hubtest.Eventually(t, 5*time.Second, "cell free again", func() bool { return e.free(t) == 4 })
	_, ok = e.box.find(p.ID + ":picked_up")
	require.True(t, ok)
	picked, ok := e.box.find(p.ID + ":parcel_picked_up:sms")
	require.True(t, ok, "the recipient is told of the pickup")
	require.NotEmpty(t, picked.Data["picked_up"])

	var states []string
	for _, st := range up.History {
		states = append(states, st.To)
	}
	require.Equal(t, []string{"reserved", "reserved", "deposited", "deposited", "picked_up"}, states)

	// A used code opens nothing any more.
	_, perr = checkCode(t, e, "a-2", code)
	require.NotNil(t, perr)
	require.Equal(t, protocol.ErrCodeWrongCode, perr.Code)

	// The code is in no API answer, list or audit record.
	for _, path := range []string{"/api/v1/parcels/" + p.ID, "/api/v1/parcels", "/api/v1/audit?limit=1000", "/api/v1/commands"} {
		data, _, err := e.h.Admin.Do(ctx, "GET", path, nil)
		require.NoError(t, err, path)
		require.NotContains(t, string(data), code, path)
	}
	var n int
	require.NoError(t, e.h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE before::text LIKE '%'||$1||'%' OR after::text LIKE '%'||$1||'%'`, code).Scan(&n))
	require.Zero(t, n)
	require.Greater(t, countAudit(t, e, p.ID), 3, "every change audited")
	require.NotContains(t, e.h.Log.String(), code, "nor in the log")
}

func countAudit(t *testing.T, e env, id string) int {
	var n int
	require.NoError(t, e.h.App.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE object_type = 'parcel' AND object_id = $1`, id).Scan(&n))
	return n
}

// TestLastFreeCell: two creates at once for the last free cell: one gets it,
// the other 409 no_free_cell; a repeated idempotency key returns the first
// parcel; bad input is refused with its code.
func TestLastFreeCell(t *testing.T) {
	e := start(t, 2)
	ctx := context.Background()
	r := apiclient.Recipient{Phone: "+4917000000"}
	first, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: r}, "k1")
	require.NoError(t, err)
	again, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: r}, "k1")
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID)
	require.True(t, again.Replayed)
	_, err = e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "L", Recipient: r}, "k1")
	require.True(t, apiclient.IsCode(err, "idempotency_conflict"), "the key with another size: %v", err)

	var wg sync.WaitGroup
	got := make([]apiclient.Parcel, 2)
	errs := make([]error, 2)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: r}, fmt.Sprintf("race-%d", i))
		}()
	}
	wg.Wait()
	ok, full := 0, 0
	for i := range got {
		switch {
		case errs[i] == nil:
			ok++
			require.NotEqual(t, first.Cell, got[i].Cell)
		case apiclient.IsCode(errs[i], "no_free_cell"):
			full++
			var ae *apiclient.Error
			require.ErrorAs(t, errs[i], &ae)
			require.Equal(t, 409, ae.Status)
		default:
			t.Fatalf("unexpected error: %v", errs[i])
		}
	}
	require.Equal(t, 1, ok)
	require.Equal(t, 1, full)
	page, err := e.h.Admin.Parcels(ctx, apiclient.ParcelFilter{Locker: lockerID, State: "reserved"})
	require.NoError(t, err)
	require.Equal(t, 2, page.Total)

	for _, tc := range []struct {
		in   apiclient.NewParcel
		code string
	}{
		{apiclient.NewParcel{Locker: lockerID, Size: "XXL", Recipient: r}, "invalid"},
		{apiclient.NewParcel{Locker: "nowhere", Size: "M", Recipient: r}, "not_found"},
		{apiclient.NewParcel{Locker: lockerID, Size: "S", Recipient: r}, "no_free_cell"},
		{apiclient.NewParcel{Locker: lockerID, Size: "M"}, "invalid"},
		{apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Email: "not a mail"}}, "invalid"},
		{apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: r, StorageHours: 100000}, "invalid"},
	} {
		_, err := e.h.Admin.CreateParcel(ctx, tc.in, "")
		require.True(t, apiclient.IsCode(err, tc.code), "%+v: %v", tc.in, err)
	}
	_, _, err = e.h.Admin.Do(ctx, "POST", "/api/v1/parcels", []byte(`{"locker":"`+lockerID+`","size":"M","recipient":{"phone":"+4917000000"},"x":1}`))
	require.True(t, apiclient.IsCode(err, "bad_json"), "%v", err)
	_, _, err = e.h.Admin.Do(ctx, "POST", "/api/v1/parcels", []byte(`{"reference":"`+strings.Repeat("x", 2<<20)+`"}`))
	require.True(t, apiclient.IsCode(err, "too_large"), "%v", err)
}

// TestCancelReleasesCell: a reserved parcel cancelled frees its cell; a
// deposited one cancelled is marked for return and collected by the courier.
func TestCancelReleasesCell(t *testing.T) {
	e := start(t, 3)
	ctx := context.Background()
	r := apiclient.Recipient{Email: "bob@example.com"}
	p, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: r}, "")
	require.NoError(t, err)
	hubtest.Eventually(t, 5*time.Second, "reserved", func() bool { return e.free(t) == 2 })
	c, err := e.h.Admin.CancelParcel(ctx, p.ID, "customer changed mind")
	require.NoError(t, err)
	require.Equal(t, parcels.StateCancelled, c.State)
	require.False(t, c.ToReturn)
	require.Equal(t, "customer changed mind", c.CancelReason)
	hubtest.Eventually(t, 5*time.Second, "released", func() bool { return e.free(t) == 3 })
	_, err = e.h.Admin.CancelParcel(ctx, p.ID, "")
	require.True(t, apiclient.IsCode(err, "conflict"), "%v", err)
	_, err = e.h.Admin.DropoffParcel(ctx, p.ID)
	require.True(t, apiclient.IsCode(err, "conflict"), "%v", err)

	// The released cell can be reserved again.
	p2, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: r}, "")
	require.NoError(t, err)
	dep := e.deposit(t, e.h.Admin, p2.ID)
	c2, err := e.h.Admin.CancelParcel(ctx, dep.ID, "wrong address")
	require.NoError(t, err)
	require.Equal(t, parcels.StateCancelled, c2.State)
	require.True(t, c2.ToReturn)
	_, perr := checkCode(t, e, "a-c", codeOf(t, dep))
	require.NotNil(t, perr, "a cancelled parcel's code opens nothing")
	e.collect(t, dep)
}

func (e env) collect(t *testing.T, p apiclient.Parcel) {
	t.Helper()
	open, err := e.h.Admin.CollectParcel(context.Background(), p.ID)
	require.NoError(t, err)
	require.Equal(t, "cell.open", open.Command.Method)
	e.waitDoor(t, p.Cell, protocol.DoorOpen)
	require.NoError(t, e.locker().SetOccupied(p.Cell, false))
	require.NoError(t, e.locker().CloseDoor(p.Cell))
	ret := e.waitState(t, p.ID, parcels.StateReturned)
	require.NotNil(t, ret.ReturnedAt)
	hubtest.Eventually(t, 5*time.Second, "cell free after the return", func() bool { return e.free(t) == 3 })
}

// TestExpiry: a reminder 24 h before the storage period ends (once), then
// expired (marked for return, webhook, notification), then collected.
func TestExpiry(t *testing.T) {
	e := start(t, 3)
	ctx := context.Background()
	_, tok, err := e.h.App.Access.CreateClient(ctx, "shop", "dhl", []string{access.ScopeParcelsRead, access.ScopeParcelsWrite})
	require.NoError(t, err)
	shop := apiclient.New(e.h.HTTPURL, tok)
	p, err := shop.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", StorageHours: 48,
		Recipient: apiclient.Recipient{Phone: "+4917000001"}}, "")
	require.NoError(t, err)
	dep := e.deposit(t, e.h.Admin, p.ID)
	require.WithinDuration(t, dep.DepositedAt.Add(48*time.Hour), *dep.ExpiresAt, time.Second)

	e.clk.Advance(25 * time.Hour)
	hubtest.Eventually(t, 5*time.Second, "reminder", func() bool {
		_, ok := e.box.find(p.ID + ":pickup_reminder:sms")
		return ok
	})
	rem, _ := e.box.find(p.ID + ":pickup_reminder:sms")
	require.Equal(t, codeOf(t, dep), rem.Data["code"])
	require.Equal(t, parcels.StateDeposited, e.parcel(t, p.ID).State)

	e.clk.Advance(24 * time.Hour)
	exp := e.waitState(t, p.ID, parcels.StateExpired)
	require.True(t, exp.ToReturn)
	require.NotNil(t, exp.ExpiredAt)
	_, ok := e.box.find(p.ID + ":expired")
	require.True(t, ok, "webhook parcel.expired")
	_, ok = e.box.find(p.ID + ":parcel_expired:sms")
	require.True(t, ok)
	require.Equal(t, 1, e.box.count(p.ID+":pickup_reminder:sms"), "one reminder")
	_, perr := checkCode(t, e, "a-x", codeOf(t, dep))
	require.NotNil(t, perr, "an expired parcel's code opens nothing")

	e.collect(t, dep)
	_, ok = e.box.find(p.ID + ":returned")
	require.True(t, ok)
}

// TestWrongCodesRateLimited: five wrong codes, then even the right one is
// refused for a while; counted in a metric and logged without the code.
func TestWrongCodesRateLimited(t *testing.T) {
	e := start(t, 2)
	ctx := context.Background()
	p, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000002"}}, "")
	require.NoError(t, err)
	dep := e.deposit(t, e.h.Admin, p.ID)
	code := codeOf(t, dep)
	wrong := fmt.Sprintf("%08d", (int(code[0]-'0')+1)%10*10000000+1234567)
	for i := range 5 {
		_, perr := checkCode(t, e, fmt.Sprintf("w-%d", i), wrong)
		require.NotNil(t, perr)
		require.Equal(t, protocol.ErrCodeWrongCode, perr.Code)
	}
	_, perr := checkCode(t, e, "w-5", code)
	require.NotNil(t, perr)
	require.Equal(t, protocol.ErrCodeRateLimited, perr.Code)
	require.EqualValues(t, 1, e.h.Metric("lockerhub_parcels_code_lockouts_total"))
	require.EqualValues(t, 5, e.h.Metric("lockerhub_parcels_code_checks_total", "result", "wrong"))
	require.Contains(t, e.h.Log.String(), "too many wrong codes")
	require.NotContains(t, e.h.Log.String(), wrong)

	e.clk.Advance(6 * time.Minute)
	res, perr := checkCode(t, e, "w-6", code)
	require.Nil(t, perr, "the window passed")
	require.Equal(t, dep.Cell, res.Cell)
}

// TestCarrierScoping: another carrier's courier and API client get 404 for
// the parcel and do not see it in lists; the carrier's courier drops off.
func TestCarrierScoping(t *testing.T) {
	e := start(t, 2)
	ctx := context.Background()
	p, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Carrier: "dhl", Recipient: apiclient.Recipient{Phone: "+4917000003"}}, "")
	require.NoError(t, err)
	couriers := map[string]hubtest.Session{}
	for _, u := range []struct{ name, carrier string }{{"ups-courier", "ups"}, {"dhl-courier", "dhl"}} {
		pw := access.RandomPassword()
		_, err := e.h.App.Access.AddUser(ctx, access.NewUser{Username: u.name, Password: pw, Role: access.RoleCourier, Carrier: u.carrier})
		require.NoError(t, err)
		couriers[u.carrier] = e.h.Login(u.name, pw)
	}
	_, upsTok, err := e.h.App.Access.CreateClient(ctx, "ups-shop", "ups", []string{access.ScopeParcelsRead, access.ScopeParcelsWrite})
	require.NoError(t, err)
	ups := apiclient.New(e.h.HTTPURL, upsTok)
	// Another client of the same carrier sees the parcels it created only.
	_, dhlTok, err := e.h.App.Access.CreateClient(ctx, "dhl-shop", "dhl", []string{access.ScopeParcelsRead, access.ScopeParcelsWrite})
	require.NoError(t, err)
	dhlShop := apiclient.New(e.h.HTTPURL, dhlTok)
	_, err = dhlShop.Parcel(ctx, p.ID)
	require.True(t, apiclient.IsCode(err, "not_found"), "%v", err)
	own, err := dhlShop.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000003"}}, "")
	require.NoError(t, err)
	page, err := dhlShop.Parcels(ctx, apiclient.ParcelFilter{})
	require.NoError(t, err)
	require.Len(t, page.Parcels, 1)
	require.Equal(t, own.ID, page.Parcels[0].ID)
	_, err = dhlShop.CancelParcel(ctx, own.ID, "")
	require.NoError(t, err)
	_, err = ups.Parcel(ctx, p.ID)
	require.True(t, apiclient.IsCode(err, "not_found"), "%v", err)
	_, err = ups.CancelParcel(ctx, p.ID, "")
	require.True(t, apiclient.IsCode(err, "not_found"), "%v", err)
	page, err = ups.Parcels(ctx, apiclient.ParcelFilter{})
	require.NoError(t, err)
	require.Empty(t, page.Parcels)
	page, err = ups.Parcels(ctx, apiclient.ParcelFilter{Carrier: "dhl"})
	require.NoError(t, err)
	require.Empty(t, page.Parcels)
	_, err = ups.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000003"}}, "")
	require.True(t, apiclient.IsCode(err, "not_found"), "the locker is dhl's: %v", err)

	for _, path := range []string{"/api/v1/parcels/" + p.ID, "/api/v1/parcels/" + p.ID + "/dropoff", "/api/v1/parcels/" + p.ID + "/cancel"} {
		method := "POST"
		if !strings.Contains(path, "/dropoff") && !strings.Contains(path, "/cancel") {
			method = "GET"
		}
		status, body := do(t, couriers["ups"], method, e.h.HTTPURL+path)
		require.Equal(t, 404, status, "%s %s as another carrier's courier: %s", method, path, body)
		require.Contains(t, body, `"not_found"`)
	}
	status, body := do(t, couriers["ups"], "GET", e.h.HTTPURL+"/api/v1/parcels")
	require.Equal(t, 200, status)
	require.NotContains(t, body, p.ID)
	status, body = do(t, couriers["dhl"], "POST", e.h.HTTPURL+"/api/v1/parcels/"+p.ID+"/dropoff")
	require.Equal(t, 202, status, body)
	e.waitDoor(t, p.Cell, protocol.DoorOpen)
	require.Equal(t, parcels.StateReserved, e.parcel(t, p.ID).State)
}

func do(t *testing.T, s hubtest.Session, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	req.Header.Set(web.CSRFHeader, s.CSRF)
	resp, err := s.Client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestOfflinePickup: the locker, offline, hands the parcel out by its own
// check of the code (door opened with cause code:<parcel>); its reports
// arrive after the reconnect and the parcel is picked up.
func TestOfflinePickup(t *testing.T) {
	e := start(t, 2)
	ctx := context.Background()
	p, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000004"}}, "")
	require.NoError(t, err)
	dep := e.deposit(t, e.h.Admin, p.ID)
	l := e.locker()
	l.GoOffline(time.Hour)
	hubtest.Eventually(t, 10*time.Second, "offline", func() bool { return !e.h.App.Broker.Online(lockerID) })
	require.NoError(t, l.OpenDoor(dep.Cell, "code:"+dep.ID))
	require.NoError(t, l.SetOccupied(dep.Cell, false))
	require.NoError(t, l.CloseDoor(dep.Cell))
	require.Equal(t, parcels.StateDeposited, e.parcel(t, p.ID).State)
	l.ComeOnline()
	up := e.waitState(t, p.ID, parcels.StatePickedUp)
	require.NotNil(t, up.PickedUpAt)
}
