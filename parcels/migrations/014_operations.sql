-- Parcel operations (docs/parcels.md "Operations"): what the parcel is
-- (barcode, declared contents and value), moves between cells, and the
-- where and why of every history entry.
ALTER TABLE parcels_parcels
	ADD COLUMN barcode        text   NOT NULL DEFAULT '',
	ADD COLUMN contents       text   NOT NULL DEFAULT '',
	ADD COLUMN declared_value bigint NOT NULL DEFAULT 0 CHECK (declared_value >= 0), -- minor units (cents)
	ADD COLUMN currency       text   NOT NULL DEFAULT '',
	-- A move between cells: the cell the parcel is leaving (still held until
	-- the move is done) and the stage (from: the old cell is open for the
	-- parcel to be taken out; to: the new cell is open for it to go in).
	ADD COLUMN move_from      text   NOT NULL DEFAULT '',
	ADD COLUMN move_stage     text   NOT NULL DEFAULT '' CHECK (move_stage IN ('', 'from', 'to'));

-- Search (GET /api/v1/parcels): every filter has an index; the rest of the
-- predicate is evaluated on the rows it selects.
CREATE INDEX parcels_parcels_barcode ON parcels_parcels (barcode) WHERE barcode <> '';
CREATE INDEX parcels_parcels_phone ON parcels_parcels (recipient_phone) WHERE recipient_phone <> '';
CREATE INDEX parcels_parcels_email ON parcels_parcels (lower(recipient_email)) WHERE recipient_email <> '';
CREATE INDEX parcels_parcels_locker ON parcels_parcels (locker_id, created_at DESC);
CREATE INDEX parcels_parcels_carrier ON parcels_parcels (carrier, created_at DESC) WHERE carrier <> '';
CREATE INDEX parcels_parcels_state ON parcels_parcels (state, created_at DESC);
CREATE INDEX parcels_parcels_moving ON parcels_parcels (locker_id, move_from) WHERE move_from <> '';

ALTER TABLE parcels_history
	ADD COLUMN locker_id text NOT NULL DEFAULT '',
	ADD COLUMN cell      text NOT NULL DEFAULT '',
	-- What was behind the entry: command:<id>, report:<boot>.<seq> (the
	-- locker's report that showed it), ask:<id>, api, sweep.
	ADD COLUMN source    text NOT NULL DEFAULT '';

-- Customer returns (docs/parcels.md "Returns"): a return parcel is dropped
-- at the locker by its sender with a return code and collected by the
-- carrier's courier.
ALTER TABLE parcels_parcels
	ADD COLUMN kind text NOT NULL DEFAULT 'delivery' CHECK (kind IN ('delivery', 'return'));
CREATE INDEX parcels_parcels_to_collect ON parcels_parcels (locker_id, carrier) WHERE holds_cell AND to_return;
