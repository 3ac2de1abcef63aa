// Package pgtest gives each test a fresh PostgreSQL database cloned from a
// migrated template database, which is built once per schema version.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockerhub/lockerhub/pg"
)

// ServerURL is the server tests use: $HUB_TEST_DATABASE_URL, else
// $HUB_DATABASE_URL, else the local default. Its database part is ignored.
func ServerURL() string {
	for _, k := range []string{"HUB_TEST_DATABASE_URL", "HUB_DATABASE_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// Require skips the test when PostgreSQL is not reachable, or fails it when
// CI=true, and returns an admin connection config for the server.
func Require(t testing.TB) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(ServerURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.Database = "postgres"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL is not reachable at %s:%d (%v); start it with `make test` or "+
			"`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`", cfg.Host, cfg.Port, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	conn.Close(ctx)
	return cfg
}

// NewDB creates a fresh database holding the schema of sets, dropped when the
// test ends, and returns its URL.
func NewDB(t testing.TB, sets ...pg.Migrations) string {
	t.Helper()
	cfg := Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tmpl, err := ensureTemplate(ctx, cfg, sets)
	if err != nil {
		t.Fatalf("pgtest: template database: %v", err)
	}
	name := "lockerhub_test_" + randomHex(6)
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer admin.Close(context.Background())
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", ident(name), ident(tmpl)))
		// 55006: the template is briefly in use (another process is cloning or building it).
		if err == nil || !pg.IsCode(err, "55006") || attempt >= 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident(name))); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	dbcfg := cfg.Copy()
	dbcfg.Database = name
	return urlFor(dbcfg)
}

// Pool opens a pool on a fresh database (see NewDB), closed when the test ends.
func Pool(t testing.TB, sets ...pg.Migrations) *pgxpool.Pool {
	t.Helper()
	url := NewDB(t, sets...)
	pool, err := pg.Connect(context.Background(), url, 4)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func ensureTemplate(ctx context.Context, cfg *pgx.ConnConfig, sets []pg.Migrations) (string, error) {
	h := sha256.New()
	for _, s := range sets {
		fmt.Fprintf(h, "package %s\n", s.Package)
		err := fs.WalkDir(s.FS, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := fs.ReadFile(s.FS, p)
			fmt.Fprintf(h, "%s %d\n", p, len(data))
			h.Write(data)
			return err
		})
		if err != nil {
			return "", err
		}
	}
	name := "lockerhub_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer admin.Close(context.Background())
	// One builder at a time across test processes.
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(7346523)`); err != nil {
		return "", err
	}
	defer func() { _, _ = admin.Exec(context.Background(), `SELECT pg_advisory_unlock(7346523)`) }()
	var ready bool
	err = admin.QueryRow(ctx, `SELECT datistemplate FROM pg_database WHERE datname = $1`, name).Scan(&ready)
	if err == nil && ready {
		return name, nil
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident(name))); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s", ident(name))); err != nil {
		return "", err
	}
	tcfg := cfg.Copy()
	tcfg.Database = name
	pool, err := pg.Connect(ctx, urlFor(tcfg), 2)
	if err != nil {
		return "", err
	}
	_, err = pg.Migrate(ctx, pool, sets...)
	pool.Close()
	if err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH IS_TEMPLATE true", ident(name))); err != nil {
		return "", err
	}
	return name, nil
}

func urlFor(c *pgx.ConnConfig) string {
	u := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", c.User, hostPort(c.Host), c.Port, c.Database)
	if c.Password != "" {
		u = fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", c.User, c.Password, hostPort(c.Host), c.Port, c.Database)
	}
	return u
}

func hostPort(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
