package fleet_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/protocol"
)

// overviewRig returns a registry, running twins and a loaded overview on a
// fresh database.
func overviewRig(t *testing.T) (*fleet.Registry, *fleet.Twins, *fleet.Overview) {
	t.Helper()
	pool := pgtest.Pool(t, audit.Migrations(), fleet.Migrations())
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := fleet.NewRegistry(pool, ca, log)
	ctx := context.Background()
	require.NoError(t, reg.Load(ctx))
	twins := fleet.NewTwins(pool, log, prometheus.NewRegistry(), fleet.TwinsConfig{})
	require.NoError(t, twins.Load(ctx))
	ov := fleet.NewOverview(reg, twins, log)
	require.NoError(t, ov.Load(ctx))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { twins.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return reg, twins, ov
}

// TestOverviewSummaryOfTheFleetIsKeptAsRowsChange: the whole fleet's summary,
// kept up to date as rows change (the stream sends it with every delta), is
// what a count over the rows gives after every kind of change.
func TestOverviewSummaryOfTheFleetIsKeptAsRowsChange(t *testing.T) {
	reg, twins, ov := overviewRig(t)
	ctx := context.Background()
	var err error

	for _, id := range []string{"L1", "L2", "L3"} {
		_, _, err := reg.Create(ctx, fleet.NewLocker{ID: id, Cells: 10, Segments: []string{"s-" + id}})
		require.NoError(t, err)
	}
	send := func(id, payload string) {
		t.Helper()
		settled := make(chan error, 1)
		twins.Submit(fleet.Inbound{LockerID: id, Kind: protocol.KindState, Payload: []byte(payload), Received: time.Now(),
			Done: func(err error) { settled <- err }})
		require.NoError(t, <-settled)
	}
	check := func(step string) {
		t.Helper()
		want := fleet.Summary{FreeCells: map[string]int{}, HeldForReturns: map[string]int{}}
		for _, size := range fleet.Sizes {
			want.FreeCells[size] = 0
			want.HeldForReturns[size] = 0
		}
		for _, r := range ov.Rows(fleet.RowFilter{}) {
			want.Lockers++
			switch r.Presence {
			case fleet.PresenceOnline:
				want.Online++
			case fleet.PresenceOffline:
				want.Offline++
			default:
				want.Unknown++
			}
			if r.OnBattery {
				want.OnBattery++
			}
			want.OpenDoors += r.OpenDoors
			for size, n := range r.FreeCells {
				want.FreeCells[size] += n
			}
			for size, n := range r.HeldForReturns {
				want.HeldForReturns[size] += n
			}
		}
		require.Equal(t, want, ov.Summary(fleet.RowFilter{}), step)
	}
	check("registered")
	require.Equal(t, 3, ov.Summary(fleet.RowFilter{}).Lockers)

	send("L1", `{"boot":1,"seq":1,"ts":1795389000000,"cells":{"A01":{"door":"open","occupied":false},"A02":{"door":"closed","occupied":false},"A03":{"door":"closed","occupied":true}},"power":{"mains":false}}`)
	send("L2", `{"boot":1,"seq":1,"ts":1795389000000,"cells":{"A01":{"door":"closed","occupied":false}}}`)
	check("reports")
	s := ov.Summary(fleet.RowFilter{})
	require.Equal(t, 1, s.OpenDoors)
	require.Equal(t, 1, s.OnBattery)
	require.Equal(t, 2, s.FreeCells[fleet.SizeM])

	send("L1", `{"boot":1,"seq":2,"ts":1795389000100,"cells":{"A01":{"door":"closed"}},"power":{"mains":true}}`)
	ov.SetOnline("L2", true)
	ov.SetOnline("L3", true)
	ov.SetOnline("L3", false)
	check("changes and presence")
	s = ov.Summary(fleet.RowFilter{})
	require.Equal(t, 0, s.OpenDoors)
	require.Equal(t, 3, s.FreeCells[fleet.SizeM])
	require.Equal(t, 1, s.Online)

	_, _, err = reg.Update(ctx, "L2", fleet.LockerPatch{Address: fleet.Value("Main Street 1")})
	require.NoError(t, err)
	_, _, err = reg.Delete(ctx, "L1")
	require.NoError(t, err)
	check("updated and deleted")
	require.Equal(t, 2, ov.Summary(fleet.RowFilter{}).Lockers)
	require.Equal(t, 1, ov.Summary(fleet.RowFilter{Segment: "s-L2"}).Lockers, "a filter still counts its own rows")
}

// TestCellsHeldForReturnsAreNotFreeForLoading: a model's layout keeps a cell
// for returns; a locker of that model counts it, when empty and closed, as
// held for returns and not as free for loading, in its row and the fleet's
// summary; a bad hold is refused with a clear error.
func TestCellsHeldForReturnsAreNotFreeForLoading(t *testing.T) {
	reg, twins, ov := overviewRig(t)
	ctx := context.Background()
	var err error

	_, _, err = reg.CreateModel(ctx, fleet.NewModel{ID: "bad", Manufacturer: "X", Name: "X",
		Layout: []fleet.Cell{{Name: "A01", Size: "M", Hold: "parcels"}}})
	require.ErrorContains(t, err, `hold "parcels" is not "returns"`)
	_, _, err = reg.CreateModel(ctx, fleet.NewModel{ID: "r3", Manufacturer: "X", Name: "X", Layout: []fleet.Cell{
		{Name: "A01", Size: "M"}, {Name: "A02", Size: "M", Hold: fleet.HoldReturns}, {Name: "A03", Size: "L", Hold: fleet.HoldReturns}}})
	require.NoError(t, err)
	_, _, err = reg.Create(ctx, fleet.NewLocker{ID: "R1", Model: "r3"})
	require.NoError(t, err)
	cells, err := reg.Cells(ctx, "R1")
	require.NoError(t, err)
	require.Equal(t, []string{"", fleet.HoldReturns, fleet.HoldReturns}, []string{cells[0].Hold, cells[1].Hold, cells[2].Hold})

	settled := make(chan error, 1)
	twins.Submit(fleet.Inbound{LockerID: "R1", Kind: protocol.KindState, Received: time.Now(), Done: func(err error) { settled <- err },
		Payload: []byte(`{"boot":1,"seq":1,"ts":1795389000000,"cells":{"A01":{"door":"closed","occupied":false},"A02":{"door":"closed","occupied":false},"A03":{"door":"closed","occupied":true}}}`)})
	require.NoError(t, <-settled)
	row, ok := ov.Row("R1")
	require.True(t, ok)
	require.Equal(t, map[string]int{"M": 1}, row.FreeCells, "A01 only: A02 is held for returns")
	require.Equal(t, map[string]int{"M": 1}, row.HeldForReturns, "A02: empty and closed; A03 is occupied")
	s := ov.Summary(fleet.RowFilter{})
	require.Equal(t, 1, s.FreeCells["M"])
	require.Equal(t, 1, s.HeldForReturns["M"])
	require.Equal(t, 0, s.HeldForReturns["L"])
}

// TestOverviewTakenCells: cells another component holds (parcels' reserved
// cells) are not free, in the row, the summary and FreeCellNames.
func TestOverviewTakenCells(t *testing.T) {
	reg, twins, ov := overviewRig(t)
	ctx := context.Background()
	_, _, err := reg.Create(ctx, fleet.NewLocker{ID: "T1", Cells: 3})
	require.NoError(t, err)
	settled := make(chan error, 1)
	twins.Submit(fleet.Inbound{LockerID: "T1", Kind: protocol.KindState, Received: time.Now(), Done: func(err error) { settled <- err },
		Payload: []byte(`{"boot":1,"seq":1,"ts":1,"cells":{"A01":{"door":"closed","occupied":false},"A02":{"door":"closed","occupied":false},"A03":{"door":"open","occupied":false}}}`)})
	require.NoError(t, <-settled)
	hubtest.Eventually(t, 5*time.Second, "row of T1", func() bool { r, _ := ov.Row("T1"); return r.FreeCells["M"] == 2 })
	names, ok := ov.FreeCellNames("T1", "M")
	require.True(t, ok)
	require.Equal(t, []string{"A01", "A02"}, names, "A03 is open")
	names, ok = ov.FreeCellNames("T1", "S")
	require.True(t, ok)
	require.Empty(t, names)
	_, ok = ov.FreeCellNames("nope", "M")
	require.False(t, ok)

	ov.SetTaken("T1", []string{"A01"})
	r, _ := ov.Row("T1")
	require.Equal(t, 1, r.FreeCells["M"])
	require.Equal(t, 1, ov.Summary(fleet.RowFilter{}).FreeCells["M"])
	names, _ = ov.FreeCellNames("T1", "M")
	require.Equal(t, []string{"A02"}, names)
	ov.SetTaken("T1", nil)
	r, _ = ov.Row("T1")
	require.Equal(t, 2, r.FreeCells["M"])
}
