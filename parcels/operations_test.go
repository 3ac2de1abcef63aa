package parcels_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/protocol"
)

func refusal(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *apiclient.Error
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, status, ae.Status, ae.Message)
	require.Equal(t, code, ae.Code, ae.Message)
}

// TestSearchParcels: each filter of the search finds the parcel it names and
// leaves the others out; the page counts the whole match.
func TestSearchParcels(t *testing.T) {
	e := start(t, 4)
	ctx := context.Background()
	a, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Reference: "order-A", Barcode: "JD0001",
		Contents: "books", DeclaredValue: 2599, Currency: "eur", Recipient: apiclient.Recipient{Phone: "+491701", Email: "Ann@Example.org"}}, "")
	require.NoError(t, err)
	require.Equal(t, "EUR", a.Currency)
	require.Equal(t, int64(2599), a.DeclaredValue)
	b, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Reference: "order-B", Barcode: "JD0002",
		Carrier: "dhl", Recipient: apiclient.Recipient{Phone: "+491702"}}, "")
	require.NoError(t, err)

	for _, c := range []struct {
		name string
		f    apiclient.ParcelFilter
		want []string
	}{
		{"tracking by id", apiclient.ParcelFilter{Tracking: a.ID}, []string{a.ID}},
		{"tracking by reference", apiclient.ParcelFilter{Tracking: "order-B"}, []string{b.ID}},
		{"barcode", apiclient.ParcelFilter{Barcode: "JD0001"}, []string{a.ID}},
		{"phone", apiclient.ParcelFilter{Phone: "+491702"}, []string{b.ID}},
		{"e-mail, any case", apiclient.ParcelFilter{Email: "ann@example.ORG"}, []string{a.ID}},
		{"carrier", apiclient.ParcelFilter{Carrier: "dhl"}, []string{b.ID}},
		{"locker and state", apiclient.ParcelFilter{Locker: lockerID, State: "reserved"}, []string{b.ID, a.ID}},
		{"date range", apiclient.ParcelFilter{From: time.Now().Add(-time.Hour).Format(time.RFC3339), To: time.Now().Add(time.Hour).Format(time.RFC3339)}, []string{b.ID, a.ID}},
		{"before today", apiclient.ParcelFilter{To: "2020-01-01"}, nil},
		{"nothing", apiclient.ParcelFilter{Barcode: "nope"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			page, err := e.h.Admin.Parcels(ctx, c.f)
			require.NoError(t, err)
			var got []string
			for _, p := range page.Parcels {
				got = append(got, p.ID)
			}
			require.Equal(t, c.want, got)
			require.Equal(t, len(c.want), page.Total)
		})
	}
	page, err := e.h.Admin.Parcels(ctx, apiclient.ParcelFilter{Locker: lockerID, Limit: 1, Offset: 1})
	require.NoError(t, err)
	require.Equal(t, 2, page.Total)
	require.Len(t, page.Parcels, 1)
	require.Equal(t, a.ID, page.Parcels[0].ID)

	_, err = e.h.Admin.Parcels(ctx, apiclient.ParcelFilter{From: "yesterday"})
	refusal(t, err, http.StatusBadRequest, "invalid")
}

