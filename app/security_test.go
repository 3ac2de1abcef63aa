package app_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

// lockedBuffer is a log sink for many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecretsNeverInTheLog: with the hub logging at debug level, a whole
// working day of secrets passes through it — the admin's token and
// password, a new user's password (and a wrong one), an API client's token,
// its webhook secret, a parcel's pickup code typed right and wrong at the
// locker — and none of them appears in the log.
func TestSecretsNeverInTheLog(t *testing.T) {
	logs := &lockedBuffer{}
	in := &inbox{sms: map[string][]string{}, webhooks: map[string]string{}}
	gateway := httptest.NewServer(http.HandlerFunc(in.smsHandler))
	t.Cleanup(gateway.Close)
	h := hubtest.Start(t, func(c *app.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Outbox.SMS.URL = gateway.URL
		c.Outbox.PollInterval = 200 * time.Millisecond
	})
	ctx := context.Background()
	secrets := map[string]string{"admin token": h.AdminToken, "admin password": h.AdminPassword}

	pw := h.AddUser("nina", access.RoleTechnician)
	secrets["user password"] = pw
	h.Login("nina", pw)
	resp, err := http.Post(h.HTTPURL+"/api/v1/session", "application/json", strings.NewReader(`{"username":"nina","password":"wrong-Passw0rd-x"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	secrets["wrong password"] = "wrong-Passw0rd-x"

	_, tok, err := h.App.Access.CreateClient(ctx, "shop", "dhl", []string{access.ScopeParcelsRead, access.ScopeParcelsWrite})
	require.NoError(t, err)
	secrets["client token"] = tok
	shop := apiclient.New(h.HTTPURL, tok)
	body, status, err := shop.Do(ctx, http.MethodPut, "/api/v1/webhook", []byte(`{"url":"http://127.0.0.1:9/hook"}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, string(body))
	var ep struct{ Secret string }
	require.NoError(t, json.Unmarshal(body, &ep))
	secrets["webhook secret"] = ep.Secret

	sim := startLockers(t, h, "SEC", 1, func(c *lockersim.Config) { c.DoorClose = time.Hour })
	l := sim.Locker("SEC00001")
	_, err = h.Admin.UpdateLocker(ctx, "SEC00001", map[string]any{"carriers": []string{"dhl"}})
	require.NoError(t, err)
	p, err := shop.CreateParcel(ctx, apiclient.NewParcel{Locker: "SEC00001", Size: "M", Recipient: apiclient.Recipient{Phone: "+491709999999"}}, "sec-1")
	require.NoError(t, err)
	open, err := h.Admin.DropoffParcel(ctx, p.ID)
	require.NoError(t, err)
	hubtest.Eventually(t, 10*time.Second, "the cell open", func() bool { return l.View(true).Cells[open.Parcel.Cell].Door == protocol.DoorOpen })
	require.NoError(t, l.SetOccupied(open.Parcel.Cell, true))
	require.NoError(t, l.CloseDoor(open.Parcel.Cell))
	code := in.code(t, "+491709999999")
	secrets["pickup code"] = code
	wrong := "1" + code[1:]
	if wrong == code {
		wrong = "2" + code[1:]
	}
	res := l.EnterCode(ctx, wrong, 10*time.Second)
	require.NotNil(t, res.Error)
	res = l.EnterCode(ctx, code, 10*time.Second)
	require.Nil(t, res.Error, "%+v", res)
	hubtest.Eventually(t, 10*time.Second, "the cell opened for the recipient", func() bool {
		return l.View(true).Cells[open.Parcel.Cell].Door == protocol.DoorOpen
	})

	log := logs.String()
	for _, logged := range []string{`msg=login `, `msg="login failed"`, `msg="outbox: sent"`, `msg="locker enrolled"`} {
		require.Contains(t, log, logged, "the paths that handle the secrets log")
	}
	for what, s := range secrets {
		require.NotEmpty(t, s, what)
		require.False(t, strings.Contains(log, s), "the %s is in the hub's log", what)
	}
	require.False(t, strings.Contains(log, wrong), "a wrong pickup code is in the hub's log")
}

// TestDeviceListenerTLS: the lockers' HTTPS listener (enrolment, downloads)
// has the MQTT listener's TLS settings: 1.2 with AEAD suites, or 1.3.
func TestDeviceListenerTLS(t *testing.T) {
	h := hubtest.Start(t)
	addr := strings.TrimPrefix(h.DeviceURL, "https://")
	for _, tc := range []struct {
		name     string
		min, max uint16
		suites   []uint16
		ok       bool
	}{
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, nil, true},
		{"TLS 1.2 AES-GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, true},
		{"TLS 1.2 CBC", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}, false},
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, nil, false},
	} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.CAPool(), ServerName: "127.0.0.1", MinVersion: tc.min, MaxVersion: tc.max, CipherSuites: tc.suites})
		if tc.ok {
			require.NoError(t, err, tc.name)
			c.Close()
		} else {
			require.Error(t, err, tc.name)
		}
	}
}
