-- How long a reservation of this API client waits for the drop-off before it
-- expires and frees its cell (parcels' sweep); 0: the hub's default
-- (--reservation-time).
ALTER TABLE access_clients ADD COLUMN reservation_hours int NOT NULL DEFAULT 0
	CHECK (reservation_hours >= 0 AND reservation_hours <= 720);