// TestEditParcel: recipient, a longer storage period (a deposited parcel gets
// a new code) and another size (only before the drop-off), each audited, with
// a machine-readable refusal when the state forbids it.
func TestEditParcel(t *testing.T) {
	e := start(t, 3)
	ctx := context.Background()
	p, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000010"}}, "")
	require.NoError(t, err)

	// Size: no free cell of size L on this locker (all cells are M).
	l := "L"
	_, err = e.h.Admin.EditParcel(ctx, p.ID, apiclient.ParcelEdit{Size: &l})
	refusal(t, err, http.StatusConflict, "no_free_cell")
	// Storage: only longer.
	short := 10
	_, err = e.h.Admin.EditParcel(ctx, p.ID, apiclient.ParcelEdit{StorageHours: &short})
	refusal(t, err, http.StatusConflict, parcels.RefuseStorageShort)
	_, err = e.h.Admin.EditParcel(ctx, p.ID, apiclient.ParcelEdit{Recipient: &apiclient.Recipient{Phone: "not a phone"}})
	refusal(t, err, http.StatusBadRequest, "invalid")

	edited, err := e.h.Admin.EditParcel(ctx, p.ID, apiclient.ParcelEdit{Recipient: &apiclient.Recipient{Name: "Bo", Email: "bo@example.org"}})
	require.NoError(t, err)
	require.Equal(t, apiclient.Recipient{Name: "Bo", Email: "bo@example.org"}, edited.Recipient)

	dep := e.deposit(t, e.h.Admin, p.ID)
	before := codeOf(t, dep)
	m := "M"
	_, err = e.h.Admin.EditParcel(ctx, p.ID, apiclient.ParcelEdit{Size: &m})
	require.NoError(t, err, "the same size changes nothing")
	s := "S"
	_, err = e.h.Admin.EditParcel(ctx, p.ID, apiclient.ParcelEdit{Size: &s})
	refusal(t, err, http.StatusConflict, parcels.RefuseSizeLocked)

	long := 100
	ext, err := e.h.Admin.EditParcel(ctx, p.ID, apiclient.ParcelEdit{StorageHours: &long})
	require.NoError(t, err)
	require.Equal(t, 100, ext.StorageHours)
	require.WithinDuration(t, dep.DepositedAt.Add(100*time.Hour), *ext.ExpiresAt, time.Second)
	after := codeOf(t, ext)
	require.NotEqual(t, before, after, "the code is bound to the storage period")
	msg, ok := e.box.find(p.ID + ":parcel_ready:storage100:email")
	require.True(t, ok, "the recipient gets the new code")
	require.Equal(t, after, msg.Data["code"])
	_, perr := checkCode(t, e, "a-old", before)
	require.NotNil(t, perr, "the old code no longer opens")
	res, perr := checkCode(t, e, "a-new", after)
	require.Nil(t, perr)
	require.Equal(t, dep.Cell, res.Cell)
	e.waitDoor(t, dep.Cell, protocol.DoorOpen)
	require.NoError(t, e.locker().SetOccupied(dep.Cell, false))
	require.NoError(t, e.locker().CloseDoor(dep.Cell))
	e.waitState(t, p.ID, parcels.StatePickedUp)

	_, err = e.h.Admin.EditParcel(ctx, p.ID, apiclient.ParcelEdit{Recipient: &apiclient.Recipient{Phone: "+4917000011"}})
	refusal(t, err, http.StatusConflict, parcels.RefuseClosed)

	got := e.parcel(t, p.ID)
	var notes []string
	for _, st := range got.History {
		notes = append(notes, st.Note)
		require.Equal(t, lockerID, st.Locker)
		require.NotEmpty(t, st.Source, "every step names what was behind it: %+v", st)
	}
	require.Contains(t, notes, "recipient changed")
	require.Contains(t, notes, "storage period 72 h → 100 h")
	require.GreaterOrEqual(t, countAudit(t, e, p.ID), 6)
}

