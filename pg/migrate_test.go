package pg_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

func TestMigrateAppliesInOrderOnce(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	set := pg.Migrations{Package: "demo", FS: fstest.MapFS{
		"002_add.sql":  {Data: []byte(`ALTER TABLE demo_things ADD COLUMN name text`)},
		"001_init.sql": {Data: []byte(`CREATE TABLE demo_things (id int PRIMARY KEY)`)},
		"README.md":    {Data: []byte(`not a migration`)},
	}}
	n, err := pg.Pending(ctx, pool, set)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	n, err = pg.Migrate(ctx, pool, set)
	require.NoError(t, err)
	require.Equal(t, 2, n, "both files apply, 001 before 002")
	n, err = pg.Migrate(ctx, pool, set)
	require.NoError(t, err)
	require.Zero(t, n, "a second run applies nothing")
	n, err = pg.Pending(ctx, pool, set)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = pool.Exec(ctx, `INSERT INTO demo_things (id, name) VALUES (1, 'x')`)
	require.NoError(t, err)
}

func TestMigrateStopsAtABrokenFile(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	set := pg.Migrations{Package: "bad", FS: fstest.MapFS{
		"001_ok.sql":     {Data: []byte(`CREATE TABLE bad_ok (id int)`)},
		"002_broken.sql": {Data: []byte(`CREATE TABLE bad_broken (id nosuchtype)`)},
	}}
	n, err := pg.Migrate(ctx, pool, set)
	require.ErrorContains(t, err, "bad/002_broken.sql")
	require.Equal(t, 1, n)
	n, err = pg.Pending(ctx, pool, set)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the broken file stays pending")
}

// TestMigrateRefusesANewerSchema: a hub rolled back to an older build, on a
// database a newer one has migrated, refuses to start and says why, and
// changes nothing.
func TestMigrateRefusesANewerSchema(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	newer := pg.Migrations{Package: "roll", FS: fstest.MapFS{
		"001_init.sql": {Data: []byte(`CREATE TABLE roll_things (id int PRIMARY KEY)`)},
		"002_add.sql":  {Data: []byte(`ALTER TABLE roll_things ADD COLUMN name text`)},
	}}
	other := pg.Migrations{Package: "other", FS: fstest.MapFS{
		"001_init.sql": {Data: []byte(`CREATE TABLE other_things (id int PRIMARY KEY)`)},
	}}
	_, err := pg.Migrate(ctx, pool, newer)
	require.NoError(t, err)

	older := pg.Migrations{Package: "roll", FS: fstest.MapFS{
		"001_init.sql": {Data: []byte(`CREATE TABLE roll_things (id int PRIMARY KEY)`)},
	}}
	n, err := pg.Migrate(ctx, pool, other, older)
	require.ErrorIs(t, err, pg.ErrSchemaNewer)
	require.ErrorContains(t, err, "roll/002_add.sql")
	require.Zero(t, n)
	n, err = pg.Pending(ctx, pool, other)
	require.NoError(t, err)
	require.Equal(t, 1, n, "nothing was applied, not even another package's migration")

	// The build that knows every migration runs, and applies the rest.
	n, err = pg.Migrate(ctx, pool, other, newer)
	require.NoError(t, err)
	require.Equal(t, 1, n)
}
