package fleet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// CodeKeys keeps each locker's pickup-code secret (DESIGN decision 18): 32
// random bytes, made on first use, under which the hub and the locker derive
// the same 8-digit codes (protocol.PickupCode). The secret goes to the
// locker by the codes.key RPC only — sent straight through the broker, not
// as a fleet command (commands' params are listed by the API) — after the
// locker subscribes to rpc/req, on every change and every DeliveryResend
// until the locker answers with that version, which is recorded as
// delivered_version. The secret never appears in the twin, its history, the
// stream, the audit log (a rotation records the version only), logs,
// metrics or any API answer. Disabling or deleting a locker deletes its key.
type CodeKeys struct {
	pool *pgxpool.Pool
	d    *delivery
}

// NewCodeKeys builds the key store; Load it, wire Subscribed and Response to
// the broker, then Run it.
func NewCodeKeys(pool *pgxpool.Pool, req Requester, log *slog.Logger, reg prometheus.Registerer) *CodeKeys {
	k := &CodeKeys{pool: pool}
	k.d = newDelivery(protocol.MethodCodesKey, "ck-", "code_keys", req, codeKeyStore{pool}, log, reg)
	return k
}

// Load reads which lockers have not acknowledged their current key.
func (k *CodeKeys) Load(ctx context.Context) error { return k.d.load(ctx) }

// Run delivers keys until ctx ends.
func (k *CodeKeys) Run(ctx context.Context) { k.d.run(ctx) }

// Subscribed is a broker.OnSubscribed observer: the key goes out when the
// locker subscribes to rpc/req.
func (k *CodeKeys) Subscribed(lockerID string, kinds []protocol.Kind) {
	k.d.Subscribed(lockerID, kinds)
}

// Response is a broker.OnResponse observer: the locker's {"version": N}.
func (k *CodeKeys) Response(lockerID string, res protocol.Response) { k.d.Response(lockerID, res) }

// Key returns the locker's secret, making one (crypto/rand) on first use and
// sending it to the locker. ErrNotFound for a locker that does not exist.
func (k *CodeKeys) Key(ctx context.Context, lockerID string) ([]byte, error) {
	var secret []byte
	err := k.pool.QueryRow(ctx, `SELECT secret FROM fleet_code_keys WHERE locker_id = $1`, lockerID).Scan(&secret)
	if err == nil {
		return secret, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("code key of %s: %w", lockerID, err)
	}
	fresh := make([]byte, protocol.PickupKeyBytes)
	rand.Read(fresh)
	var version int64
	var created bool
	// A concurrent first use may win: then its key is the key.
	err = k.pool.QueryRow(ctx, `INSERT INTO fleet_code_keys (locker_id, version, secret)
		VALUES ($1, nextval('fleet_delivery_version'), $2)
		ON CONFLICT (locker_id) DO UPDATE SET locker_id = fleet_code_keys.locker_id
		RETURNING version, secret, xmax = 0`, lockerID, fresh).Scan(&version, &secret, &created)
	if err != nil {
		if pg.IsCode(err, "23503") { // foreign_key_violation: no such locker
			return nil, fmt.Errorf("code key: locker %s: %w", lockerID, ErrNotFound)
		}
		return nil, fmt.Errorf("code key of %s: %w", lockerID, err)
	}
	if created {
		k.d.changed(lockerID, version)
	}
	return secret, nil
}

// Rotate replaces the locker's secret with a new one (making the first if
// there is none), records the rotation (version only) in the audit log and
// sends it to the locker. Codes derived from the old secret stop working at
// the locker once it has the new one. It returns the new version.
func (k *CodeKeys) Rotate(ctx context.Context, lockerID string) (int64, error) {
	fresh := make([]byte, protocol.PickupKeyBytes)
	rand.Read(fresh)
	var version int64
	err := pg.Tx(ctx, k.pool, func(tx pgx.Tx) error {
		var before *int64
		err := tx.QueryRow(ctx, `SELECT version FROM fleet_code_keys WHERE locker_id = $1 FOR UPDATE`, lockerID).Scan(&before)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		err = tx.QueryRow(ctx, `INSERT INTO fleet_code_keys (locker_id, version, secret)
			VALUES ($1, nextval('fleet_delivery_version'), $2)
			ON CONFLICT (locker_id) DO UPDATE SET version = EXCLUDED.version, secret = EXCLUDED.secret, created_at = now()
			RETURNING version`, lockerID, fresh).Scan(&version)
		if err != nil {
			return err
		}
		e := audit.Entry{Action: ActionUpdate, ObjectType: EntityCodeKey, ObjectID: lockerID, After: map[string]int64{"version": version}}
		if before != nil {
			e.Before = map[string]int64{"version": *before}
		} else {
			e.Action = ActionCreate
		}
		return audit.Record(ctx, tx, e)
	})
	if err != nil {
		if pg.IsCode(err, "23503") {
			return 0, fmt.Errorf("rotate code key: locker %s: %w", lockerID, ErrNotFound)
		}
		return 0, fmt.Errorf("rotate code key of %s: %w", lockerID, err)
	}
	k.d.changed(lockerID, version)
	return version, nil
}

// DeliveredVersion returns the current key version of a locker and the one
// it acknowledged (0, 0 without a key).
func (k *CodeKeys) DeliveredVersion(ctx context.Context, lockerID string) (version, delivered int64, err error) {
	err = k.pool.QueryRow(ctx, `SELECT version, delivered_version FROM fleet_code_keys WHERE locker_id = $1`, lockerID).Scan(&version, &delivered)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	return version, delivered, err
}

// EntityCodeKey is the audit object type of a locker's code secret (whose
// value is never recorded).
const EntityCodeKey = "code_key"

type codeKeyStore struct{ pool *pgxpool.Pool }

func (s codeKeyStore) pending(ctx context.Context) (map[string]int64, error) {
	return pendingVersions(ctx, s.pool, `SELECT locker_id, version FROM fleet_code_keys WHERE delivered_version < version`)
}

func (s codeKeyStore) params(ctx context.Context, lockerID string) (int64, any, bool, error) {
	var p protocol.CodesKeyParams
	err := s.pool.QueryRow(ctx, `SELECT version, secret FROM fleet_code_keys WHERE locker_id = $1 AND delivered_version < version`,
		lockerID).Scan(&p.Version, &p.Key)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	return p.Version, p, true, nil
}

func (s codeKeyStore) delivered(ctx context.Context, lockerID string, version int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE fleet_code_keys SET delivered_version = $2
		WHERE locker_id = $1 AND version <= $2 AND delivered_version < $2`, lockerID, version)
	return err
}

func pendingVersions(ctx context.Context, pool *pgxpool.Pool, sql string) (map[string]int64, error) {
	rows, err := pool.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var id string
	var v int64
	_, err = pgx.ForEachRow(rows, []any{&id, &v}, func() error { out[id] = v; return nil })
	return out, err
}
