-- Locker models, the lockers' place in the world (address, time zone,
-- coordinates), their segments and carriers, and their cells.

CREATE TABLE fleet_models (
	id           text PRIMARY KEY,
	manufacturer text   NOT NULL DEFAULT '',
	name         text   NOT NULL DEFAULT '',
	-- [{"name":"A01","size":"S"}, …]: the cells as printed on the locker.
	-- Empty only for models carried over from 001's free-text model column.
	layout       jsonb  NOT NULL DEFAULT '[]',
	capabilities text[] NOT NULL DEFAULT '{}',
	created_at   timestamptz NOT NULL DEFAULT now(),
	updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Every free-text model a locker named becomes a model without a layout, so
-- that the column can become a reference; its lockers keep their cell count.
INSERT INTO fleet_models (id, name)
SELECT DISTINCT model, model FROM fleet_lockers WHERE model <> '';

ALTER TABLE fleet_lockers ALTER COLUMN model DROP NOT NULL;
ALTER TABLE fleet_lockers ALTER COLUMN model DROP DEFAULT;
UPDATE fleet_lockers SET model = NULL WHERE model = '';
ALTER TABLE fleet_lockers ADD CONSTRAINT fleet_lockers_model_fkey
	FOREIGN KEY (model) REFERENCES fleet_models (id) ON DELETE RESTRICT;
CREATE INDEX fleet_lockers_model ON fleet_lockers (model);

ALTER TABLE fleet_lockers
	ADD COLUMN address    text NOT NULL DEFAULT '',
	ADD COLUMN time_zone  text NOT NULL DEFAULT '',
	ADD COLUMN lat        double precision CHECK (lat BETWEEN -90 AND 90),
	ADD COLUMN lon        double precision CHECK (lon BETWEEN -180 AND 180),
	ADD COLUMN segments   text[] NOT NULL DEFAULT '{}',
	ADD COLUMN carriers   text[] NOT NULL DEFAULT '{}',
	ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
	ADD CONSTRAINT fleet_lockers_coordinates CHECK ((lat IS NULL) = (lon IS NULL));

-- One segment becomes a list of segments.
UPDATE fleet_lockers SET segments = ARRAY[segment] WHERE segment <> '';
UPDATE fleet_lockers SET updated_at = created_at;
ALTER TABLE fleet_lockers DROP COLUMN segment;

CREATE INDEX fleet_lockers_segments ON fleet_lockers USING gin (segments);
CREATE INDEX fleet_lockers_carriers ON fleet_lockers USING gin (carriers);

-- The cells of each locker: from its model's layout, or, for a locker made
-- with a cell count, columns of 10 (A01–A10, B01–B10, …) of size M. col is
-- the column's number (A = 1, Z = 26, AA = 27), row the printed row number.
CREATE TABLE fleet_cells (
	locker_id text NOT NULL REFERENCES fleet_lockers (id) ON DELETE CASCADE,
	name      text NOT NULL,
	size      text NOT NULL CHECK (size IN ('S', 'M', 'L', 'XL')),
	col       int  NOT NULL CHECK (col >= 1),
	row       int  NOT NULL CHECK (row BETWEEN 1 AND 99),
	PRIMARY KEY (locker_id, name)
);

-- Cells of the lockers registered before models: columns of 10 of size M.
-- Column names go A…Z, AA…AZ, BA…, as in lockersim.
INSERT INTO fleet_cells (locker_id, name, size, col, row)
SELECT l.id,
	CASE WHEN c.col <= 26 THEN chr(64 + c.col)
	     ELSE chr(64 + (c.col - 1) / 26) || chr(65 + (c.col - 1) % 26) END
	|| lpad(c.row::text, 2, '0'),
	'M', c.col, c.row
FROM fleet_lockers l,
	LATERAL (SELECT (i - 1) / 10 + 1 AS col, (i - 1) % 10 + 1 AS row
	         FROM generate_series(1, l.cells) AS i) c;
