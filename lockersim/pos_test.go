package lockersim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/protocol"
)

// TestPOSChargesAPaymentOnce: the terminal charges a payment id once; a new
// request (another key) for it, also in a new process, gets the first
// outcome. Timeout answers nothing, none has no terminal, decline declines.
func TestPOSChargesAPaymentOnce(t *testing.T) {
	env := testEnv(t, nil)
	l, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	charge := func(l *Locker, key, payment string) []queuedMsg {
		t.Helper()
		clearOutbox(l)
		rpc(t, l, map[string]any{"id": key, "method": "pos.charge", "key": key, "not_after": time.Now().Add(time.Minute).UnixMilli(),
			"params": map[string]any{"payment": payment, "parcel": "p-1", "amount": 1250, "currency": "EUR"}})
		return queued(t, l)
	}
	q := charge(l, "c-1", "pay-1")
	require.Len(t, q, 1)
	require.JSONEq(t, `{"id":"c-1","result":{"approved":true,"reference":"T-L1-0001"}}`, string(q[0].raw))
	q = charge(l, "c-2", "pay-1")
	require.JSONEq(t, `{"id":"c-2","result":{"approved":true,"reference":"T-L1-0001"}}`, string(q[0].raw), "the first outcome again")
	require.Equal(t, 1, l.POS().Charged)

	l2, err := newLocker(env, "L1", nil) // a new process, same data directory
	require.NoError(t, err)
	q = charge(l2, "c-3", "pay-1")
	require.JSONEq(t, `{"id":"c-3","result":{"approved":true,"reference":"T-L1-0001"}}`, string(q[0].raw))
	require.Zero(t, l2.POS().Charged, "not charged again after a restart")

	require.NoError(t, l2.SetPOS(POSTimeout, ""))
	require.Empty(t, charge(l2, "c-4", "pay-2"), "a hanging terminal answers nothing")
	require.NoError(t, l2.SetPOS(POSDecline, "expired_card"))
	q = charge(l2, "c-5", "pay-2")
	require.JSONEq(t, `{"id":"c-5","error":{"code":"declined","message":"expired_card"}}`, string(q[0].raw))
	require.NoError(t, l2.SetPOS(POSNone, ""))
	q = charge(l2, "c-6", "pay-3")
	require.Contains(t, string(q[0].raw), protocol.ErrCodeUnknownMethod)
	require.Error(t, l2.SetPOS("maybe", ""))
}
