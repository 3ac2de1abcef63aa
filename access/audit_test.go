package access_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

// TestAuditOfUsersSessionsTokens: users, logins (also failed ones, a
// security event), logouts, tokens and API clients are on record, and no
// password, hash or token is.
func TestAuditOfUsersSessionsTokens(t *testing.T) {
	pool := pgtest.Pool(t, audit.Migrations(), access.Migrations())
	s := access.NewStore(pool, access.Config{})
	admin := audit.Actor{Kind: audit.KindUser, ID: "1", Name: "root", Role: "admin", Addr: "192.0.2.10"}
	ctx := audit.WithActor(context.Background(), admin)
	const pw = "correct horse battery staple"

	_, err := s.AddUser(ctx, access.NewUser{Username: "Nina", Password: pw, Role: "viewer"})
	require.NoError(t, err)
	web := audit.WithActor(context.Background(), audit.Actor{Kind: audit.KindAnonymous, Addr: "198.51.100.4", RequestID: "r1"})
	_, err = s.Login(web, "nina", "Tr0ub4dor&3-guess", "198.51.100.4")
	require.ErrorIs(t, err, access.ErrBadLogin)
	_, err = s.Login(web, "nobody", "Tr0ub4dor&3-guess", "198.51.100.4")
	require.ErrorIs(t, err, access.ErrBadLogin)
	sess, err := s.Login(web, "nina", pw, "198.51.100.4")
	require.NoError(t, err)
	require.NoError(t, s.Logout(audit.WithActor(context.Background(), audit.Actor{Kind: audit.KindUser, Name: "nina"}), sess.ID))
	require.NoError(t, s.Logout(ctx, sess.ID), "an ended session again: nothing to record")
	role := "technician"
	_, err = s.UpdateUser(ctx, "nina", access.UserPatch{Role: &role})
	require.NoError(t, err)
	require.NoError(t, s.SetPassword(ctx, "nina", pw+" 2"))
	tok, err := s.CreateToken(ctx, "ci", "admin")
	require.NoError(t, err)

	p, err := audit.NewStore(pool).List(context.Background(), audit.Filter{})
	require.NoError(t, err)
	var got []string
	for i := len(p.Records) - 1; i >= 0; i-- {
		r := p.Records[i]
		got = append(got, r.Actor.Name+" "+r.Action+" "+r.ObjectType+" "+r.ObjectID)
		for _, secret := range []string{pw, "Tr0ub4dor", tok, sess.ID, sess.CSRFToken, "argon2"} {
			require.NotContains(t, string(r.Before)+string(r.After), secret)
		}
	}
	require.Equal(t, []string{
		"root create user nina",
		" login_failed user nina",
		" login_failed user nobody",
		"nina login session nina",
		"nina logout session nina",
		"root update user nina",
		"root set_password user nina",
		"root create token 1",
	}, got)
	failed := p.Records[len(p.Records)-2]
	require.Equal(t, audit.KindAnonymous, failed.Actor.Kind)
	require.Equal(t, "198.51.100.4", failed.Actor.Addr)
	login := p.Records[len(p.Records)-4]
	require.Equal(t, audit.KindUser, login.Actor.Kind)
	require.Equal(t, "198.51.100.4", login.Actor.Addr)
	require.Equal(t, "r1", login.Actor.RequestID)
	require.Equal(t, "viewer", login.Actor.Role)
	update := p.Records[2]
	require.Contains(t, string(update.Before), `"role": "viewer"`)
	require.Contains(t, string(update.After), `"role": "technician"`)
}
