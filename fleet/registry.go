// Package fleet holds the lockers: the registry with their identities
// (certificates, enrolment), presence, and later the twin and commands.
package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pki"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the package's schema.
func Migrations() pg.Migrations { return pg.Embedded("fleet", migrationsFS, "migrations") }

// Errors callers map to API and MQTT codes.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInvalid      = errors.New("invalid")
	ErrDisabled     = errors.New("locker is disabled")
	ErrTokenInvalid = errors.New("enrolment token is unknown, used or expired")
)

// Limits of the registry.
const (
	MaxCells        = 1000
	DefaultTokenTTL = 24 * time.Hour
	MaxTokenTTL     = 30 * 24 * time.Hour
)

// Certificate is an issued device certificate.
type Certificate struct {
	Serial      string    `json:"serial"`
	Certificate string    `json:"certificate"`
	CA          string    `json:"ca"`
	NotAfter    time.Time `json:"not_after"`
}

// EnrollToken is a one-time token for factory enrolment.
type EnrollToken struct {
	LockerID  string    `json:"locker_id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Connections closes live device connections; the broker implements it.
type Connections interface {
	Kick(lockerID string)
}

type entry struct {
	enabled bool
	online  bool   // connected to this hub
	remote  string // connected to this other node (cluster mode, fleet/cluster.go)
}

// Registry is the set of lockers and their identities, kept in PostgreSQL and
// mirrored in memory for the broker's checks at every handshake and CONNECT.
type Registry struct {
	pool *pgxpool.Pool
	ca   *pki.CA
	log  *slog.Logger

	mu      sync.RWMutex
	lockers map[string]*entry
	revoked map[string]struct{} // certificate serials
	conns   Connections

	presence  *presenceWriter
	observers []func(Change)
	announce  func(lockerIDs []string) // cluster mode: tell the other nodes (nil: a single hub)
}

// NewRegistry returns a registry; call Load before use and Run to record presence.
func NewRegistry(pool *pgxpool.Pool, ca *pki.CA, log *slog.Logger) *Registry {
	return &Registry{
		pool: pool, ca: ca, log: log,
		lockers:  map[string]*entry{},
		revoked:  map[string]struct{}{},
		presence: newPresenceWriter(pool, log),
	}
}

// SetConnections tells the registry how to close a locker's live connection
// (on revocation). Call it before serving requests.
func (r *Registry) SetConnections(c Connections) {
	r.mu.Lock()
	r.conns = c
	r.mu.Unlock()
}

// Load reads lockers and revoked serials into memory.
func (r *Registry) Load(ctx context.Context) error {
	lockers := map[string]*entry{}
	rows, err := r.pool.Query(ctx, `SELECT id, enabled FROM fleet_lockers`)
	if err != nil {
		return fmt.Errorf("load lockers: %w", err)
	}
	var id string
	var enabled bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &enabled}, func() error {
		lockers[id] = &entry{enabled: enabled}
		return nil
	}); err != nil {
		return fmt.Errorf("load lockers: %w", err)
	}
	revoked := map[string]struct{}{}
	rows, err = r.pool.Query(ctx, `SELECT serial FROM fleet_certificates WHERE revoked_at IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("load revocations: %w", err)
	}
	var serial string
	if _, err := pgx.ForEachRow(rows, []any{&serial}, func() error {
		revoked[serial] = struct{}{}
		return nil
	}); err != nil {
		return fmt.Errorf("load revocations: %w", err)
	}
	r.mu.Lock()
	r.lockers, r.revoked = lockers, revoked
	r.mu.Unlock()
	return nil
}

// Run records presence changes in PostgreSQL until ctx ends, then flushes.
func (r *Registry) Run(ctx context.Context) { r.presence.run(ctx) }

// Authorize says whether a locker may hold a connection: it must be registered and enabled.
func (r *Registry) Authorize(lockerID string) error {
	r.mu.RLock()
	e := r.lockers[lockerID]
	r.mu.RUnlock()
	switch {
	case e == nil:
		return fmt.Errorf("%w: locker %s is not registered", ErrNotFound, lockerID)
	case !e.enabled:
		return fmt.Errorf("%w: %s", ErrDisabled, lockerID)
	}
	return nil
}

// Revoked reports whether a certificate serial (lower-case hex) is revoked.
func (r *Registry) Revoked(serial string) bool {
	r.mu.RLock()
	_, ok := r.revoked[serial]
	r.mu.RUnlock()
	return ok
}

