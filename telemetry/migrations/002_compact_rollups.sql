-- Compact rollups: one row per locker and bucket holding every metric of
-- that bucket, instead of one row per locker, metric and bucket (≈ 165 bytes
-- a row with its key, so ≈ 820 bytes per locker and minute with five
-- metrics: more than the raw sample itself at the recommended 60-s
-- telemetry).
--
-- agg maps each metric to its aggregate over the bucket:
--   a number v       exactly one sample: min = max = sum = v, n = 1;
--   [min,max,sum,n]  otherwise.
-- e.g. {"temp_c":4.5,"mains":[0,1,3,5]}. The bare number is what a 1-minute
-- bucket holds at 60-s telemetry, and makes such a row about as small as the
-- raw sample (≈ 230 bytes with five metrics, against ≈ 440 for parallel
-- float8[] arrays and ≈ 480 for jsonb arrays throughout; measured in
-- docs/benchmarks.md). jsonb keeps float8 values exactly (shortest
-- round-trip digits). telemetry/query.go unpacks one metric.
--
-- The rollups are derived data: the old tables are dropped (with their
-- partitions, which the hub's partition maintenance creates again) and every
-- minute that has raw samples is marked dirty, so the roller rebuilds both
-- rollups from the samples at its next passes. The mark tables stay
-- append-only; old marks left in them are harmless repeats.

DROP TABLE telemetry_rollup_1m, telemetry_rollup_1h;

CREATE TABLE telemetry_rollup_1m (
	locker_id text        NOT NULL,
	bucket    timestamptz NOT NULL,
	agg       jsonb       NOT NULL,
	PRIMARY KEY (locker_id, bucket)
) PARTITION BY RANGE (bucket);
-- The roller reads every locker's minutes of one hour.
CREATE INDEX telemetry_rollup_1m_bucket ON telemetry_rollup_1m USING brin (bucket) WITH (pages_per_range = 16);

CREATE TABLE telemetry_rollup_1h (
	locker_id text        NOT NULL,
	bucket    timestamptz NOT NULL,
	agg       jsonb       NOT NULL,
	PRIMARY KEY (locker_id, bucket)
) PARTITION BY RANGE (bucket);

-- This reads every raw sample kept once (seconds on a developer's database;
-- a long step at 10,000 lockers × 30 days), and the roller's first pass then
-- rebuilds every kept minute in one transaction.
INSERT INTO telemetry_rollup_dirty (minute, locker_id)
	SELECT DISTINCT date_trunc('minute', ts, 'UTC'), NULL::text FROM telemetry_samples;
