package protocol

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPickupCode(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, PickupKeyBytes)
	from := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	in := PickupCodeInput{LockerID: "L1", ParcelID: "p-551", Cell: "B03", ValidFrom: from, ValidTo: from.Add(72 * time.Hour)}

	code, err := PickupCode(secret, in)
	require.NoError(t, err)
	require.Len(t, code, PickupCodeDigits)
	require.Regexp(t, `^[0-9]{8}$`, code)
	again, err := PickupCode(secret, in)
	require.NoError(t, err)
	require.Equal(t, code, again, "the hub and the locker derive the same code")

	require.True(t, PickupCodeValid(secret, in, code, from))
	require.True(t, PickupCodeValid(secret, in, code, in.ValidTo.Add(-time.Second)))
	require.False(t, PickupCodeValid(secret, in, code, from.Add(-time.Second)), "before the window")
	require.False(t, PickupCodeValid(secret, in, code, in.ValidTo), "the window's end is outside it")

	// Each bound field changes the code.
	other := func(f func(*PickupCodeInput)) string {
		c := in
		f(&c)
		s, err := PickupCode(secret, c)
		require.NoError(t, err)
		return s
	}
	for name, f := range map[string]func(*PickupCodeInput){
		"locker": func(c *PickupCodeInput) { c.LockerID = "L2" },
		"parcel": func(c *PickupCodeInput) { c.ParcelID = "p-552" },
		"cell":   func(c *PickupCodeInput) { c.Cell = "B04" },
		"from":   func(c *PickupCodeInput) { c.ValidFrom = c.ValidFrom.Add(time.Second) },
		"to":     func(c *PickupCodeInput) { c.ValidTo = c.ValidTo.Add(time.Second) },
	} {
		require.NotEqual(t, code, other(f), name)
		require.False(t, PickupCodeValid(secret, in, other(f), from), name)
	}
	otherSecret := bytes.Repeat([]byte{8}, PickupKeyBytes)
	c2, err := PickupCode(otherSecret, in)
	require.NoError(t, err)
	require.NotEqual(t, code, c2, "another locker's secret")

	_, err = PickupCode(secret[:16], in)
	require.ErrorIs(t, err, ErrInvalid)
	require.False(t, PickupCodeValid(secret[:16], in, code, from))
	require.False(t, PickupCodeValid(secret, in, code[:7], from))
}
