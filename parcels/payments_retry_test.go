package parcels_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/protocol"
)

// posFleet is twinFleet with a POS terminal whose pos.charge commands end as
// the test scripts them, recording what each asked.
type posFleet struct {
	*twinFleet
	mu       sync.Mutex
	outcomes []parcels.ChargeOutcome
	asked    []protocol.POSChargeParams
}

func (f *posFleet) HasPOS(context.Context, string) (bool, error) { return true, nil }

func (f *posFleet) Charge(_ context.Context, r parcels.ChargeRequest) (parcels.ChargeOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, r.Params)
	out := f.outcomes[0]
	f.outcomes = f.outcomes[1:]
	return out, nil
}

// TestChargeAskedAgainKeepsItsPaymentID: the terminal did not answer the
// first charge (it may have taken the money), and the command of the second
// code entry never reached it (expired on the way). That second attempt
// proves nothing either way, so the payment stays unknown and the third code
// entry asks the terminal again under the same payment id (which it charges
// at most once) instead of starting a new payment it would charge again.
func TestChargeAskedAgainKeepsItsPaymentID(t *testing.T) {
	pool := pgtest.Pool(t, audit.Migrations(), parcels.Migrations())
	ctx := context.Background()
	approved, _ := json.Marshal(protocol.POSChargeResult{Approved: true, Reference: "T-1"})
	fl := &posFleet{twinFleet: newTwinFleet("A01", "A02"), outcomes: []parcels.ChargeOutcome{
		{Command: "c-1", State: "unconfirmed", Code: "no_answer"},
		{Command: "c-2", State: "expired", Code: "expired", Message: "not delivered before not_after"},
		{Command: "c-3", State: "succeeded", Result: approved},
	}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := parcels.New(pool, fl, log, nil, parcels.Config{Keys: testKeys{}, Outbox: &outbox{}, Sweep: time.Hour})
	require.NoError(t, s.Load(ctx))
	admin := parcels.Caller{Scope: "user:1", Name: "admin:admin"}
	p, _, err := s.Create(ctx, admin, parcels.NewParcel{LockerID: "L1", Size: "M", Recipient: parcels.Recipient{Phone: "+4917000010"},
		AmountDue: &parcels.Money{Amount: 1250, Currency: "EUR"}})
	require.NoError(t, err)
	_, _, err = s.Dropoff(ctx, admin, p.ID)
	require.NoError(t, err)
	fl.report(p.Cell, "closed", true, parcels.Stamp{Boot: 1, Seq: 5})
	require.NoError(t, s.Evaluate(ctx, "L1"))
	p, err = s.Get(ctx, admin, p.ID)
	require.NoError(t, err)
	require.Equal(t, parcels.StateDeposited, p.State)

	key, _ := testKeys{}.Key(ctx, "L1")
	code, err := protocol.PickupCode(key, protocol.PickupCodeInput{LockerID: "L1", ParcelID: p.ID, Cell: p.Cell,
		ValidFrom: p.DepositedAt.Truncate(time.Second), ValidTo: p.ExpiresAt.Truncate(time.Second)})
	require.NoError(t, err)
	params, _ := json.Marshal(protocol.CodeCheckParams{Code: code})
	payments := func() []parcels.Payment {
		got, err := s.Get(ctx, admin, p.ID)
		require.NoError(t, err)
		return got.Payments
	}

	_, perr := s.CheckCode(ctx, "L1", "ask-1", params)
	require.NotNil(t, perr)
	require.Equal(t, protocol.ErrCodePaymentPending, perr.Code, perr.Message)
	ps := payments()
	require.Len(t, ps, 1)
	require.Equal(t, parcels.PaymentUnknown, ps[0].State)
	first := ps[0].ID

	_, perr = s.CheckCode(ctx, "L1", "ask-2", params)
	require.NotNil(t, perr)
	require.Equal(t, protocol.ErrCodePaymentPending, perr.Code, "a command that never reached the terminal settles nothing: %s", perr.Message)
	ps = payments()
	require.Len(t, ps, 1)
	require.Equal(t, parcels.PaymentUnknown, ps[0].State, "not failed: the first ask may have charged")

	raw, perr := s.CheckCode(ctx, "L1", "ask-3", params)
	require.Nil(t, perr, "%+v", perr)
	var res protocol.CodeCheckResult
	require.NoError(t, json.Unmarshal(raw, &res))
	require.Equal(t, p.Cell, res.Cell)
	ps = payments()
	require.Len(t, ps, 1, "one payment in all")
	require.Equal(t, first, ps[0].ID)
	require.Equal(t, parcels.PaymentApproved, ps[0].State)
	require.Equal(t, "T-1", ps[0].TerminalRef)
	for i, a := range fl.asked {
		require.Equal(t, first, a.Payment, "ask %d under the first payment id", i+1)
	}
	require.Len(t, fl.asked, 3)
}
