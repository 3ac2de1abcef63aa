package app_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

// TestShutdownIsOrderedAndLeavesNoGoroutine stops a hub with a connected
// locker and checks that it ends within the shutdown timeout, leaving nothing
// running behind it.
func TestShutdownIsOrderedAndLeavesNoGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	conn, err := tls.Dial("tcp", h.MQTTAddr, h.ClientTLS(cert))
	require.NoError(t, err)
	defer conn.Close()
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "L1"}}
	require.NoError(t, pk.ConnectEncode(&buf))
	_, err = conn.Write(buf.Bytes())
	require.NoError(t, err)
	hubtest.Eventually(t, 5*time.Second, "locker online", func() bool { return h.App.Registry.Online("L1") })
	// A connection that never sends CONNECT must not hold the shutdown either.
	idle, err := tls.Dial("tcp", h.MQTTAddr, h.ClientTLS(cert))
	require.NoError(t, err)
	defer idle.Close()

	start := time.Now()
	h.App.Shutdown()
	require.Less(t, time.Since(start), 10*time.Second)
	h.Admin.HTTP.CloseIdleConnections()

	// The locker was told the server is going away.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, _ := io.ReadAll(conn)
	require.GreaterOrEqual(t, len(got), 2)
	require.Equal(t, byte(packets.Connack<<4), got[0])
	rest := got[2+int(got[1]):]
	require.NotEmpty(t, rest, "a DISCONNECT before the close")
	require.Equal(t, byte(packets.Disconnect<<4), rest[0])
	require.Equal(t, packets.ErrServerShuttingDown.Code, rest[2], "reason: server shutting down")

	goleak.VerifyNone(t, before)
}

func TestStartFailsClearlyWithoutDatabase(t *testing.T) {
	pgtest.Require(t) // the message names the server it tried; the test needs none
	a := app.New(app.Config{
		DataDir:     t.TempDir(),
		DatabaseURL: "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable&connect_timeout=2",
		MQTTAddr:    "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DeviceAddr: "127.0.0.1:0",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := a.Start(ctx)
	a.Shutdown()
	require.ErrorContains(t, err, "not reachable")
	require.ErrorContains(t, err, "HUB_DATABASE_URL")
}

func TestSecondStartReusesIdentityAndCredential(t *testing.T) {
	dir := t.TempDir()
	url := pgtest.NewDB(t, app.Migrations()...)
	var out bytes.Buffer
	cfg := app.Config{DataDir: dir, DatabaseURL: url, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DeviceAddr: "127.0.0.1:0", Out: &out}
	start := func() *app.App {
		a := app.New(cfg)
		require.NoError(t, a.Start(context.Background()))
		return a
	}
	a := start()
	first, firstPassword := a.AdminToken, a.AdminPassword
	a.Shutdown()
	require.Contains(t, out.String(), first, "the credential is printed on first start")
	require.Contains(t, out.String(), "user admin, password "+firstPassword, "so is the dashboard login")
	require.Len(t, firstPassword, 24)
	for _, f := range []string{"ca.key", "server.key", "admin.token", "admin.password"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	caBefore, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)

	out.Reset()
	a = start()
	defer a.Shutdown()
	require.Equal(t, first, a.AdminToken)
	require.Equal(t, firstPassword, a.AdminPassword)
	require.Empty(t, out.String(), "printed once only")
	caAfter, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	require.Equal(t, caBefore, caAfter)
}

// TestDeletingTheAdminPasswordFileResetsIt: the way back in for an operator
// who lost the dashboard password.
func TestDeletingTheAdminPasswordFileResetsIt(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	old := h.AdminPassword
	_, err := h.App.Access.Login(ctx, "admin", old, "")
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(h.DataDir, "admin.password")))
	h.Restart()
	require.NotEqual(t, old, h.AdminPassword)
	_, err = h.App.Access.Login(ctx, "admin", old, "")
	require.ErrorIs(t, err, access.ErrBadLogin)
	_, err = h.App.Access.Login(ctx, "admin", h.AdminPassword, "")
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(h.DataDir, "admin.password"))
	require.NoError(t, err)
	require.Equal(t, h.AdminPassword+"\n", string(data))
}

func TestHTTPListenerServesTLSWhenGivenACertificate(t *testing.T) {
	withTLS, client := hubtest.HTTPTLS(t)
	h := hubtest.Start(t, withTLS)
	resp, err := client.Get("https://" + h.App.HTTPAddr() + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	plain, err := http.Get("http://" + h.App.HTTPAddr() + "/healthz")
	require.NoError(t, err)
	plain.Body.Close()
	require.Equal(t, http.StatusBadRequest, plain.StatusCode, "plain HTTP is not served on a TLS listener")
	local, err := os.ReadFile(filepath.Join(h.DataDir, "hub.json"))
	require.NoError(t, err)
	require.Contains(t, string(local), `"http": "https://`)
}
