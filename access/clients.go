package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// RoleClient is the role of every API client's principal; what a client may
// do is in its scopes.
const RoleClient = "client"

// Scopes of API clients.
const (
	ScopeLockersRead    = "lockers:read"   // the carrier's lockers, their cells, twins and events
	ScopeTelemetryRead  = "telemetry:read" // the telemetry of the carrier's lockers
	ScopeCommandsRead   = "commands:read"  // commands to the carrier's lockers
	ScopeCommandsWrite  = "commands:write" // open cells of the carrier's lockers
	ScopeParcelsRead    = "parcels:read"   // the client's deliveries
	ScopeParcelsWrite   = "parcels:write"  // create and cancel deliveries
	clientTokenPrefix   = "lhc_"
	maxScopesPerClient  = 16
	clientLastUsedEvery = time.Minute
)

// Scopes lists every scope an API client may hold.
var Scopes = []string{ScopeLockersRead, ScopeTelemetryRead, ScopeCommandsRead, ScopeCommandsWrite, ScopeParcelsRead, ScopeParcelsWrite}

// Client is an API client: a delivery service's or marketplace's system.
type Client struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Carrier    string     `json:"carrier"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// ReservationHours is how long the client's reservations wait for the
	// drop-off before they expire; 0 (left out): the hub's default.
	ReservationHours int `json:"reservation_hours,omitempty"`
}

// MaxReservationHours bounds a client's reservation deadline (30 days).
const MaxReservationHours = 720

const clientColumns = `id, name, carrier, scopes, created_at, last_used_at, revoked_at, reservation_hours`

func clientFields(c *Client) []any {
	return []any{&c.ID, &c.Name, &c.Carrier, &c.Scopes, &c.CreatedAt, &c.LastUsedAt, &c.RevokedAt, &c.ReservationHours}
}

func validReservationHours(h int) error {
	if h < 0 || h > MaxReservationHours {
		return fmt.Errorf("%w: reservation_hours must be 0 (the hub's default) to %d, got %d", ErrInvalid, MaxReservationHours, h)
	}
	return nil
}

// NewClient is an API client to add.
type NewClient struct {
	Name             string   `json:"name"`
	Carrier          string   `json:"carrier"`
	Scopes           []string `json:"scopes"`
	ReservationHours int      `json:"reservation_hours"`
}

// CreateClient adds an API client of a carrier with scopes and returns it
// with its token, which is shown this once: only its hash is kept.
func (s *Store) CreateClient(ctx context.Context, name, carrier string, scopes []string) (Client, string, error) {
	return s.AddClient(ctx, NewClient{Name: name, Carrier: carrier, Scopes: scopes})
}

// AddClient is CreateClient with the client's settings.
func (s *Store) AddClient(ctx context.Context, n NewClient) (Client, string, error) {
	name, carrier, scopes := n.Name, n.Carrier, n.Scopes
	if err := validReservationHours(n.ReservationHours); err != nil {
		return Client{}, "", err
	}
	name = NormalizeUsername(name)
	if !usernameRE.MatchString(name) {
		return Client{}, "", fmt.Errorf("%w: client name must be 1 to 64 of a-z, 0-9, '.', '_', '@', '-', starting with a letter or digit", ErrInvalid)
	}
	carrier, err := ValidCarrier(carrier)
	if err != nil {
		return Client{}, "", err
	}
	if carrier == "" {
		return Client{}, "", fmt.Errorf("%w: an API client needs a carrier", ErrInvalid)
	}
	var sc []string
	for _, x := range scopes {
		x = strings.TrimSpace(x)
		if !slices.Contains(Scopes, x) {
			return Client{}, "", fmt.Errorf("%w: scope must be one of %s, got %q", ErrInvalid, strings.Join(Scopes, ", "), x)
		}
		if !slices.Contains(sc, x) {
			sc = append(sc, x)
		}
	}
	if len(sc) == 0 || len(sc) > maxScopesPerClient {
		return Client{}, "", fmt.Errorf("%w: an API client needs at least one scope (%s)", ErrInvalid, strings.Join(Scopes, ", "))
	}
	tok := clientTokenPrefix + randomToken(32)
	var c Client
	err = pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO access_clients (name, carrier, scopes, hash, reservation_hours) VALUES ($1, $2, $3, $4, $5) RETURNING `+clientColumns,
			name, carrier, sc, hashToken(tok), n.ReservationHours).Scan(clientFields(&c)...)
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionCreate, ObjectType: "client", ObjectID: c.Name, After: c})
	})
	if pg.IsUniqueViolation(err) {
		return Client{}, "", fmt.Errorf("%w: client %s", ErrExists, name)
	}
	if err != nil {
		return Client{}, "", fmt.Errorf("create client: %w", err)
	}
	return c, tok, nil
}