// TestMoveParcel: a deposited parcel moves to another cell; the old door and
// then the new one are confirmed by the door sensors, both cells are held
// until the move is done, and the recipient gets a new code for the new cell.
func TestMoveParcel(t *testing.T) {
	e := start(t, 4)
	ctx := context.Background()
	p, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000020"}}, "")
	require.NoError(t, err)
	_, err = e.h.Admin.MoveParcel(ctx, p.ID, "A03")
	refusal(t, err, http.StatusConflict, parcels.RefuseNotInCell)
	dep := e.deposit(t, e.h.Admin, p.ID)
	require.Equal(t, "A01", dep.Cell)
	other, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000021"}}, "")
	require.NoError(t, err)
	require.Equal(t, "A02", other.Cell)
	require.Equal(t, 2, e.free(t))

	_, err = e.h.Admin.MoveParcel(ctx, p.ID, "A02")
	refusal(t, err, http.StatusConflict, parcels.RefuseCellNotFree)
	open, err := e.h.Admin.MoveParcel(ctx, p.ID, "A03")
	require.NoError(t, err)
	require.Equal(t, "cell.open", open.Command.Method)
	require.Equal(t, "A03", open.Parcel.Cell)
	require.Equal(t, "A01", open.Parcel.MoveFrom)
	require.Equal(t, "from", open.Parcel.MoveStage)
	_, err = e.h.Admin.MoveParcel(ctx, p.ID, "A04")
	refusal(t, err, http.StatusConflict, parcels.RefuseMoving)
	hubtest.Eventually(t, 5*time.Second, "both cells held while moving", func() bool { return e.free(t) == 1 })

	// A create meanwhile takes neither cell of the move.
	third, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000022"}}, "")
	require.NoError(t, err)
	require.Equal(t, "A04", third.Cell)
	_, err = e.h.Admin.CancelParcel(ctx, third.ID, "test")
	require.NoError(t, err)

	e.waitDoor(t, "A01", protocol.DoorOpen)
	require.Equal(t, protocol.DoorClosed, e.locker().View(true).Cells["A03"].Door, "the new cell waits for the old door")
	require.NoError(t, e.locker().SetOccupied("A01", false))
	require.NoError(t, e.locker().CloseDoor("A01"))
	e.waitDoor(t, "A03", protocol.DoorOpen)
	require.Equal(t, "to", e.parcel(t, p.ID).MoveStage)
	require.NoError(t, e.locker().SetOccupied("A03", true))
	require.NoError(t, e.locker().CloseDoor("A03"))
	hubtest.Eventually(t, 10*time.Second, "move done", func() bool { return e.parcel(t, p.ID).MoveFrom == "" })
	moved := e.parcel(t, p.ID)
	require.Equal(t, parcels.StateDeposited, moved.State)
	require.Equal(t, "A03", moved.Cell)
	hubtest.Eventually(t, 5*time.Second, "the old cell is free again", func() bool { return e.free(t) == 2 })

	var sources []string
	for _, st := range moved.History {
		sources = append(sources, st.Note+" @ "+st.Source)
	}
	require.Contains(t, sources[len(sources)-1], "moved A01 → A03")
	require.Contains(t, sources[len(sources)-1], "@ report:")

	code := codeOf(t, moved)
	msg, ok := e.box.find(p.ID + ":parcel_ready:moved:A03:sms")
	require.True(t, ok, "the recipient gets the code for the new cell")
	require.Equal(t, code, msg.Data["code"])
	res, perr := checkCode(t, e, "a-moved", code)
	require.Nil(t, perr)
	require.Equal(t, "A03", res.Cell)
}

