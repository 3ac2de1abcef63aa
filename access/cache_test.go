package access_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

// cachedStore is a store with its own registry and clock; acquires counts
// the pool's connection acquisitions, so a test sees whether a call asked
// PostgreSQL at all (nothing else uses this pool).
type cachedStore struct {
	*access.Store
	clock *clock
	reg   *prometheus.Registry
}

func newCachedStore(t *testing.T, cfg access.Config) cachedStore {
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	s := access.NewStore(pgtest.Pool(t, audit.Migrations(), access.Migrations()), cfg)
	c := &clock{t: time.Now().Truncate(time.Millisecond)}
	s.SetClock(c.now)
	return cachedStore{Store: s, clock: c, reg: reg}
}

func (s cachedStore) acquires() int64 { return access.Pool(s.Store).Stat().AcquireCount() }

func (s cachedStore) count(t *testing.T, result string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "lockerhub_access_auth_cache_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series result=%s", result)
	return 0
}

func TestAuthCacheAnswersTheSecondRequest(t *testing.T) {
	s := newCachedStore(t, access.Config{})
	ctx := context.Background()
	tok, err := s.CreateToken(ctx, "ops", access.RoleAdmin)
	require.NoError(t, err)
	_, ctok, err := s.CreateClient(ctx, "shop", "dhl", []string{access.ScopeLockersRead})
	require.NoError(t, err)
	_, err = s.CreateUser(ctx, "ada", "long enough password", access.RoleTechnician)
	require.NoError(t, err)
	sess, err := s.Login(ctx, "ada", "long enough password", "")
	require.NoError(t, err)

	p, err := s.Authenticate(ctx, tok)
	require.NoError(t, err)
	cp, err := s.Authenticate(ctx, ctok)
	require.NoError(t, err)
	got, err := s.Session(ctx, sess.ID)
	require.NoError(t, err)
	require.Equal(t, 3.0, s.count(t, "miss"))

	before := s.acquires()
	for range 5 {
		again, err := s.Authenticate(ctx, tok)
		require.NoError(t, err)
		require.Equal(t, p, again)
		again, err = s.Authenticate(ctx, ctok)
		require.NoError(t, err)
		require.Equal(t, cp, again)
		againSess, err := s.Session(ctx, sess.ID)
		require.NoError(t, err)
		require.Equal(t, got, againSess)
	}
	require.Equal(t, before, s.acquires(), "answered without asking PostgreSQL")
	require.Equal(t, 15.0, s.count(t, "hit"))

	// A caller changing the scopes it got does not change the cached ones.
	cp.Scopes[0] = access.ScopeCommandsWrite
	again, err := s.Authenticate(ctx, ctok)
	require.NoError(t, err)
	require.Equal(t, []string{access.ScopeLockersRead}, again.Scopes)

	// A session id is not a bearer token, and a token is no session, cached or not.
	_, err = s.Authenticate(ctx, sess.ID)
	require.ErrorIs(t, err, access.ErrUnauthenticated)
	_, err = s.Session(ctx, tok)
	require.ErrorIs(t, err, access.ErrNoSession)

	// Failures are not cached: each one asks again.
	before = s.acquires()
	for range 3 {
		_, err = s.Authenticate(ctx, "lh_nope")
		require.ErrorIs(t, err, access.ErrUnauthenticated)
	}
	require.Equal(t, before+3, s.acquires())
}

// TestAuthCacheRevocationsApplyAtOnce: every change of a credential on this
// node refuses, or changes, the very next request, however fresh its entry.
func TestAuthCacheRevocationsApplyAtOnce(t *testing.T) {
	s := newCachedStore(t, access.Config{CacheTTL: time.Hour})
	ctx := context.Background()
	pw := "long enough password"
	for _, u := range []string{"ada", "bob", "cy", "dee", "eve"} {
		_, err := s.CreateUser(ctx, u, pw, access.RoleTechnician)
		require.NoError(t, err)
	}
	login := func(user string) string {
		t.Helper()
		sess, err := s.Login(ctx, user, pw, "")
		require.NoError(t, err)
		for range 2 { // the second one is from the cache
			_, err = s.Session(ctx, sess.ID)
			require.NoError(t, err)
		}
		return sess.ID
	}

	// API client revoked.
	_, ctok, err := s.CreateClient(ctx, "shop", "dhl", []string{access.ScopeLockersRead})
	require.NoError(t, err)
	for range 2 {
		_, err = s.Authenticate(ctx, ctok)
		require.NoError(t, err)
	}
	_, err = s.RevokeClient(ctx, "shop")
	require.NoError(t, err)
	_, err = s.Authenticate(ctx, ctok)
	require.ErrorIs(t, err, access.ErrUnauthenticated, "a revoked client's next request")

	// User disabled, by DisableUser and by UpdateUser.
	ada, ada2 := login("ada"), login("ada")
	require.NoError(t, s.DisableUser(ctx, "ada"))
	for _, id := range []string{ada, ada2} {
		_, err = s.Session(ctx, id)
		require.ErrorIs(t, err, access.ErrNoSession, "every session of a disabled user")
	}
	bob := login("bob")
	yes := true
	_, err = s.UpdateUser(ctx, "bob", access.UserPatch{Disabled: &yes})
	require.NoError(t, err)
	_, err = s.Session(ctx, bob)
	require.ErrorIs(t, err, access.ErrNoSession)

	// Role and carrier change: the next request has them.
	cy := login("cy")
	role, carrier := access.RoleCourier, "dhl"
	_, err = s.UpdateUser(ctx, "cy", access.UserPatch{Role: &role, Carrier: &carrier})
	require.NoError(t, err)
	got, err := s.Session(ctx, cy)
	require.NoError(t, err)
	require.Equal(t, access.RoleCourier, got.Principal().Role)
	require.Equal(t, "dhl", got.Principal().Carrier)

	// A new password ends the sessions.
	dee := login("dee")
	require.NoError(t, s.SetPassword(ctx, "dee", "another long password"))
	_, err = s.Session(ctx, dee)
	require.ErrorIs(t, err, access.ErrNoSession)

	// Logout.
	eve, eve2 := login("eve"), login("eve")
	require.NoError(t, s.Logout(ctx, eve))
	_, err = s.Session(ctx, eve)
	require.ErrorIs(t, err, access.ErrNoSession)
	_, err = s.Session(ctx, eve2)
	require.NoError(t, err, "only the one logged out")
}

