-- Telemetry: one row per sample, and per-minute and per-hour rollups per
-- metric. Every table is range-partitioned on time so that retention is a
-- DROP of whole partitions (autovacuum is off on the hub's machines, and a
-- DELETE of millions of rows would leave them dead). Partitions are created
-- ahead and dropped by the telemetry maintenance loop (telemetry/partitions.go),
-- never by migrations: telemetry_samples_YYYYMMDD and telemetry_rollup_1m_YYYYMMDD
-- are UTC days, telemetry_rollup_1h_YYYYMM UTC months.

-- m holds the measurements as sent: {"temp_c": 4.5, "mains": 1}.
-- The unique constraint deduplicates republished samples (DESIGN decision 11;
-- it must contain the partition key ts) and serves per-locker time ranges.
CREATE TABLE telemetry_samples (
	locker_id text        NOT NULL,
	ts        timestamptz NOT NULL,
	boot      bigint      NOT NULL,
	seq       bigint      NOT NULL,
	received  timestamptz NOT NULL,
	m         jsonb       NOT NULL,
	UNIQUE (locker_id, ts, boot, seq)
) PARTITION BY RANGE (ts);
-- The roller reads "all samples of one minute": rows arrive roughly in ts
-- order, so a BRIN index is enough and costs next to nothing per insert.
CREATE INDEX telemetry_samples_ts ON telemetry_samples USING brin (ts) WITH (pages_per_range = 16);

CREATE TABLE telemetry_rollup_1m (
	locker_id text        NOT NULL,
	metric    text        NOT NULL,
	bucket    timestamptz NOT NULL,
	min       float8      NOT NULL,
	max       float8      NOT NULL,
	sum       float8      NOT NULL,
	n         bigint      NOT NULL,
	PRIMARY KEY (locker_id, metric, bucket)
) PARTITION BY RANGE (bucket);
CREATE INDEX telemetry_rollup_1m_bucket ON telemetry_rollup_1m USING brin (bucket) WITH (pages_per_range = 16);

CREATE TABLE telemetry_rollup_1h (
	locker_id text        NOT NULL,
	metric    text        NOT NULL,
	bucket    timestamptz NOT NULL,
	min       float8      NOT NULL,
	max       float8      NOT NULL,
	sum       float8      NOT NULL,
	n         bigint      NOT NULL,
	PRIMARY KEY (locker_id, metric, bucket)
) PARTITION BY RANGE (bucket);

-- Minutes (UTC) whose samples changed since their rollup was computed: the
-- ingest transaction appends one row per minute its batch touched, the roller
-- deletes the rows it read and recomputes those minutes in one transaction.
-- locker_id NULL means every locker's samples of that minute (recent
-- minutes); a locker ID only that locker's (a late sample, e.g. a locker
-- resending after an outage, so that its backlog does not recompute every
-- locker's minutes).
-- Append-only on purpose (no unique key, no ON CONFLICT): a mark becomes
-- visible exactly when the samples it stands for commit, so the roller never
-- deletes a mark whose samples it did not see, and writers never wait on each
-- other's marks. The roller vacuums these tables (autovacuum is off).
CREATE TABLE telemetry_rollup_dirty (
	minute    timestamptz NOT NULL,
	locker_id text
);

-- Hours (UTC) whose 1-minute rollups changed, written by the roller and read
-- by it once the hour is over; locker_id as above.
CREATE TABLE telemetry_rollup_dirty_1h (
	hour      timestamptz NOT NULL,
	locker_id text
);
