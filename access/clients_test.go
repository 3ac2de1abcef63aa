package access_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
)

func TestClientTokenScopesCarrierRevoke(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()

	for _, tc := range []struct {
		name, carrier string
		scopes        []string
	}{
		{"shop", "", []string{access.ScopeLockersRead}},         // no carrier
		{"shop", "dhl", nil},                                    // no scope
		{"shop", "dhl", []string{"lockers:write"}},              // unknown scope
		{"Has Space", "dhl", []string{access.ScopeLockersRead}}, // bad name
		{"shop", "a,b", []string{access.ScopeLockersRead}},      // bad carrier
	} {
		_, _, err := s.CreateClient(ctx, tc.name, tc.carrier, tc.scopes)
		require.ErrorIs(t, err, access.ErrInvalid, "%+v", tc)
	}

	c, tok, err := s.CreateClient(ctx, "shop", " dhl ", []string{access.ScopeLockersRead, access.ScopeParcelsWrite, access.ScopeLockersRead})
	require.NoError(t, err)
	require.Equal(t, "dhl", c.Carrier)
	require.Equal(t, []string{access.ScopeLockersRead, access.ScopeParcelsWrite}, c.Scopes)
	require.Regexp(t, `^lhc_[A-Za-z0-9_-]{43}$`, tok)
	_, _, err = s.CreateClient(ctx, "shop", "dhl", []string{access.ScopeLockersRead})
	require.ErrorIs(t, err, access.ErrExists)

	p, err := s.Authenticate(ctx, tok)
	require.NoError(t, err)
	require.Equal(t, access.RoleClient, p.Role)
	require.Equal(t, "dhl", p.Carrier)
	require.True(t, p.HasScope(access.ScopeParcelsWrite))
	require.False(t, p.HasScope(access.ScopeCommandsWrite))

	// Only the hash is at rest.
	var stored []byte
	require.NoError(t, access.Pool(s).QueryRow(ctx, `SELECT hash FROM access_clients WHERE name = 'shop'`).Scan(&stored))
	h := sha256.Sum256([]byte(tok))
	require.Equal(t, h[:], stored)

	cs, err := s.Clients(ctx)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.NotNil(t, cs[0].LastUsedAt)

	_, err = s.RevokeClient(ctx, "shop")
	require.NoError(t, err)
	_, err = s.Authenticate(ctx, tok)
	require.ErrorIs(t, err, access.ErrUnauthenticated)
	_, err = s.RevokeClient(ctx, "nobody")
	require.ErrorIs(t, err, access.ErrNotFound)
}

func TestUpdateUserRoleCarrierDisable(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	_, err := s.AddUser(ctx, access.NewUser{Username: "c1", Password: "long enough password", Role: access.RoleCourier})
	require.ErrorIs(t, err, access.ErrInvalid, "a courier needs a carrier")
	u, err := s.AddUser(ctx, access.NewUser{Username: "c1", Password: "long enough password", Role: access.RoleCourier, Carrier: "dhl"})
	require.NoError(t, err)
	require.Equal(t, "dhl", u.Carrier)

	sess, err := s.Login(ctx, "c1", "long enough password", "127.0.0.1:1")
	require.NoError(t, err)
	require.Equal(t, "dhl", sess.Principal().Carrier)

	empty := ""
	_, err = s.UpdateUser(ctx, "c1", access.UserPatch{Carrier: &empty})
	require.ErrorIs(t, err, access.ErrInvalid, "a courier without carrier")
	viewer := access.RoleViewer
	u, err = s.UpdateUser(ctx, "c1", access.UserPatch{Role: &viewer, Carrier: &empty})
	require.NoError(t, err)
	require.Equal(t, access.RoleViewer, u.Role)
	got, err := s.Session(ctx, sess.ID)
	require.NoError(t, err, "a role change keeps the session")
	require.Equal(t, access.RoleViewer, got.Principal().Role)
	require.Empty(t, got.Principal().Carrier)

	yes, no := true, false
	u, err = s.UpdateUser(ctx, "c1", access.UserPatch{Disabled: &yes})
	require.NoError(t, err)
	require.NotNil(t, u.DisabledAt)
	_, err = s.Session(ctx, sess.ID)
	require.ErrorIs(t, err, access.ErrNoSession, "disabling ends the sessions")
	u, err = s.UpdateUser(ctx, "c1", access.UserPatch{Disabled: &no})
	require.NoError(t, err)
	require.Nil(t, u.DisabledAt)
	_, err = s.Session(ctx, sess.ID)
	require.ErrorIs(t, err, access.ErrNoSession, "enabling again does not bring old sessions back")

	us, err := s.Users(ctx)
	require.NoError(t, err)
	require.Len(t, us, 1)
	_, err = s.UpdateUser(ctx, "nobody", access.UserPatch{Disabled: &yes})
	require.ErrorIs(t, err, access.ErrNotFound)
}

func TestLastAdminStays(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	_, err := s.AddUser(ctx, access.NewUser{Username: "root", Password: "long enough password", Role: access.RoleAdmin})
	require.NoError(t, err)
	yes, viewer := true, access.RoleViewer
	_, err = s.UpdateUser(ctx, "root", access.UserPatch{Disabled: &yes})
	require.ErrorIs(t, err, access.ErrInvalid)
	require.ErrorContains(t, err, "last active admin")
	_, err = s.UpdateUser(ctx, "root", access.UserPatch{Role: &viewer})
	require.ErrorIs(t, err, access.ErrInvalid)
	_, err = s.AddUser(ctx, access.NewUser{Username: "root2", Password: "long enough password", Role: access.RoleAdmin})
	require.NoError(t, err)
	_, err = s.UpdateUser(ctx, "root", access.UserPatch{Disabled: &yes})
	require.NoError(t, err, "another admin is left")
	_, err = s.UpdateUser(ctx, "root2", access.UserPatch{Role: &viewer})
	require.ErrorIs(t, err, access.ErrInvalid)
}