// IssueCertificate signs a CSR for a registered, enabled locker and records it.
func (r *Registry) IssueCertificate(ctx context.Context, lockerID string, csrPEM []byte) (Certificate, error) {
	if err := r.Authorize(lockerID); err != nil {
		return Certificate{}, err
	}
	return r.issueTx(ctx, lockerID, csrPEM, "issue")
}

// issueTx issues a certificate and records it (action issue, renew) in one transaction.
func (r *Registry) issueTx(ctx context.Context, lockerID string, csrPEM []byte, action string) (Certificate, error) {
	var cert Certificate
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		var err error
		cert, err = r.issue(ctx, tx, lockerID, csrPEM, action)
		return err
	})
	return cert, err
}

// certRecord is a certificate in the audit log (without the PEM).
type certRecord struct {
	Serial   string    `json:"serial"`
	LockerID string    `json:"locker_id"`
	NotAfter time.Time `json:"not_after"`
}

func (r *Registry) issue(ctx context.Context, tx pgx.Tx, lockerID string, csrPEM []byte, action string) (Certificate, error) {
	db := tx
	cert, certPEM, err := r.ca.SignDevice(csrPEM, lockerID, pki.DeviceValidity)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	serial := pki.SerialString(cert.SerialNumber)
	var s string
	// Only for a locker that is still there and enabled: the row lock waits
	// for a delete or disable in progress, whose revocation would miss this.
	err = db.QueryRow(ctx, `INSERT INTO fleet_certificates (serial, locker_id, not_before, not_after)
		SELECT $1, id, $3, $4 FROM fleet_lockers WHERE id = $2 AND enabled FOR KEY SHARE RETURNING serial`,
		serial, lockerID, cert.NotBefore, cert.NotAfter).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return Certificate{}, fmt.Errorf("%w: locker %s (deleted or disabled meanwhile)", ErrNotFound, lockerID)
	}
	if err != nil {
		return Certificate{}, fmt.Errorf("record certificate: %w", err)
	}
	if err := audit.Record(ctx, tx, audit.Entry{Action: action, ObjectType: "certificate", ObjectID: serial,
		After: certRecord{Serial: serial, LockerID: lockerID, NotAfter: cert.NotAfter}}); err != nil {
		return Certificate{}, err
	}
	return Certificate{Serial: serial, Certificate: string(certPEM), CA: string(r.ca.CertPEM), NotAfter: cert.NotAfter}, nil
}

// RevokeCertificates revokes every certificate of a locker, refuses them from
// now on and closes the locker's live connection. It returns how many were
// revoked by this call.
func (r *Registry) RevokeCertificates(ctx context.Context, lockerID string) (int, error) {
	if _, err := r.Get(ctx, lockerID); err != nil {
		return 0, err
	}
	var serials []string
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		var err error
		if serials, err = revokeAll(ctx, tx, lockerID); err != nil {
			return err
		}
		return recordRevocation(ctx, tx, lockerID, serials)
	})
	if err != nil {
		return 0, err
	}
	r.applyRevocation(lockerID, serials)
	return len(serials), nil
}

// revokeAll marks every unrevoked certificate of a locker revoked and returns
// their serials; the caller applies them with applyRevocation after the commit.
func revokeAll(ctx context.Context, q querier, lockerID string) ([]string, error) {
	rows, err := q.Query(ctx, `UPDATE fleet_certificates SET revoked_at = now()
		WHERE locker_id = $1 AND revoked_at IS NULL RETURNING serial`, lockerID)
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}
	serials, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}
	return serials, nil
}

// recordRevocation records the revocation of a locker's certificates (none
// is recorded when it had none left to revoke).
func recordRevocation(ctx context.Context, tx pgx.Tx, lockerID string, serials []string) error {
	if len(serials) == 0 {
		return nil
	}
	return audit.Record(ctx, tx, audit.Entry{Action: "revoke", ObjectType: "certificate", ObjectID: lockerID,
		After: map[string]any{"locker_id": lockerID, "serials": serials}})
}

// applyRevocation refuses the serials from now on and closes the locker's connection.
func (r *Registry) applyRevocation(lockerID string, serials []string) {
	r.mu.Lock()
	for _, s := range serials {
		r.revoked[s] = struct{}{}
	}
	conns, announce := r.conns, r.announce
	r.mu.Unlock()
	if conns != nil {
		conns.Kick(lockerID)
	}
	if announce != nil && len(serials) > 0 {
		announce([]string{lockerID})
	}
	r.log.Info("certificates revoked", "locker", lockerID, "count", len(serials))
}