// Clients lists the API clients by name, revoked ones too.
func (s *Store) Clients(ctx context.Context) ([]Client, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+clientColumns+` FROM access_clients ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Client, error) {
		var c Client
		return c, r.Scan(clientFields(&c)...)
	})
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	return cs, nil
}

// ClientPatch changes an API client's settings; nil fields stay.
type ClientPatch struct {
	ReservationHours *int `json:"reservation_hours"`
}

// UpdateClient changes an API client's settings. Audited.
func (s *Store) UpdateClient(ctx context.Context, name string, p ClientPatch) (Client, error) {
	if p.ReservationHours != nil {
		if err := validReservationHours(*p.ReservationHours); err != nil {
			return Client{}, err
		}
	}
	var c Client
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var before Client
		if err := tx.QueryRow(ctx, `SELECT `+clientColumns+` FROM access_clients WHERE name = $1 FOR UPDATE`, NormalizeUsername(name)).Scan(clientFields(&before)...); err != nil {
			return err
		}
		c = before
		if p.ReservationHours != nil {
			c.ReservationHours = *p.ReservationHours
		}
		if c.ReservationHours == before.ReservationHours {
			return nil // nothing changed, nothing to record
		}
		if _, err := tx.Exec(ctx, `UPDATE access_clients SET reservation_hours = $2 WHERE id = $1`, c.ID, c.ReservationHours); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionUpdate, ObjectType: "client", ObjectID: c.Name, Before: before, After: c})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, fmt.Errorf("%w: client %s", ErrNotFound, name)
	}
	if err != nil {
		return Client{}, fmt.Errorf("update client: %w", err)
	}
	return c, nil
}

// ClientReservationHours is how long the reservations of the client with id
// wait for the drop-off (0: the hub's default).
func (s *Store) ClientReservationHours(ctx context.Context, id int64) (int, error) {
	var h int
	err := s.pool.QueryRow(ctx, `SELECT reservation_hours FROM access_clients WHERE id = $1`, id).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: client %d", ErrNotFound, id)
	}
	if err != nil {
		return 0, fmt.Errorf("client reservation time: %w", err)
	}
	return h, nil
}

// RevokeClient revokes an API client's token for good; its next request is
// refused. Revoking a revoked client changes nothing.
func (s *Store) RevokeClient(ctx context.Context, name string) (Client, error) {
	var c Client
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var was *time.Time
		err := tx.QueryRow(ctx, `SELECT revoked_at FROM access_clients WHERE name = $1 FOR UPDATE`, NormalizeUsername(name)).Scan(&was)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `UPDATE access_clients SET revoked_at = coalesce(revoked_at, $2) WHERE name = $1 RETURNING `+clientColumns,
			NormalizeUsername(name), s.now()).Scan(clientFields(&c)...)
		if err != nil || was != nil {
			return err // revoked already: nothing changed, nothing to record
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "revoke", ObjectType: "client", ObjectID: c.Name, After: c})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, fmt.Errorf("%w: client %s", ErrNotFound, name)
	}
	if err != nil {
		return Client{}, fmt.Errorf("revoke client: %w", err)
	}
	s.cache.dropClient(c.ID)
	return c, nil
}

func (s *Store) authenticateClient(ctx context.Context, token string) (Principal, error) {
	key := keyOf(token)
	now := s.now()
	if e, ok := s.cache.get(key, kindClient, now); ok {
		gen := s.cache.generation()
		if now.Sub(e.lastUsed) >= clientLastUsedEvery {
			tag, err := s.pool.Exec(ctx, `UPDATE access_clients SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL`, e.principal.ClientID, now)
			if err != nil {
				return Principal{}, fmt.Errorf("authenticate: %w", err)
			}
			if tag.RowsAffected() == 0 { // revoked on another node
				s.cache.drop(key)
				return Principal{}, ErrUnauthenticated
			}
			e.lastUsed = now
			s.cache.update(key, gen, e)
		}
		p := e.principal
		p.Scopes = slices.Clone(p.Scopes)
		return p, nil
	}
	gen := s.cache.generation()
	var c Client
	err := s.pool.QueryRow(ctx, `SELECT `+clientColumns+` FROM access_clients WHERE hash = $1 AND revoked_at IS NULL`, key[:]).
		Scan(clientFields(&c)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	var lastUsed time.Time
	if c.LastUsedAt != nil {
		lastUsed = *c.LastUsedAt
	}
	if now.Sub(lastUsed) >= clientLastUsedEvery {
		if _, err := s.pool.Exec(ctx, `UPDATE access_clients SET last_used_at = $2 WHERE id = $1`, c.ID, now); err != nil {
			return Principal{}, fmt.Errorf("authenticate: %w", err)
		}
		lastUsed = now
	}
	p := Principal{ClientID: c.ID, Name: c.Name, Role: RoleClient, Carrier: c.Carrier, Scopes: c.Scopes}
	s.cache.put(key, gen, cacheEntry{kind: kindClient, principal: p, lastUsed: lastUsed}, now)
	p.Scopes = slices.Clone(p.Scopes)
	return p, nil
}
