package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/protocol"
)

func TestDecodePOSCharge(t *testing.T) {
	p, err := protocol.DecodePOSChargeParams([]byte(`{"payment":"pay-1","parcel":"p-551","amount":1250,"currency":"EUR"}`))
	require.NoError(t, err)
	require.Equal(t, protocol.POSChargeParams{Payment: "pay-1", Parcel: "p-551", Amount: 1250, Currency: "EUR"}, p)
	for _, bad := range []string{
		``, `null`, `[]`, `{}`, `{"payment":"pay-1","parcel":"p-1","amount":0,"currency":"EUR"}`,
		`{"payment":"pay-1","parcel":"p-1","amount":-5,"currency":"EUR"}`, `{"payment":"pay-1","parcel":"p-1","amount":5,"currency":"eur"}`,
		`{"payment":"","parcel":"p-1","amount":5,"currency":"EUR"}`, `{"payment":"pay 1","parcel":"p-1","amount":5,"currency":"EUR"}`,
		`{"payment":"pay-1","parcel":"p-1","amount":5,"currency":"EUR","tip":1}`, `{"payment":"pay-1","parcel":"p-1","amount":1e12,"currency":"EUR"}`,
		`{"payment":"pay-1","parcel":"p-1","amount":5,"currency":"EUR"}{}`, `{"payment":"` + strings.Repeat("x", 2000) + `"}`,
	} {
		_, err := protocol.DecodePOSChargeParams([]byte(bad))
		require.ErrorIs(t, err, protocol.ErrInvalid, bad)
	}
	r, err := protocol.DecodePOSChargeResult([]byte(`{"approved":true,"reference":"T-0001"}`))
	require.NoError(t, err)
	require.Equal(t, "T-0001", r.Reference)
	for _, bad := range []string{``, `{}`, `{"approved":false,"reference":"T"}`, `{"approved":true}`, `{"approved":true,"reference":"a b"}`,
		`{"approved":true,"reference":"T","extra":1}`, `{"approved":"yes","reference":"T"}`} {
		_, err := protocol.DecodePOSChargeResult([]byte(bad))
		require.ErrorIs(t, err, protocol.ErrInvalid, bad)
	}
}

// FuzzDecodePOSCharge: what a locker's terminal answers (and what a locker
// is asked) never crashes the decoders, and what they accept is in bounds.
func FuzzDecodePOSCharge(f *testing.F) {
	for _, s := range []string{`{"approved":true,"reference":"T-1"}`, `{"payment":"pay-1","parcel":"p-1","amount":1250,"currency":"EUR"}`,
		`{"approved":false}`, `{"amount":-1}`, `{"reference":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if r, err := protocol.DecodePOSChargeResult(in); err != nil {
			if !errors.Is(err, protocol.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		} else if !r.Approved || r.Reference == "" || len(r.Reference) > 64 {
			t.Fatalf("accepted result %+v", r)
		}
		if p, err := protocol.DecodePOSChargeParams(in); err != nil {
			if !errors.Is(err, protocol.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		} else if p.Amount <= 0 || p.Amount > protocol.MaxAmount || !protocol.ValidCurrency(p.Currency) || p.Payment == "" || p.Parcel == "" {
			t.Fatalf("accepted params %+v", p)
		}
	})
}
