package fleet_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/pki"
)

type kicks struct {
	mu  sync.Mutex
	ids []string
}

func (k *kicks) Kick(id string) { k.mu.Lock(); k.ids = append(k.ids, id); k.mu.Unlock() }

func newRegistry(t *testing.T) (*fleet.Registry, *pki.CA) {
	pool := pgtest.Pool(t, audit.Migrations(), fleet.Migrations())
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	require.NoError(t, err)
	r := fleet.NewRegistry(pool, ca, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, r.Load(context.Background()))
	return r, ca
}

func TestCreateValidates(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	for _, bad := range []fleet.NewLocker{
		{ID: "", Cells: 10},
		{ID: "lockers/x", Cells: 10},
		{ID: "L+1", Cells: 10},
		{ID: "L1", Cells: 0},
		{ID: "L1", Cells: 5000},
	} {
		_, _, err := r.Create(ctx, bad)
		require.ErrorIs(t, err, fleet.ErrInvalid, "%+v", bad)
	}
	l, _, err := r.Create(ctx, fleet.NewLocker{ID: "L1", Cells: 20, Segment: "north"})
	require.NoError(t, err)
	require.Equal(t, "L1", l.ID)
	require.True(t, l.Enabled)
	require.Equal(t, []string{"north"}, l.Segments, "segment is a shorthand for one segment")
	_, _, err = r.Create(ctx, fleet.NewLocker{ID: "L1", Cells: 20})
	require.ErrorIs(t, err, fleet.ErrExists)
	require.NoError(t, r.Authorize("L1"))
	require.ErrorIs(t, r.Authorize("L2"), fleet.ErrNotFound)
}

func TestRevokeCoversEveryCertificateAndSurvivesReload(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	k := &kicks{}
	r.SetConnections(k)
	_, _, err := r.Create(ctx, fleet.NewLocker{ID: "L1", Cells: 4})
	require.NoError(t, err)
	var serials []string
	for i := 0; i < 2; i++ {
		csr, _, err := pki.NewKeyAndCSR("L1")
		require.NoError(t, err)
		c, err := r.IssueCertificate(ctx, "L1", csr)
		require.NoError(t, err)
		require.False(t, r.Revoked(c.Serial))
		serials = append(serials, c.Serial)
	}
	n, err := r.RevokeCertificates(ctx, "L1")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, []string{"L1"}, k.ids, "the live connection is closed")
	require.NoError(t, r.Load(ctx))
	for _, s := range serials {
		require.True(t, r.Revoked(s), "revocation is durable")
	}
	_, err = r.RevokeCertificates(ctx, "nope")
	require.ErrorIs(t, err, fleet.ErrNotFound)
}

func TestEnrollTokenIsOneTime(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	_, _, err := r.Create(ctx, fleet.NewLocker{ID: "L1", Cells: 4})
	require.NoError(t, err)
	tok, err := r.CreateEnrollToken(ctx, "L1", time.Hour)
	require.NoError(t, err)
	csr, _, err := pki.NewKeyAndCSR("whatever")
	require.NoError(t, err)

	_, err = r.Enroll(ctx, tok.Token, []byte("not a csr"))
	require.ErrorIs(t, err, fleet.ErrInvalid)
	c, err := r.Enroll(ctx, tok.Token, csr)
	require.NoError(t, err, "a failed attempt does not spend the token")
	leaf, err := pki.ParseCertPEM([]byte(c.Certificate))
	require.NoError(t, err)
	require.Equal(t, "L1", leaf.Subject.CommonName)

	_, err = r.Enroll(ctx, tok.Token, csr)
	require.ErrorIs(t, err, fleet.ErrTokenInvalid, "second use")
	_, err = r.Enroll(ctx, "et_forged", csr)
	require.ErrorIs(t, err, fleet.ErrTokenInvalid)
	_, err = r.CreateEnrollToken(ctx, "L1", time.Second)
	require.ErrorIs(t, err, fleet.ErrInvalid)
}

func TestPresenceIsRecorded(t *testing.T) {
	r, _ := newRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	_, _, err := r.Create(ctx, fleet.NewLocker{ID: "L1", Cells: 4})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	at := time.Now().Truncate(time.Millisecond)
	r.Connected("L1", at)
	require.True(t, r.Online("L1"))
	require.Eventually(t, func() bool {
		l, err := r.Get(context.Background(), "L1")
		return err == nil && l.ConnectedAt != nil && l.ConnectedAt.Equal(at)
	}, 5*time.Second, 20*time.Millisecond)
	r.Disconnected("L1", at.Add(time.Second))
	require.False(t, r.Online("L1"))
	cancel()
	<-done
	l, err := r.Get(context.Background(), "L1")
	require.NoError(t, err)
	require.NotNil(t, l.DisconnectedAt, "shutdown flushes pending presence")
	require.True(t, l.DisconnectedAt.Equal(at.Add(time.Second)))
}