// TestReturns: an expired parcel and one cancelled after deposit are listed
// for collection per locker and carrier and collected (cell opened by
// command, door confirmed); a customer return is dropped by its sender with
// the return code typed at the locker and collected by the courier.
func TestReturns(t *testing.T) {
	e := start(t, 4)
	ctx := context.Background()
	exp, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Carrier: "dhl", StorageHours: 1,
		Recipient: apiclient.Recipient{Phone: "+4917000030"}}, "")
	require.NoError(t, err)
	exp = e.deposit(t, e.h.Admin, exp.ID)
	can, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000031"}}, "")
	require.NoError(t, err)
	can = e.deposit(t, e.h.Admin, can.ID)
	_, err = e.h.Admin.CancelParcel(ctx, can.ID, "sender withdrew")
	require.NoError(t, err)
	e.clk.Advance(2 * time.Hour)
	e.waitState(t, exp.ID, parcels.StateExpired)

	groups, err := e.h.Admin.Returns(ctx, lockerID, "")
	require.NoError(t, err)
	require.Len(t, groups, 2, "one group per carrier: %+v", groups)
	require.Equal(t, "", groups[0].Carrier)
	require.Equal(t, can.ID, groups[0].Parcels[0].ID)
	require.Equal(t, "dhl", groups[1].Carrier)
	require.Equal(t, exp.ID, groups[1].Parcels[0].ID)
	only, err := e.h.Admin.Returns(ctx, "", "dhl")
	require.NoError(t, err)
	require.Len(t, only, 1)

	for _, p := range []apiclient.Parcel{exp, can} {
		open, err := e.h.Admin.CollectParcel(ctx, p.ID)
		require.NoError(t, err)
		require.Equal(t, "cell.open", open.Command.Method)
		e.waitDoor(t, p.Cell, protocol.DoorOpen)
		require.NoError(t, e.locker().SetOccupied(p.Cell, false))
		require.NoError(t, e.locker().CloseDoor(p.Cell))
		e.waitState(t, p.ID, parcels.StateReturned)
	}
	groups, err = e.h.Admin.Returns(ctx, lockerID, "")
	require.NoError(t, err)
	require.Empty(t, groups)

	// A customer return: the sender gets the code, types it at the locker.
	ret, err := e.h.Admin.CreateReturn(ctx, apiclient.NewReturn{Locker: lockerID, Size: "M", Carrier: "dhl", Reference: "RMA-1",
		Sender: apiclient.Recipient{Phone: "+4917000032"}})
	require.NoError(t, err)
	require.Equal(t, "return", ret.Kind)
	require.Equal(t, parcels.StateReserved, ret.State)
	msg, ok := e.box.find(ret.ID + ":return_code:sms")
	require.True(t, ok, "the sender gets the return code")
	code, _ := msg.Data["code"].(string)
	require.Len(t, code, 8)
	_, found := e.box.find(ret.ID + ":parcel_ready:sms")
	require.False(t, found, "a return sends no pickup code")

	res := e.locker().EnterCode(ctx, code, 10*time.Second)
	require.Nil(t, res.Error, "%+v", res)
	require.Equal(t, ret.Cell, res.Cell)
	e.waitDoor(t, ret.Cell, protocol.DoorOpen)
	require.NoError(t, e.locker().SetOccupied(ret.Cell, true))
	require.NoError(t, e.locker().CloseDoor(ret.Cell))
	dep := e.waitState(t, ret.ID, parcels.StateDeposited)
	require.True(t, dep.ToReturn, "a dropped return waits for the courier")
	require.Nil(t, dep.ExpiresAt, "a return never expires")
	accepted, ok := e.box.find(ret.ID + ":return_accepted:sms")
	require.True(t, ok, "the sender is told the return was accepted")
	require.NotEmpty(t, accepted.Data["accepted"])
	_, perr := checkCode(t, e, "a-again", code)
	require.NotNil(t, perr, "the return code opens the cell only until the drop-off")
	groups, err = e.h.Admin.Returns(ctx, "", "dhl")
	require.NoError(t, err)
	require.Len(t, groups, 1)
	require.Equal(t, ret.ID, groups[0].Parcels[0].ID)

	open, err := e.h.Admin.CollectParcel(ctx, ret.ID)
	require.NoError(t, err)
	require.Equal(t, ret.Cell, open.Parcel.Cell)
	e.waitDoor(t, ret.Cell, protocol.DoorOpen)
	require.NoError(t, e.locker().SetOccupied(ret.Cell, false))
	require.NoError(t, e.locker().CloseDoor(ret.Cell))
	done := e.waitState(t, ret.ID, parcels.StateReturned)
	var notes []string
	for _, st := range done.History {
		notes = append(notes, st.By+": "+st.Note)
	}
	require.Contains(t, notes, "sender: return dropped off: door closed, cell occupied")
	require.Contains(t, notes, "courier: collected for return: door closed, cell empty")
}

