package access

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Token is a bearer token as the API lists it: never the token, nor its hash.
type Token struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

const tokenColumns = `id, name, role, created_at, revoked_at`

func tokenFields(t *Token) []any {
	return []any{&t.ID, &t.Name, &t.Role, &t.CreatedAt, &t.RevokedAt}
}

// Tokens lists the bearer tokens, revoked ones too, oldest first.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM access_tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) {
		var t Token
		return t, r.Scan(tokenFields(&t)...)
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// NewAdminToken makes another admin token named name (1 to 64 characters)
// and returns it with the token itself, shown this once.
func (s *Store) NewAdminToken(ctx context.Context, name string) (Token, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 {
		return Token{}, "", fmt.Errorf("%w: a token needs a name of 1 to 64 characters", ErrInvalid)
	}
	tok, err := s.CreateToken(ctx, name, RoleAdmin)
	if err != nil {
		return Token{}, "", err
	}
	var t Token
	k := keyOf(tok)
	if err := s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM access_tokens WHERE hash = $1`, k[:]).Scan(tokenFields(&t)...); err != nil {
		return Token{}, "", fmt.Errorf("read new token: %w", err)
	}
	return t, tok, nil
}

// RevokeToken revokes a bearer token for good: its next request on this hub
// is refused (other hub nodes: within their credential cache's TTL).
// Revoking a revoked token changes nothing. The admin.token in the data dir,
// once revoked, is replaced by a new one at the hub's next start.
func (s *Store) RevokeToken(ctx context.Context, id int64) (Token, error) {
	var t Token
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var was *time.Time
		if err := tx.QueryRow(ctx, `SELECT revoked_at FROM access_tokens WHERE id = $1 FOR UPDATE`, id).Scan(&was); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `UPDATE access_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING `+tokenColumns,
			id, s.now()).Scan(tokenFields(&t)...)
		if err != nil || was != nil {
			return err // revoked already: nothing changed, nothing to record
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "revoke", ObjectType: "token", ObjectID: strconv.FormatInt(id, 10), After: t})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("%w: token %d", ErrNotFound, id)
	}
	if err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	s.cache.dropWhere(func(e cacheEntry) bool { return e.kind == kindToken && e.principal.TokenID == id })
	return t, nil
}
