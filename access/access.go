// Package access holds who may call the hub: bearer tokens, users with
// passwords (argon2id) and their browser sessions, and each one's role.
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the package's schema.
func Migrations() pg.Migrations {
	return pg.Embedded("access", migrationsFS, "migrations")
}

// Roles.
const (
	RoleAdmin = "admin"
)

// ErrUnauthenticated means no valid credential was presented.
var ErrUnauthenticated = errors.New("missing or invalid credential")

// Principal is who is calling: a bearer token (TokenID set), a user's
// session (UserID set) or an API client (ClientID set, Role RoleClient, what
// it may do in Scopes).
type Principal struct {
	TokenID  int64
	UserID   int64
	ClientID int64
	Name     string
	Role     string
	// Carrier, when set, limits the principal to the lockers assigned to
	// that carrier.
	Carrier string
	Scopes  []string
}

// HasScope reports whether an API client's principal holds scope.
func (p Principal) HasScope(scope string) bool {
	for _, s := range p.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Store keeps tokens, users and sessions in PostgreSQL, and the credentials
// it authenticated in a small in-memory cache (see Config).
type Store struct {
	pool  *pgxpool.Pool
	now   func() time.Time
	cache *authCache
}

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool, cfg Config) *Store {
	cfg.defaults()
	return &Store{pool: pool, now: time.Now, cache: newAuthCache(cfg)}
}

// CreateToken makes a new random token with a role and returns it; only its hash is stored.
func (s *Store) CreateToken(ctx context.Context, name, role string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "lh_" + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(tok))
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO access_tokens (name, role, hash) VALUES ($1, $2, $3) RETURNING id`, name, role, h[:]).Scan(&id); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionCreate, ObjectType: "token", ObjectID: strconv.FormatInt(id, 10),
			After: map[string]any{"id": id, "name": name, "role": role}})
	})
	if err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return tok, nil
}

// Authenticate returns the principal of a token (an admin token "lh_…" or
// an API client's "lhc_…"), or ErrUnauthenticated.
func (s *Store) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "" || len(token) > 200 {
		return Principal{}, ErrUnauthenticated
	}
	if strings.HasPrefix(token, clientTokenPrefix) {
		return s.authenticateClient(ctx, token)
	}
	key := keyOf(token)
	if e, ok := s.cache.get(key, kindToken, s.now()); ok {
		return e.principal, nil
	}
	gen := s.cache.generation()
	var p Principal
	err := s.pool.QueryRow(ctx, `SELECT id, name, role FROM access_tokens WHERE hash = $1 AND revoked_at IS NULL`, key[:]).
		Scan(&p.TokenID, &p.Name, &p.Role)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	s.cache.put(key, gen, cacheEntry{kind: kindToken, principal: p}, s.now())
	return p, nil
}
