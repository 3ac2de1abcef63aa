-- Several hub nodes on one database (docs/scaling.md). Each node that runs
-- with a name (--node) keeps a row here while it runs; started_at is its
-- generation: a connection recorded before it is from an earlier run.
CREATE TABLE fleet_nodes (
	node       text PRIMARY KEY,
	started_at timestamptz NOT NULL,
	seen_at    timestamptz NOT NULL
);
-- The node that holds (or last held) the locker's connection; NULL on a
-- single hub.
ALTER TABLE fleet_lockers ADD COLUMN connected_node text;
