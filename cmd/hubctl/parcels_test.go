package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/protocol"
)

// TestHubctlParcels: create (a repeated key gives the first parcel), list,
// show and cancel, as tables and --json.
func TestHubctlParcels(t *testing.T) {
	h := hubtest.Start(t)
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "")
	}
	h.AddLocker("HP-1")
	for i := 1; i <= 3; i++ { // the locker's report: three closed, empty cells
		done := make(chan error, 1)
		payload := fmt.Sprintf(`{"boot":1,"seq":%d,"ts":%d,"cells":{"A%02d":{"door":"closed","occupied":false}}}`, i, time.Now().UnixMilli(), i)
		h.App.Twins.Submit(fleet.Inbound{LockerID: "HP-1", Kind: protocol.KindState, Payload: []byte(payload), Received: time.Now(),
			Done: func(err error) { done <- err }})
		require.NoError(t, <-done)
	}
	hubctl := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--server", h.HTTPURL, "--token", h.AdminToken}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := hubctl("parcel", "create", "HP-1", "M", "--phone", "+4917012345", "--reference", "ord-7", "--key", "k1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "State:")
	require.Contains(t, out, "reserved")
	require.Contains(t, out, "ord-7")

	code, out, errOut = hubctl("--json", "parcel", "create", "HP-1", "M", "--phone", "+4917012345", "--reference", "ord-7", "--key", "k1")
	require.Equal(t, 0, code, errOut)
	var p struct{ ID, State, Cell string }
	require.NoError(t, json.Unmarshal([]byte(out), &p))
	require.Equal(t, "reserved", p.State)

	code, out, errOut = hubctl("parcel", "list", "--locker", "HP-1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "STATE")
	require.Contains(t, out, p.ID)
	require.Equal(t, 2, bytes.Count([]byte(out), []byte("\n")), "one parcel for one key:\n%s", out)

	code, out, errOut = hubctl("parcel", "show", p.ID)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "History:")
	require.Contains(t, out, "cell "+p.Cell)

	code, out, errOut = hubctl("parcel", "cancel", p.ID, "--reason", "not needed")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "cancelled")
	require.Contains(t, out, "not needed")

	code, _, errOut = hubctl("parcel", "create", "HP-1", "XXL", "--phone", "+4917012345")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "size")
	code, _, errOut = hubctl("parcel", "create", "HP-1", "M")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "--phone or --email")
	code, _, errOut = hubctl("parcel", "create", "HP-1", "M", "--phone", "+4917012345", "--amount-due", "1250")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "locker_has_no_pos", "HP-1 has no model with a POS terminal")
}

// TestWriteParcelPayments: parcel show lists the amount due, the charges
// and refunds with their fiscal receipts.
func TestWriteParcelPayments(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	p := apiclient.Parcel{ID: "p-1", State: "cancelled", LockerID: "L1", Cell: "A01", Size: "M", CreatedAt: at,
		AmountDue: &apiclient.Money{Amount: 1250, Currency: "EUR"},
		Payments: []apiclient.Payment{
			{ID: "pay-1", Kind: "charge", Amount: 1250, Currency: "EUR", State: "declined", Reason: "declined: insufficient_funds", CreatedAt: at},
			{ID: "pay-2", Kind: "charge", Amount: 1250, Currency: "EUR", State: "approved", TerminalRef: "T-9", CreatedAt: at,
				Receipt: &apiclient.Receipt{ID: "pay-2", Type: "sale", State: "sent", Number: "R-001"}},
			{ID: "ref-1", Kind: "refund", Amount: 1250, Currency: "EUR", State: "approved", RefundOf: "pay-2", CreatedAt: at,
				Receipt: &apiclient.Receipt{ID: "ref-1", Type: "refund", State: "pending", Attempts: 2, LastError: "HTTP 503"}},
		}}
	var out bytes.Buffer
	require.NoError(t, writeParcel(&out, p, time.UTC))
	for _, want := range []string{"Amount due:", "12.50 EUR", "Payments:", "declined: insufficient_funds", "sale sent R-001", "T-9",
		"refund of pay-2", "refund pending (2 attempts: HTTP 503)"} {
		require.Contains(t, out.String(), want)
	}
}
