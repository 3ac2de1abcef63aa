package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/protocol"
)

// inbox is what a receiver outside the hub got: SMS texts by recipient and
// webhook bodies (signature checked) by delivery id.
type inbox struct {
	mu       sync.Mutex
	sms      map[string][]string
	webhooks map[string]string // delivery id → event type
	secret   string
	badSigs  int
}

func (in *inbox) smsHandler(w http.ResponseWriter, r *http.Request) {
	var m struct{ To, Text string }
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	in.mu.Lock()
	in.sms[m.To] = append(in.sms[m.To], m.Text)
	in.mu.Unlock()
}

func (in *inbox) webhookHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := outbox.Verify(in.secret, r.Header.Get("Lockerhub-Signature"), body, time.Now(), 5*time.Minute); err != nil {
		in.badSigs++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev struct{ ID, Type string }
	_ = json.Unmarshal(body, &ev)
	in.webhooks[ev.ID] = ev.Type
}

var eightDigits = regexp.MustCompile(`\b[0-9]{8}\b`)

// code waits for the SMS to phone and returns the pickup code in it.
func (in *inbox) code(t *testing.T, phone string) string {
	t.Helper()
	var code string
	hubtest.Eventually(t, 15*time.Second, "SMS with the pickup code to "+phone, func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		for _, text := range in.sms[phone] {
			if c := eightDigits.FindString(text); c != "" {
				code = c
				return true
			}
		}
		return false
	})
	return code
}

func (in *inbox) hasWebhook(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	_, ok := in.webhooks[id]
	return ok
}

