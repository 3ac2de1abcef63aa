-- Reservations not dropped off in time expire (parcels' sweep): the deadline
-- is set at the reservation from the creating API client's setting or the
-- hub's default. NULL (reservations made before this migration): no deadline.
ALTER TABLE parcels_parcels ADD COLUMN reserved_until timestamptz;
ALTER TABLE parcels_parcels DROP CONSTRAINT parcels_parcels_state_check;
ALTER TABLE parcels_parcels ADD CONSTRAINT parcels_parcels_state_check
	CHECK (state IN ('reserved', 'deposited', 'picked_up', 'cancelled', 'expired', 'returned', 'reservation_expired'));
CREATE INDEX parcels_parcels_reservation_due ON parcels_parcels (reserved_until) WHERE state = 'reserved' AND reserved_until IS NOT NULL;
