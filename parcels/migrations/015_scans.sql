-- Every barcode a locker's scanner read and asked the hub about
-- (barcode.check), with the answer: the parcel it matched, or why not.
CREATE TABLE parcels_scans (
	id        bigserial PRIMARY KEY,
	locker_id text NOT NULL,
	ask_id    text NOT NULL,
	at        timestamptz NOT NULL,
	barcode   text NOT NULL,
	purpose   text NOT NULL,
	cell      text NOT NULL DEFAULT '',
	parcel_id text REFERENCES parcels_parcels (id) ON DELETE SET NULL, -- the parcel it was checked against
	result    text NOT NULL -- ok, unknown_barcode, barcode_mismatch, …
);
CREATE INDEX parcels_scans_parcel ON parcels_scans (parcel_id, id) WHERE parcel_id IS NOT NULL;
CREATE INDEX parcels_scans_locker ON parcels_scans (locker_id, at DESC);