// Renew signs a new CSR for a locker that proved its identity with its current,
// valid, unrevoked certificate (checked by the TLS layer). The old certificate
// stays valid until it expires or is revoked.
func (r *Registry) Renew(ctx context.Context, lockerID string, csrPEM []byte) (Certificate, error) {
	if err := r.Authorize(lockerID); err != nil {
		return Certificate{}, err
	}
	return r.issueTx(ctx, lockerID, csrPEM, "renew")
}

// CreateEnrollToken makes a one-time token that a locker exchanges, with its CSR,
// for its certificate at POST /api/v1/enroll.
func (r *Registry) CreateEnrollToken(ctx context.Context, lockerID string, ttl time.Duration) (EnrollToken, error) {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Minute || ttl > MaxTokenTTL {
		return EnrollToken{}, fmt.Errorf("%w: ttl must be between 1 minute and %s", ErrInvalid, MaxTokenTTL)
	}
	if err := r.Authorize(lockerID); err != nil {
		return EnrollToken{}, err
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return EnrollToken{}, err
	}
	tok := "et_" + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(tok))
	t := EnrollToken{LockerID: lockerID, Token: tok}
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO fleet_enroll_tokens (token_hash, locker_id, expires_at)
			VALUES ($1, $2, now() + $3::interval) RETURNING expires_at`, h[:], lockerID, ttl.String()).Scan(&t.ExpiresAt)
		if err != nil {
			return err
		}
		// The token itself is a secret: the record names the locker and the expiry only.
		return audit.Record(ctx, tx, audit.Entry{Action: ActionCreate, ObjectType: "enroll_token", ObjectID: lockerID,
			After: map[string]any{"locker_id": lockerID, "expires_at": t.ExpiresAt}})
	})
	if err != nil {
		return EnrollToken{}, fmt.Errorf("create enrolment token: %w", err)
	}
	return t, nil
}

// Enroll exchanges an unused, unexpired token and a CSR for a certificate. The
// token is spent only when the certificate is issued (one transaction).
func (r *Registry) Enroll(ctx context.Context, token string, csrPEM []byte) (Certificate, error) {
	if token == "" || len(token) > 200 {
		return Certificate{}, ErrTokenInvalid
	}
	h := sha256.Sum256([]byte(token))
	var cert Certificate
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		var lockerID string
		err := tx.QueryRow(ctx, `UPDATE fleet_enroll_tokens SET used_at = now()
			WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING locker_id`, h[:]).Scan(&lockerID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrTokenInvalid
		}
		if err != nil {
			return err
		}
		if err := r.Authorize(lockerID); err != nil {
			return err
		}
		// The locker proves who it is with the token: the record's actor.
		ctx := audit.WithActor(ctx, deviceActor(ctx, lockerID))
		cert, err = r.issue(ctx, tx, lockerID, csrPEM, "enroll")
		return err
	})
	if err != nil {
		return Certificate{}, fmt.Errorf("enrol: %w", err)
	}
	return cert, nil
}

// Online reports whether the locker has a live connection.
func (r *Registry) Online(lockerID string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.lockers[lockerID]
	return e != nil && (e.online || e.remote != "")
}

// CountOnline returns how many lockers have a live connection.
func (r *Registry) CountOnline() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, e := range r.lockers {
		if e.online || e.remote != "" {
			n++
		}
	}
	return n
}

// Count returns how many lockers are registered.
func (r *Registry) Count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.lockers)
}

// Connected records that a locker's session was established.
func (r *Registry) Connected(lockerID string, at time.Time) {
	r.setOnline(lockerID, true)
	r.presence.record(lockerID, at, true)
}

// Disconnected records that a locker's current session ended.
func (r *Registry) Disconnected(lockerID string, at time.Time) {
	r.setOnline(lockerID, false)
	r.presence.record(lockerID, at, false)
}

func (r *Registry) setOnline(id string, on bool) {
	r.mu.Lock()
	if e := r.lockers[id]; e != nil {
		e.online = on
		if on {
			e.remote = "" // here now, whatever another node said last
		}
	}
	r.mu.Unlock()
}