// TestBarcodes: the courier's scan at the locker opens the reserved cell of
// that parcel; an unknown barcode or one for another cell opens nothing and
// is refused with a code the locker shows; at pickup the scan must be the
// parcel of the open cell; every scan is recorded and in the parcel's page.
func TestBarcodes(t *testing.T) {
	e := start(t, 3)
	ctx := context.Background()
	p1, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Barcode: "JJD0001", Recipient: apiclient.Recipient{Phone: "+4917000040"}}, "")
	require.NoError(t, err)
	p2, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Barcode: "JJD0002", Recipient: apiclient.Recipient{Phone: "+4917000041"}}, "")
	require.NoError(t, err)
	commands := func() int {
		var n int
		require.NoError(t, e.h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM fleet_commands WHERE locker_id = $1`, lockerID).Scan(&n))
		return n
	}
	// Scans go through lockersim's control API, as the scanner at the locker.
	scan := func(barcode, purpose, cell string) lockersim.ScanResult {
		t.Helper()
		body, _ := json.Marshal(protocol.BarcodeCheckParams{Barcode: barcode, Purpose: purpose, Cell: cell})
		resp, err := http.Post("http://"+e.sim.ControlAddr()+"/lockers/"+lockerID+"/barcode", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var res lockersim.ScanResult
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
		return res
	}

	res := scan("NOPE-1", "", "")
	require.NotNil(t, res.Error)
	require.Equal(t, protocol.ErrCodeUnknownBarcode, res.Error.Code)
	res = scan("JJD0001", protocol.ScanDropoff, p2.Cell)
	require.NotNil(t, res.Error)
	require.Equal(t, protocol.ErrCodeBarcodeMismatch, res.Error.Code, res.Error.Message)
	require.Contains(t, res.Error.Message, "goes in cell "+p1.Cell)
	require.Zero(t, commands(), "a refused scan opens nothing")
	for _, c := range []string{p1.Cell, p2.Cell} {
		require.Equal(t, protocol.DoorClosed, e.locker().View(true).Cells[c].Door)
	}

	res = scan("JJD0001", "", "")
	require.Nil(t, res.Error, "%+v", res.Error)
	require.Equal(t, p1.ID, res.Parcel)
	require.Equal(t, p1.Cell, res.Cell)
	e.waitDoor(t, p1.Cell, protocol.DoorOpen)
	require.NoError(t, e.locker().SetOccupied(p1.Cell, true))
	require.NoError(t, e.locker().CloseDoor(p1.Cell))
	dep := e.waitState(t, p1.ID, parcels.StateDeposited)
	require.Equal(t, 1, commands())

	// Pickup: the code opens the cell; the scan checks what is taken out.
	_, perr := checkCode(t, e, "a-pick", codeOf(t, dep))
	require.Nil(t, perr)
	e.waitDoor(t, p1.Cell, protocol.DoorOpen)
	res = scan("JJD0002", protocol.ScanPickup, p1.Cell)
	require.NotNil(t, res.Error)
	require.Equal(t, protocol.ErrCodeBarcodeMismatch, res.Error.Code)
	res = scan("JJD0001", protocol.ScanPickup, p1.Cell)
	require.Nil(t, res.Error, "%+v", res.Error)
	require.NoError(t, e.locker().SetOccupied(p1.Cell, false))
	require.NoError(t, e.locker().CloseDoor(p1.Cell))
	got := e.waitState(t, p1.ID, parcels.StatePickedUp)

	var results []string
	for _, s := range got.Scans {
		results = append(results, s.Purpose+":"+s.Barcode+":"+s.Result)
	}
	require.Equal(t, []string{"dropoff:JJD0001:barcode_mismatch", "dropoff:JJD0001:ok", "pickup:JJD0002:barcode_mismatch", "pickup:JJD0001:ok"}, results)
	var scanned int
	for _, st := range got.History {
		if strings.HasPrefix(st.Source, "scan:") {
			scanned++
		}
	}
	require.GreaterOrEqual(t, scanned, 5, "each scan, and the drop-off it started, is in the history")
	var total, unknown int
	require.NoError(t, e.h.App.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE parcel_id IS NULL AND result = 'unknown_barcode') FROM parcels_scans`).Scan(&total, &unknown))
	require.Equal(t, 5, total, "every scan is recorded")
	require.Equal(t, 1, unknown)
}