// TestParcelsEndToEnd is the parcel lifecycle as a delivery service, a
// courier and two recipients see it, with every part real: the API client
// creates deliveries, the courier's drop-off opens the cell, the recipient
// gets an SMS with the code from the SMS gateway, types it at the locker
// (online: the locker asks the hub, which opens the cell by a command;
// offline: the locker checks the code against the list and secret the hub
// gave it), and the delivery service receives signed webhooks of each step.
func TestParcelsEndToEnd(t *testing.T) {
	in := &inbox{sms: map[string][]string{}, webhooks: map[string]string{}}
	gateway := httptest.NewServer(http.HandlerFunc(in.smsHandler))
	t.Cleanup(gateway.Close)
	receiver := httptest.NewServer(http.HandlerFunc(in.webhookHandler))
	t.Cleanup(receiver.Close)

	h := hubtest.Start(t, func(c *app.Config) {
		c.Outbox.SMS.URL = gateway.URL
		c.Outbox.PollInterval = 200 * time.Millisecond
		c.Commands.ConfirmWithin = 3 * time.Second
	})
	ctx := context.Background()

	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = 1, 4, "E2E"
	cfg.Ramp, cfg.StatusEvery = 0, 0
	cfg.DoorClose = time.Hour // the people in this test close the doors
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	simCtx, stopSim := context.WithCancel(ctx)
	require.NoError(t, sim.Start(simCtx))
	t.Cleanup(func() { stopSim(); sim.Stop() })
	const lockerID = "E2E00001"
	l := sim.Locker(lockerID)
	hubtest.Eventually(t, 30*time.Second, "locker online with its cells", func() bool {
		row, ok := h.App.Overview.Row(lockerID)
		return h.App.Broker.Online(lockerID) && ok && row.FreeCells["M"] == 4
	})
	_, err = h.Admin.UpdateLocker(ctx, lockerID, map[string]any{"carriers": []string{"dhl"}, "address": "Hauptstraße 5, 10115 Berlin"})
	require.NoError(t, err)

	// The delivery service: an API client of dhl with its webhook endpoint.
	_, tok, err := h.App.Access.CreateClient(ctx, "shop", "dhl", []string{access.ScopeParcelsRead, access.ScopeParcelsWrite})
	require.NoError(t, err)
	shop := apiclient.New(h.HTTPURL, tok)
	body, status, err := shop.Do(ctx, http.MethodPut, "/api/v1/webhook", []byte(`{"url":"`+receiver.URL+`"}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, string(body))
	var ep struct{ Secret string }
	require.NoError(t, json.Unmarshal(body, &ep))
	require.NotEmpty(t, ep.Secret)
	in.mu.Lock()
	in.secret = ep.Secret
	in.mu.Unlock()

	deliver := func(ref, phone string) apiclient.Parcel {
		t.Helper()
		p, err := shop.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Reference: ref,
			Recipient: apiclient.Recipient{Name: "Ann", Phone: phone}}, ref)
		require.NoError(t, err)
		open, err := h.Admin.DropoffParcel(ctx, p.ID)
		require.NoError(t, err)
		hubtest.Eventually(t, 10*time.Second, "the reserved cell opened for the courier", func() bool {
			return l.View(true).Cells[open.Parcel.Cell].Door == protocol.DoorOpen
		})
		require.NoError(t, l.SetOccupied(open.Parcel.Cell, true))
		require.NoError(t, l.CloseDoor(open.Parcel.Cell))
		hubtest.Eventually(t, 10*time.Second, p.ID+" deposited", func() bool {
			got, err := h.Admin.Parcel(ctx, p.ID)
			require.NoError(t, err)
			return got.State == "deposited"
		})
		got, err := h.Admin.Parcel(ctx, p.ID)
		require.NoError(t, err)
		return got
	}
	waitState := func(id, state string) {
		t.Helper()
		hubtest.Eventually(t, 15*time.Second, id+" "+state, func() bool {
			got, err := h.Admin.Parcel(ctx, id)
			require.NoError(t, err)
			return got.State == state
		})
	}

	// Online: the code from the SMS, typed at the keypad.
	p1 := deliver("order-1", "+491701111111")
	code1 := in.code(t, "+491701111111")
	res := l.EnterCode(ctx, "00000000", 10*time.Second)
	require.Equal(t, lockersim.CodeOnline, res.Path)
	require.NotNil(t, res.Error, "a wrong code opens nothing")
	require.Equal(t, protocol.ErrCodeWrongCode, res.Error.Code)
	res = l.EnterCode(ctx, code1, 10*time.Second)
	require.Equal(t, lockersim.CodeOnline, res.Path)
	require.Nil(t, res.Error, "%+v", res)
	require.Equal(t, p1.Cell, res.Cell)
	hubtest.Eventually(t, 10*time.Second, "the hub opened the cell by a command", func() bool {
		return l.View(true).Cells[p1.Cell].Door == protocol.DoorOpen
	})
	require.NoError(t, l.SetOccupied(p1.Cell, false))
	require.NoError(t, l.CloseDoor(p1.Cell))
	waitState(p1.ID, "picked_up")

	// Offline: the locker holds the parcel in its own list and checks the
	// code itself; the pickup reaches the hub after the reconnect.
	p2 := deliver("order-2", "+491702222222")
	code2 := in.code(t, "+491702222222")
	hubtest.Eventually(t, 15*time.Second, "the locker's pickup-code secret and offline list hold "+p2.ID, func() bool {
		if l.View(false).CodeKey == 0 {
			return false // made at the first deposit, then sent by codes.key
		}
		for _, lp := range l.View(false).Parcels {
			if lp.ID == p2.ID && lp.Cell == p2.Cell {
				return true
			}
		}
		return false
	})
	l.GoOffline(time.Hour)
	hubtest.Eventually(t, 10*time.Second, "locker offline", func() bool { return !h.App.Broker.Online(lockerID) })
	res = l.EnterCode(ctx, code2, time.Second)
	require.Equal(t, lockersim.CodeOffline, res.Path)
	require.True(t, res.Opened, "%+v", res)
	require.Equal(t, p2.Cell, res.Cell)
	require.NoError(t, l.SetOccupied(p2.Cell, false))
	require.NoError(t, l.CloseDoor(p2.Cell))
	l.ComeOnline()
	waitState(p2.ID, "picked_up")
	hubtest.Eventually(t, 15*time.Second, "the list no longer holds the parcel", func() bool {
		return len(l.View(false).Parcels) == 0
	})

	// The delivery service heard of every step, signed.
	for _, id := range []string{p1.ID + ":reserved", p1.ID + ":deposited", p1.ID + ":picked_up", p2.ID + ":deposited", p2.ID + ":picked_up"} {
		hubtest.Eventually(t, 15*time.Second, "webhook "+id, func() bool { return in.hasWebhook(id) })
	}
	in.mu.Lock()
	require.Zero(t, in.badSigs, "every webhook verifies with the endpoint's secret")
	require.Contains(t, in.sms["+491701111111"][0], "Hauptstraße 5, 10115 Berlin", "the SMS names the locker's address")
	in.mu.Unlock()
}
