package access_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newStore(t *testing.T) (*access.Store, *clock) {
	s := access.NewStore(pgtest.Pool(t, audit.Migrations(), access.Migrations()), access.Config{})
	c := &clock{t: time.Now().Truncate(time.Millisecond)}
	s.SetClock(c.now)
	return s, c
}

func TestPasswordHashIsArgon2idAndSalted(t *testing.T) {
	ctx := context.Background()
	h1, err := access.HashPassword(ctx, "correct horse battery")
	require.NoError(t, err)
	h2, err := access.HashPassword(ctx, "correct horse battery")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$"), h1)
	require.NotEqual(t, h1, h2, "a fresh salt per hash")
	for _, tc := range []struct {
		pw string
		ok bool
	}{{"correct horse battery", true}, {"correct horse batterY", false}, {"", false}, {strings.Repeat("x", 10000), false}} {
		ok, err := access.VerifyPassword(ctx, h1, tc.pw)
		require.NoError(t, err)
		require.Equal(t, tc.ok, ok, tc.pw)
	}
	_, err = access.VerifyPassword(ctx, "$2a$10$bcrypt", "x")
	require.Error(t, err, "not an argon2id hash")
	_, err = access.HashPassword(ctx, "short")
	require.ErrorIs(t, err, access.ErrWeakPassword)
}

func TestCreateUserValidates(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for _, tc := range []struct{ name, pw, role string }{
		{"", "long enough password", "viewer"},
		{"has space", "long enough password", "viewer"},
		{"-dash", "long enough password", "viewer"},
		{strings.Repeat("a", 65), "long enough password", "viewer"},
		{"ok", "short", "viewer"},
		{"ok", "long enough password", "root"},
	} {
		_, err := s.CreateUser(ctx, tc.name, tc.pw, tc.role)
		require.ErrorIs(t, err, access.ErrInvalid, "%+v", tc)
	}
	u, err := s.CreateUser(ctx, " Tech.One@example.com ", "long enough password", access.RoleTechnician)
	require.NoError(t, err)
	require.Equal(t, "tech.one@example.com", u.Username, "usernames are compared in lower case")
	_, err = s.CreateUser(ctx, "TECH.ONE@example.com", "long enough password", access.RoleViewer)
	require.ErrorIs(t, err, access.ErrExists)
}

func TestLoginSessionLogout(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "ada", "long enough password", access.RoleViewer)
	require.NoError(t, err)

	_, err = s.Login(ctx, "ada", "wrong password!!", "10.0.0.1:5")
	require.ErrorIs(t, err, access.ErrBadLogin)
	_, err = s.Login(ctx, "nobody", "long enough password", "10.0.0.1:5")
	require.ErrorIs(t, err, access.ErrBadLogin, "an unknown user looks like a wrong password")
	_, err = s.Login(ctx, "ada", "", "10.0.0.1:5")
	require.ErrorIs(t, err, access.ErrBadLogin)

	sess, err := s.Login(ctx, "ADA", "long enough password", "10.0.0.1:5")
	require.NoError(t, err)
	require.Len(t, sess.ID, 43, "256 random bits")
	require.NotEmpty(t, sess.CSRFToken)
	require.NotEqual(t, sess.ID, sess.CSRFToken)
	got, err := s.Session(ctx, sess.ID)
	require.NoError(t, err)
	require.Equal(t, "ada", got.User.Username)
	require.Equal(t, access.RoleViewer, got.Principal().Role)
	require.Equal(t, sess.CSRFToken, got.CSRFToken)

	_, err = s.Session(ctx, sess.ID+"x")
	require.ErrorIs(t, err, access.ErrNoSession)
	require.NoError(t, s.Logout(ctx, sess.ID))
	_, err = s.Session(ctx, sess.ID)
	require.ErrorIs(t, err, access.ErrNoSession, "logged out")
	require.NoError(t, s.Logout(ctx, sess.ID), "twice is fine")
}

