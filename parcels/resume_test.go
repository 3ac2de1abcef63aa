package parcels_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

// twinFleet is parcels.Fleet over an in-memory twin of one locker, as the
// fleet's twins are after a start (loaded from PostgreSQL).
type twinFleet struct {
	mu    sync.Mutex
	cells map[string]parcels.CellReport
	taken map[string]bool
	opens int
}

func newTwinFleet(names ...string) *twinFleet {
	f := &twinFleet{cells: map[string]parcels.CellReport{}, taken: map[string]bool{}}
	no := false
	for _, n := range names {
		f.cells[n] = parcels.CellReport{Door: "closed", DoorAt: parcels.Stamp{Boot: 1, Seq: 1}, Occupied: &no, OccupiedAt: parcels.Stamp{Boot: 1, Seq: 1}}
	}
	return f
}

func (f *twinFleet) FreeCells(lockerID, size string) ([]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if lockerID != "L1" {
		return nil, false
	}
	var out []string
	for _, n := range []string{"A01", "A02"} {
		if c, ok := f.cells[n]; ok && !f.taken[n] && c.Door == "closed" && c.Occupied != nil && !*c.Occupied {
			out = append(out, n)
		}
	}
	return out, true
}

func (f *twinFleet) ReturnCells(string, string) ([]string, bool)  { return nil, true }
func (f *twinFleet) HasPOS(context.Context, string) (bool, error) { return false, nil }
func (f *twinFleet) Charge(context.Context, parcels.ChargeRequest) (parcels.ChargeOutcome, error) {
	return parcels.ChargeOutcome{}, errors.New("no terminal")
}

func (f *twinFleet) SetTaken(_ string, cells []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.taken = map[string]bool{}
	for _, c := range cells {
		f.taken[c] = true
	}
}

func (f *twinFleet) Cell(_, cell string) (parcels.CellReport, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.cells[cell]
	return c, ok
}

func (f *twinFleet) OpenCell(context.Context, parcels.OpenRequest) (parcels.Opened, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	return parcels.Opened{ID: "c-1", Created: true}, nil
}

func (f *twinFleet) report(cell, door string, occupied bool, at parcels.Stamp) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cells[cell] = parcels.CellReport{Door: door, DoorAt: at, Occupied: &occupied, OccupiedAt: at}
}

// TestStepsResumeAtStart: a deposit the twin holds but the store was never
// told of (the hub stopped between the twin's commit and the parcels'
// evaluation) is taken up when a new store loads; reports older than the
// step's stamp move nothing.
func TestStepsResumeAtStart(t *testing.T) {
	pool := pgtest.Pool(t, audit.Migrations(), parcels.Migrations())
	ctx := context.Background()
	fl := newTwinFleet("A01", "A02")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := parcels.Config{Keys: testKeys{}, Sweep: 20 * time.Millisecond}
	s1 := parcels.New(pool, fl, log, nil, cfg)
	require.NoError(t, s1.Load(ctx))
	admin := parcels.Caller{Scope: "user:1", Name: "admin:admin"}
	p, created, err := s1.Create(ctx, admin, parcels.NewParcel{LockerID: "L1", Size: "M", Recipient: parcels.Recipient{Phone: "+4917000009"}})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "A01", p.Cell)
	_, _, err = s1.Dropoff(ctx, admin, p.ID)
	require.NoError(t, err)
	// An old report (before the reservation's stamp) says occupied: nothing.
	fl.report("A01", "closed", true, parcels.Stamp{Boot: 0, Seq: 99})
	require.NoError(t, s1.Evaluate(ctx, "L1"))
	got, err := s1.Get(ctx, admin, p.ID)
	require.NoError(t, err)
	require.Equal(t, parcels.StateReserved, got.State)

	// The locker deposits; the twin has it; s1 never hears (no TwinChanged).
	fl.report("A01", "closed", true, parcels.Stamp{Boot: 1, Seq: 5})

	s2 := parcels.New(pool, fl, log, nil, cfg)
	require.NoError(t, s2.Load(ctx))
	require.Equal(t, map[string]bool{"A01": true}, fl.taken, "the held cell is told to the fleet at start")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s2.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	hubtest.Eventually(t, 5*time.Second, "deposited after the start", func() bool {
		got, err = s2.Get(ctx, admin, p.ID)
		require.NoError(t, err)
		return got.State == parcels.StateDeposited
	})
	// The next cell for the next parcel.
	p2, _, err := s2.Create(ctx, admin, parcels.NewParcel{LockerID: "L1", Size: "M", Recipient: parcels.Recipient{Phone: "+4917000009"}})
	require.NoError(t, err)
	require.Equal(t, "A02", p2.Cell)
	_, _, err = s2.Create(ctx, admin, parcels.NewParcel{LockerID: "L1", Size: "M", Recipient: parcels.Recipient{Phone: "+4917000009"}})
	require.ErrorIs(t, err, parcels.ErrNoFreeCell)
}

func (f *twinFleet) Place(context.Context, string) (string, string, error) {
	return "Teststraße 1, Berlin", "Europe/Berlin", nil
}