// TestAuthCacheTTL: a change this node did not make (another hub node's) is
// seen once the entry's TTL has passed on the store's clock.
func TestAuthCacheTTL(t *testing.T) {
	s := newCachedStore(t, access.Config{CacheTTL: 10 * time.Second})
	ctx := context.Background()
	tok, err := s.CreateToken(ctx, "ops", access.RoleAdmin)
	require.NoError(t, err)
	_, err = s.Authenticate(ctx, tok)
	require.NoError(t, err)
	_, err = access.Pool(s.Store).Exec(ctx, `UPDATE access_tokens SET revoked_at = now()`)
	require.NoError(t, err)

	s.clock.add(9 * time.Second)
	_, err = s.Authenticate(ctx, tok)
	require.NoError(t, err, "within the TTL the entry answers")
	s.clock.add(time.Second)
	before := s.acquires()
	_, err = s.Authenticate(ctx, tok)
	require.ErrorIs(t, err, access.ErrUnauthenticated, "after the TTL PostgreSQL is asked again")
	require.Greater(t, s.acquires(), before)
}

// TestAuthCacheSessionStillSlides: a cached session is still written as
// seen (at most once a minute), still ends when idle or at its absolute end,
// and an entry whose session was ended elsewhere is refused when it would
// be written.
func TestAuthCacheSessionStillSlides(t *testing.T) {
	s := newCachedStore(t, access.Config{CacheTTL: 30 * 24 * time.Hour}) // every lookup below is a hit
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "ada", "long enough password", access.RoleViewer)
	require.NoError(t, err)
	sess, err := s.Login(ctx, "ada", "long enough password", "")
	require.NoError(t, err)
	_, err = s.Session(ctx, sess.ID)
	require.NoError(t, err)
	lastSeen := func() time.Time {
		var ts time.Time
		require.NoError(t, access.Pool(s.Store).QueryRow(ctx, `SELECT last_seen_at FROM access_sessions`).Scan(&ts))
		return ts
	}

	start := s.clock.now()
	s.clock.add(30 * time.Second)
	before := s.acquires()
	_, err = s.Session(ctx, sess.ID)
	require.NoError(t, err)
	require.Equal(t, before, s.acquires(), "not written within a minute")
	s.clock.add(31 * time.Second)
	got, err := s.Session(ctx, sess.ID)
	require.NoError(t, err)
	require.Equal(t, s.clock.now(), got.LastSeenAt)
	require.WithinDuration(t, s.clock.now(), lastSeen(), time.Millisecond, "written after a minute")
	require.True(t, lastSeen().After(start))

	// Kept alive past the idle limit by requests, it lives on ...
	for range 3 {
		s.clock.add(6 * time.Hour)
		_, err = s.Session(ctx, sess.ID)
		require.NoError(t, err, "a busy session slides")
	}
	// ... until it is idle for 12 h.
	s.clock.add(access.SessionIdle)
	_, err = s.Session(ctx, sess.ID)
	require.ErrorIs(t, err, access.ErrNoSession, "idle")

	// Absolute end.
	sess, err = s.Login(ctx, "ada", "long enough password", "")
	require.NoError(t, err)
	for i := time.Duration(0); i < access.SessionMax; i += 6 * time.Hour {
		_, err = s.Session(ctx, sess.ID)
		require.NoError(t, err)
		s.clock.add(6 * time.Hour)
	}
	_, err = s.Session(ctx, sess.ID)
	require.ErrorIs(t, err, access.ErrNoSession, "past SessionMax")

	// Ended on another node: refused when its last-seen is next written.
	sess, err = s.Login(ctx, "ada", "long enough password", "")
	require.NoError(t, err)
	_, err = s.Session(ctx, sess.ID)
	require.NoError(t, err)
	_, err = access.Pool(s.Store).Exec(ctx, `DELETE FROM access_sessions`)
	require.NoError(t, err)
	s.clock.add(2 * time.Minute)
	_, err = s.Session(ctx, sess.ID)
	require.ErrorIs(t, err, access.ErrNoSession)
}