// TestServiceAccess: a technician opens a cell in service mode from the
// dashboard's API, and with a one-time code at the locker's keypad (once);
// both commands are created by service:<user> and audited.
func TestServiceAccess(t *testing.T) {
	e := start(t, 3)
	ctx := context.Background()
	body, status, err := e.h.Admin.Do(ctx, http.MethodPost, "/api/v1/lockers/"+lockerID+"/cells/A02/service-open", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, status, string(body))
	var cmd apiclient.Command
	require.NoError(t, json.Unmarshal(body, &cmd))
	require.Equal(t, "service:admin", cmd.CreatedBy)
	e.waitDoor(t, "A02", protocol.DoorOpen)
	require.NoError(t, e.locker().CloseDoor("A02"))

	_, _, err = e.h.Admin.Do(ctx, http.MethodPost, "/api/v1/lockers/"+lockerID+"/cells/Z99/service-open", nil)
	refusal(t, err, http.StatusNotFound, "not_found")

	body, status, err = e.h.Admin.Do(ctx, http.MethodPost, "/api/v1/lockers/"+lockerID+"/service-codes", []byte(`{"cell":"A03"}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, status, string(body))
	var sc struct{ Code, Cell string }
	require.NoError(t, json.Unmarshal(body, &sc))
	require.Len(t, sc.Code, 8)
	res := e.locker().EnterCode(ctx, sc.Code, 10*time.Second)
	require.Nil(t, res.Error, "%+v", res)
	require.Equal(t, "A03", res.Cell)
	e.waitDoor(t, "A03", protocol.DoorOpen)
	require.NoError(t, e.locker().CloseDoor("A03"))
	res = e.locker().EnterCode(ctx, sc.Code, 10*time.Second)
	require.NotNil(t, res.Error, "a service code opens once")
	require.Equal(t, protocol.ErrCodeWrongCode, res.Error.Code)

	var n int
	require.NoError(t, e.h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM fleet_commands WHERE locker_id = $1 AND created_by = 'service:admin'`, lockerID).Scan(&n))
	require.Equal(t, 2, n, "both openings are service:admin commands")
	require.NoError(t, e.h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'service_open' AND after->>'cause' = 'service:admin'`).Scan(&n))
	require.Equal(t, 2, n, "both are audited with the cause")
	require.NoError(t, e.h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE after::text LIKE '%' || $1 || '%'`, sc.Code).Scan(&n))
	require.Zero(t, n, "the code is in no audit record")
}

