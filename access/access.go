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
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

// Principal is who is calling: a bearer token (TokenID set) or a user's
// session (UserID set).
type Principal struct {
	TokenID int64
	UserID  int64
	Name    string
	Role    string
}

// Store keeps tokens, users and sessions in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool, now: time.Now} }

// CreateToken makes a new random token with a role and returns it; only its hash is stored.
func (s *Store) CreateToken(ctx context.Context, name, role string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "lh_" + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(tok))
	_, err := s.pool.Exec(ctx, `INSERT INTO access_tokens (name, role, hash) VALUES ($1, $2, $3)`, name, role, h[:])
	if err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return tok, nil
}

// Authenticate returns the principal of a token, or ErrUnauthenticated.
func (s *Store) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "" || len(token) > 200 {
		return Principal{}, ErrUnauthenticated
	}
	h := sha256.Sum256([]byte(token))
	var p Principal
	err := s.pool.QueryRow(ctx, `SELECT id, name, role FROM access_tokens WHERE hash = $1 AND revoked_at IS NULL`, h[:]).
		Scan(&p.TokenID, &p.Name, &p.Role)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	return p, nil
}
