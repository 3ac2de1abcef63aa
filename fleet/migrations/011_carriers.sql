-- Carriers: the transport companies, and how the lockers are divided among
-- them (docs/parcels.md, "Carriers"). A carrier may use a locker that names it
-- (fleet_lockers.carriers: the whole locker), every locker of a segment
-- assigned to it, and a locker where it has a quota of cells per size.
CREATE TABLE fleet_carriers (
	id         text PRIMARY KEY,
	name       text NOT NULL DEFAULT '',
	contact    text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- The carriers lockers named before this list existed join it.
INSERT INTO fleet_carriers (id, name)
SELECT DISTINCT c, c FROM fleet_lockers, unnest(carriers) AS c;

-- Segments of the network given to a carrier: every locker in the segment,
-- now and later.
CREATE TABLE fleet_carrier_segments (
	carrier    text NOT NULL REFERENCES fleet_carriers (id) ON DELETE CASCADE,
	segment    text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (carrier, segment)
);
CREATE INDEX fleet_carrier_segments_segment ON fleet_carrier_segments (segment);

-- Quotas in a shared locker: the carrier holds at most `cells` cells of the
-- size there, and that many are kept for it (carriers without a quota share
-- the rest). The quotas of one locker and size never add up to more cells
-- than the locker has of that size (checked when set).
CREATE TABLE fleet_carrier_quotas (
	carrier    text NOT NULL REFERENCES fleet_carriers (id) ON DELETE CASCADE,
	locker_id  text NOT NULL REFERENCES fleet_lockers (id) ON DELETE CASCADE,
	size       text NOT NULL CHECK (size IN ('S', 'M', 'L', 'XL')),
	cells      int  NOT NULL CHECK (cells >= 0),
	PRIMARY KEY (carrier, locker_id, size)
);
CREATE INDEX fleet_carrier_quotas_locker ON fleet_carrier_quotas (locker_id);

-- The carriers that may use a locker: its own, those of its segments and
-- those with a quota there, sorted.
CREATE FUNCTION fleet_carrier_access(locker text, own text[], segs text[]) RETURNS text[]
LANGUAGE sql STABLE AS $$
	SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM (
		SELECT unnest(own) AS c
		UNION SELECT carrier FROM fleet_carrier_segments WHERE segment = ANY (segs)
		UNION SELECT carrier FROM fleet_carrier_quotas WHERE locker_id = locker) AS x
$$;
