-- Every connect and disconnect of a locker, for its connectivity history.
CREATE TABLE fleet_connectivity (
	locker_id text NOT NULL,
	at        timestamptz NOT NULL,
	online    bool NOT NULL
);
CREATE INDEX fleet_connectivity_recent ON fleet_connectivity (locker_id, at DESC);
