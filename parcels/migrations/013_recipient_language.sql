-- The recipient's language (BCP 47, e.g. "de", "de-AT"; '' unknown): it
-- chooses the language override of notification templates (outbox).
ALTER TABLE parcels_parcels ADD COLUMN recipient_language text NOT NULL DEFAULT '';
