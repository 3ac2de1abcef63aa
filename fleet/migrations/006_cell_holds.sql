-- A cell can be held for a purpose, so it is not counted as free for
-- loading: "returns" keeps it for parcels that recipients send back.
ALTER TABLE fleet_cells ADD COLUMN hold text CHECK (hold IN ('returns'));
