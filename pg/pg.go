// Package pg holds the PostgreSQL pool, the migration runner every domain
// package feeds with its embedded SQL, and transaction helpers.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is used when no database URL is configured.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/lockerhub?sslmode=disable"

// DefaultMaxConns is the hub's pool size unless the URL sets pool_max_conns.
// pgx's own default, max(4, cores), is 4 on a 2-core machine: fewer than the
// hub's writers (twins, commands ×2, telemetry, asks, presence, outbox) that
// each hold a connection for a whole group commit, so an API request's query
// waited for one of them to commit first.
const DefaultMaxConns = 16

// Connect opens a pool and checks the server answers within ctx. maxConns > 0
// sets the pool's size unless the URL has pool_max_conns (the URL wins).
func Connect(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	if maxConns > 0 && !strings.Contains(url, "pool_max_conns=") {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s@%s:%d/%s is not reachable: %w",
			cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// EnsureDatabase creates the database named in url when it does not exist,
// connecting to the "postgres" database of the same server to do it.
func EnsureDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("database server %s:%d is not reachable: %w", cfg.Host, cfg.Port, err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !IsCode(err, "42P04") { // duplicate_database: created meanwhile
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Tx runs fn in a transaction, committing when fn returns nil.
func Tx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, fn)
}

// IsCode reports whether err is a PostgreSQL error with the given SQLSTATE.
func IsCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// IsUniqueViolation reports a unique constraint violation (23505).
func IsUniqueViolation(err error) bool { return IsCode(err, "23505") }
