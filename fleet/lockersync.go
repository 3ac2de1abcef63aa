package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// LockerSync keeps the latest offline parcel list of each locker (the
// prepaid parcels it may hand out by itself while offline, DESIGN decision
// 18) in fleet_parcel_lists and delivers it by the parcels.sync RPC like
// codes.key: after the locker subscribes to rpc/req, on every change and
// every DeliveryResend until the locker answers with that version. The
// parcels package calls SetParcels whenever a locker's list changes.
type LockerSync struct {
	pool *pgxpool.Pool
	d    *delivery
}

// MaxLockerParcels bounds one locker's offline list (a locker has at most
// protocol.MaxCells cells).
const MaxLockerParcels = protocol.MaxCells

// ErrInvalidParcels refuses a parcel list that a locker could not use.
var ErrInvalidParcels = errors.New("invalid offline parcel list")

// NewLockerSync builds it; Load it, wire Subscribed and Response to the
// broker, then Run it.
func NewLockerSync(pool *pgxpool.Pool, req Requester, log *slog.Logger, reg prometheus.Registerer) *LockerSync {
	s := &LockerSync{pool: pool}
	s.d = newDelivery(protocol.MethodParcelsSync, "ps-", "parcel_lists", req, parcelListStore{pool}, log, reg)
	return s
}

// Load reads which lockers have not acknowledged their current list.
func (s *LockerSync) Load(ctx context.Context) error { return s.d.load(ctx) }

// Run delivers lists until ctx ends.
func (s *LockerSync) Run(ctx context.Context) { s.d.run(ctx) }

// Subscribed is a broker.OnSubscribed observer.
func (s *LockerSync) Subscribed(lockerID string, kinds []protocol.Kind) {
	s.d.Subscribed(lockerID, kinds)
}

// Response is a broker.OnResponse observer.
func (s *LockerSync) Response(lockerID string, res protocol.Response) { s.d.Response(lockerID, res) }

// SetParcels replaces a locker's offline parcel list (nil or empty: none),
// bumps its version and sends it; the same list as the stored one changes
// nothing. ErrNotFound for an unknown locker,
// ErrInvalidParcels for a list it could not use.
func (s *LockerSync) SetParcels(ctx context.Context, lockerID string, parcels []protocol.LockerParcel) error {
	if err := checkParcels(parcels); err != nil {
		return err
	}
	if parcels == nil {
		parcels = []protocol.LockerParcel{}
	}
	doc, err := json.Marshal(parcels)
	if err != nil {
		return fmt.Errorf("parcel list of %s: %w", lockerID, err)
	}
	var version int64
	err = s.pool.QueryRow(ctx, `INSERT INTO fleet_parcel_lists (locker_id, version, doc) VALUES ($1, nextval('fleet_delivery_version'), $2)
		ON CONFLICT (locker_id) DO UPDATE SET version = EXCLUDED.version, doc = EXCLUDED.doc, updated_at = now()
			WHERE fleet_parcel_lists.doc IS DISTINCT FROM EXCLUDED.doc
		RETURNING version`, lockerID, doc).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // the same list: nothing to send again
	}
	if err != nil {
		if pg.IsCode(err, "23503") {
			return fmt.Errorf("parcel list: locker %s: %w", lockerID, ErrNotFound)
		}
		return fmt.Errorf("parcel list of %s: %w", lockerID, err)
	}
	s.d.changed(lockerID, version)
	return nil
}

// Parcels returns a locker's current list with its version and the version
// the locker acknowledged (version 0 when it has none).
func (s *LockerSync) Parcels(ctx context.Context, lockerID string) (protocol.ParcelsSyncParams, int64, error) {
	var p protocol.ParcelsSyncParams
	var doc []byte
	var delivered int64
	err := s.pool.QueryRow(ctx, `SELECT version, doc, delivered_version FROM fleet_parcel_lists WHERE locker_id = $1`, lockerID).
		Scan(&p.Version, &doc, &delivered)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, 0, nil
	}
	if err != nil {
		return p, 0, err
	}
	if err := json.Unmarshal(doc, &p.Parcels); err != nil {
		return p, 0, err
	}
	return p, delivered, nil
}

func checkParcels(parcels []protocol.LockerParcel) error {
	if len(parcels) > MaxLockerParcels {
		return fmt.Errorf("%w: %d parcels, at most %d", ErrInvalidParcels, len(parcels), MaxLockerParcels)
	}
	seen := make(map[string]bool, len(parcels))
	for _, p := range parcels {
		switch {
		case p.ID == "" || len(p.ID) > 64:
			return fmt.Errorf("%w: a parcel id must be 1 to 64 characters", ErrInvalidParcels)
		case seen[p.ID]:
			return fmt.Errorf("%w: parcel %s is listed twice", ErrInvalidParcels, p.ID)
		case !protocol.ValidCellName(p.Cell):
			return fmt.Errorf("%w: parcel %s: cell %q", ErrInvalidParcels, p.ID, p.Cell)
		case p.ValidFrom <= 0 || p.ValidTo <= p.ValidFrom:
			return fmt.Errorf("%w: parcel %s: the window must have valid_from > 0 and valid_to after it", ErrInvalidParcels, p.ID)
		}
		seen[p.ID] = true
	}
	return nil
}

type parcelListStore struct{ pool *pgxpool.Pool }

func (s parcelListStore) pending(ctx context.Context) (map[string]int64, error) {
	return pendingVersions(ctx, s.pool, `SELECT locker_id, version FROM fleet_parcel_lists WHERE delivered_version < version`)
}

func (s parcelListStore) params(ctx context.Context, lockerID string) (int64, any, bool, error) {
	var p protocol.ParcelsSyncParams
	var doc []byte
	err := s.pool.QueryRow(ctx, `SELECT version, doc FROM fleet_parcel_lists WHERE locker_id = $1 AND delivered_version < version`,
		lockerID).Scan(&p.Version, &doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	if err := json.Unmarshal(doc, &p.Parcels); err != nil {
		return 0, nil, false, err
	}
	return p.Version, p, true, nil
}

func (s parcelListStore) delivered(ctx context.Context, lockerID string, version int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE fleet_parcel_lists SET delivered_version = $2
		WHERE locker_id = $1 AND version <= $2 AND delivered_version < $2`, lockerID, version)
	return err
}