// TestReturnTakesHeldCell: a customer return takes a cell held for returns
// (never free for loading) before any free cell; while it holds it, the
// overview no longer counts it ready for returns.
func TestReturnTakesHeldCell(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.Parcels.Keys = testKeys{} })
	ctx := context.Background()
	_, err := h.Admin.CreateModel(ctx, apiclient.NewModel{ID: "rx", Manufacturer: "t", Name: "returns",
		Layout: []apiclient.Cell{{Name: "A01", Size: "M"}, {Name: "A02", Size: "M", Hold: "returns"}}})
	require.NoError(t, err)
	_, err = h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "RX-1", Model: "rx"})
	require.NoError(t, err)
	done := make(chan error, 1)
	h.App.Twins.Submit(fleet.Inbound{LockerID: "RX-1", Kind: protocol.KindState, Received: time.Now(), Done: func(err error) { done <- err },
		Payload: []byte(fmt.Sprintf(`{"boot":1,"seq":1,"ts":%d,"cells":{"A01":{"door":"closed","occupied":false},"A02":{"door":"closed","occupied":false}}}`, time.Now().UnixMilli()))})
	require.NoError(t, <-done)
	hubtest.Eventually(t, 5*time.Second, "one free, one held for returns", func() bool {
		row, ok := h.App.Overview.Row("RX-1")
		return ok && row.FreeCells["M"] == 1 && row.HeldForReturns["M"] == 1
	})

	ret, err := h.Admin.CreateReturn(ctx, apiclient.NewReturn{Locker: "RX-1", Size: "M", Sender: apiclient.Recipient{Phone: "+4917000050"}})
	require.NoError(t, err)
	require.Equal(t, "A02", ret.Cell, "the cell held for returns first")
	hubtest.Eventually(t, 5*time.Second, "the held cell is taken, the free one still free", func() bool {
		row, _ := h.App.Overview.Row("RX-1")
		return row.FreeCells["M"] == 1 && row.HeldForReturns["M"] == 0
	})
	del, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "RX-1", Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000051"}}, "")
	require.NoError(t, err)
	require.Equal(t, "A01", del.Cell, "a delivery never takes a cell held for returns")
	ret2, err := h.Admin.CreateReturn(ctx, apiclient.NewReturn{Locker: "RX-1", Size: "M", Sender: apiclient.Recipient{Phone: "+4917000052"}})
	require.Error(t, err, "no cell left: %+v", ret2)
	refusal(t, err, http.StatusConflict, "no_free_cell")
}

// TestBarcodeOffline: offline, the locker checks a pickup scan against its
// parcel list (which carries the barcodes); a drop-off scan needs the hub.
func TestBarcodeOffline(t *testing.T) {
	e := start(t, 2)
	ctx := context.Background()
	p, err := e.h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Barcode: "JJD0100", Recipient: apiclient.Recipient{Phone: "+4917000060"}}, "")
	require.NoError(t, err)
	dep := e.deposit(t, e.h.Admin, p.ID)
	l := e.locker()
	hubtest.Eventually(t, 15*time.Second, "the offline list holds the parcel with its barcode", func() bool {
		for _, lp := range l.View(false).Parcels {
			if lp.ID == p.ID && lp.Barcode == "JJD0100" {
				return true
			}
		}
		return false
	})
	l.GoOffline(time.Hour)
	hubtest.Eventually(t, 10*time.Second, "offline", func() bool { return !e.h.App.Broker.Online(lockerID) })
	res, err := l.ScanBarcode(ctx, protocol.BarcodeCheckParams{Barcode: "JJD0100", Purpose: protocol.ScanDropoff})
	require.NoError(t, err)
	require.NotNil(t, res.Error)
	require.Equal(t, protocol.ErrCodeOffline, res.Error.Code)
	require.NoError(t, l.OpenDoor(dep.Cell, "code:"+dep.ID))
	res, err = l.ScanBarcode(ctx, protocol.BarcodeCheckParams{Barcode: "JJD9999", Purpose: protocol.ScanPickup, Cell: dep.Cell})
	require.NoError(t, err)
	require.NotNil(t, res.Error)
	require.Equal(t, protocol.ErrCodeBarcodeMismatch, res.Error.Code)
	res, err = l.ScanBarcode(ctx, protocol.BarcodeCheckParams{Barcode: "JJD0100", Purpose: protocol.ScanPickup, Cell: dep.Cell})
	require.NoError(t, err)
	require.Nil(t, res.Error)
	require.Equal(t, p.ID, res.Parcel)
	require.NoError(t, l.SetOccupied(dep.Cell, false))
	require.NoError(t, l.CloseDoor(dep.Cell))
	l.ComeOnline()
	e.waitState(t, p.ID, parcels.StatePickedUp)
}
