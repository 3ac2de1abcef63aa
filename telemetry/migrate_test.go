package telemetry_test

import (
	"context"
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/telemetry"
)

// TestCompactRollupsMigration upgrades a database that has the first
// telemetry schema (rollups one row per metric), samples and rollups: 002
// replaces the rollup tables and marks every sampled minute, so the roller
// rebuilds the rollups in the new form.
func TestCompactRollupsMigration(t *testing.T) {
	first, err := os.ReadFile("migrations/001_samples.sql")
	require.NoError(t, err)
	url := pgtest.NewDB(t, pg.Migrations{Package: "telemetry", FS: fstest.MapFS{"001_samples.sql": {Data: first}}})
	ctx := context.Background()
	pool, err := pg.Connect(ctx, url, 4)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	now := time.Now().UTC()
	base := now.Truncate(time.Hour).Add(-2 * time.Hour)
	for _, ddl := range []string{
		partitionOf("telemetry_samples", base), partitionOf("telemetry_samples", base.Add(61*time.Minute)), partitionOf("telemetry_rollup_1m", base),
	} {
		_, err := pool.Exec(ctx, ddl)
		require.NoError(t, err, ddl)
	}
	_, err = pool.Exec(ctx, `INSERT INTO telemetry_samples VALUES ('L1', $1, 1, 1, $1, '{"temp_c": 1, "mains": 1}'),
		('L1', $1::timestamptz + interval '10 seconds', 1, 2, $1, '{"temp_c": 3}'), ('L2', $1::timestamptz + interval '61 minutes', 1, 1, $1, '{"temp_c": 7}')`, base)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO telemetry_rollup_1m VALUES ('L1', 'temp_c', $1, 1, 3, 4, 2)`, base)
	require.NoError(t, err)

	applied, err := pg.Migrate(ctx, pool, telemetry.Migrations())
	require.NoError(t, err)
	require.Equal(t, 1, applied)
	r := start(t, pool, testConfig())
	require.Zero(t, r.count(`SELECT count(*) FROM telemetry_rollup_1m`), "the old rollups are gone")
	require.Equal(t, 2, r.rollUp(now), "both sampled minutes were marked")
	a, ok := r.rollup("telemetry_rollup_1m", "L1", "temp_c", base)
	require.True(t, ok)
	require.Equal(t, agg{1, 3, 4, 2}, a)
	a, _ = r.rollup("telemetry_rollup_1m", "L1", "mains", base)
	require.Equal(t, agg{1, 1, 1, 1}, a)
	a, _ = r.rollup("telemetry_rollup_1h", "L2", "temp_c", base.Add(time.Hour))
	require.Equal(t, agg{7, 7, 7, 1}, a)
	require.Equal(t, 3, r.count(`SELECT count(*) FROM telemetry_samples`), "samples stay")
}

// partitionOf creates the daily partition of table holding t, as the hub names it.
func partitionOf(table string, t time.Time) string {
	d := t.UTC().Truncate(24 * time.Hour)
	return `CREATE TABLE IF NOT EXISTS ` + table + `_` + d.Format("20060102") + ` PARTITION OF ` + table + ` FOR VALUES FROM ('` +
		d.Format(time.RFC3339) + `') TO ('` + d.Add(24*time.Hour).Format(time.RFC3339) + `')`
}