func TestSessionStoresOnlyAHash(t *testing.T) {
	pool := pgtest.Pool(t, audit.Migrations(), access.Migrations())
	s := access.NewStore(pool, access.Config{})
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "ada", "long enough password", access.RoleViewer)
	require.NoError(t, err)
	sess, err := s.Login(ctx, "ada", "long enough password", "")
	require.NoError(t, err)
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM access_sessions WHERE encode(id_hash, 'escape') LIKE '%' || $1 || '%'`, sess.ID).Scan(&n))
	require.Zero(t, n)
	var hash string
	require.NoError(t, pool.QueryRow(ctx, `SELECT password_hash FROM access_users`).Scan(&hash))
	require.NotContains(t, hash, "long enough password")
}

func TestSessionExpiry(t *testing.T) {
	s, c := newStore(t)
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "ada", "long enough password", access.RoleViewer)
	require.NoError(t, err)

	// Idle: 12 h without a request ends it.
	idle, err := s.Login(ctx, "ada", "long enough password", "")
	require.NoError(t, err)
	c.add(access.SessionIdle - time.Minute)
	_, err = s.Session(ctx, idle.ID)
	require.NoError(t, err, "just inside the idle limit; this request renews it")
	c.add(access.SessionIdle - time.Minute)
	_, err = s.Session(ctx, idle.ID)
	require.NoError(t, err, "renewed by the last request")
	c.add(access.SessionIdle + time.Second)
	_, err = s.Session(ctx, idle.ID)
	require.ErrorIs(t, err, access.ErrNoSession, "idle too long")

	// Absolute: 7 days after login, however busy.
	busy, err := s.Login(ctx, "ada", "long enough password", "")
	require.NoError(t, err)
	for range 7 * 24 / 6 {
		_, err = s.Session(ctx, busy.ID)
		require.NoError(t, err)
		c.add(6 * time.Hour)
	}
	_, err = s.Session(ctx, busy.ID)
	require.ErrorIs(t, err, access.ErrNoSession, "past the absolute limit")
}

func TestDisableAndPasswordChangeEndSessions(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for _, u := range []string{"ada", "bob"} {
		_, err := s.CreateUser(ctx, u, "long enough password", access.RoleTechnician)
		require.NoError(t, err)
	}
	ada, err := s.Login(ctx, "ada", "long enough password", "")
	require.NoError(t, err)
	bob, err := s.Login(ctx, "bob", "long enough password", "")
	require.NoError(t, err)

	require.NoError(t, s.DisableUser(ctx, "ada"))
	_, err = s.Session(ctx, ada.ID)
	require.ErrorIs(t, err, access.ErrNoSession)
	_, err = s.Login(ctx, "ada", "long enough password", "")
	require.ErrorIs(t, err, access.ErrDisabled)
	_, err = s.Login(ctx, "ada", "wrong password!!", "")
	require.ErrorIs(t, err, access.ErrBadLogin, "disabled is told only with the right password")
	require.ErrorIs(t, s.DisableUser(ctx, "nobody"), access.ErrNotFound)

	require.NoError(t, s.SetPassword(ctx, "bob", "another long password"))
	_, err = s.Session(ctx, bob.ID)
	require.ErrorIs(t, err, access.ErrNoSession)
	_, err = s.Login(ctx, "bob", "long enough password", "")
	require.ErrorIs(t, err, access.ErrBadLogin)
	_, err = s.Login(ctx, "bob", "another long password", "")
	require.NoError(t, err)
}

func TestThrottle(t *testing.T) {
	th := access.NewThrottle(3, time.Minute, 100)
	c := &clock{t: time.Now()}
	th.SetClock(c.now)
	for range 3 {
		ok, _ := th.Take("ada")
		require.True(t, ok)
	}
	ok, wait := th.Take("ada")
	require.False(t, ok)
	require.Equal(t, time.Minute, wait)
	ok, _ = th.Take("bob")
	require.True(t, ok, "keys are independent")

	c.add(30 * time.Second)
	ok, wait = th.Take("ada")
	require.False(t, ok)
	require.Equal(t, 30*time.Second, wait)
	c.add(30 * time.Second)
	ok, _ = th.Take("ada")
	require.True(t, ok, "one attempt back after a refill interval")

	th.Give("ada")
	ok, _ = th.Take("ada")
	require.True(t, ok, "a success gives its attempt back")
	th.Reset("ada")
	for range 3 {
		ok, _ := th.Take("ada")
		require.True(t, ok)
	}
}

func TestThrottleMemoryIsBounded(t *testing.T) {
	th := access.NewThrottle(3, time.Minute, 100)
	for i := range 1000 {
		th.Take(strings.Repeat("x", i%50) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	require.LessOrEqual(t, th.Keys(), 100)
}
