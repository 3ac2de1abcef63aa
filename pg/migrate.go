package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migrations is one package's ordered SQL files, named NNN_description.sql.
type Migrations struct {
	Package string // the owning package, e.g. "fleet"
	FS      fs.FS  // holds the .sql files at its root
}

type migration struct {
	pkg     string
	version int
	name    string
	sql     string
}

func (m Migrations) list() ([]migration, error) {
	entries, err := fs.ReadDir(m.FS, ".")
	if err != nil {
		return nil, fmt.Errorf("migrations of %s: %w", m.Package, err)
	}
	var out []migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migrations of %s: %s is not named NNN_description.sql", m.Package, e.Name())
		}
		data, err := fs.ReadFile(m.FS, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{pkg: m.Package, version: v, name: e.Name(), sql: string(data)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations of %s: two files with version %d", m.Package, out[i].version)
		}
	}
	return out, nil
}

const migrationsTable = `CREATE TABLE IF NOT EXISTS pg_migrations (
	package    text NOT NULL,
	version    int  NOT NULL,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (package, version))`

// migrateLock is the advisory lock key that serialises migration runs.
const migrateLock = 0x6c6f636b6572 // "locker"

// ErrSchemaNewer is returned by Migrate when the database holds migrations of
// a package that this build does not know: a newer hub has upgraded it. An
// older hub refuses to run on it (it would read and write tables whose meaning
// it does not know); run the newer hub, or restore the backup taken before
// the upgrade (docs/operations.md).
var ErrSchemaNewer = errors.New("the database schema is newer than this hub")

// Migrate applies every migration not applied yet, package by package in the
// order given, each file in its own transaction, under an advisory lock so that
// several hubs starting at once do not race. It applies nothing and returns
// ErrSchemaNewer when the database has a migration of one of the packages that
// sets does not hold.
func Migrate(ctx context.Context, pool *pgxpool.Pool, sets ...Migrations) (applied int, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLock); err != nil {
		return 0, err
	}
	defer func() { _, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, migrateLock) }()
	if _, err := conn.Exec(ctx, migrationsTable); err != nil {
		return 0, err
	}
	done, err := appliedSet(ctx, conn.Conn())
	if err != nil {
		return 0, err
	}
	lists := make([][]migration, len(sets))
	for i, set := range sets {
		if lists[i], err = set.list(); err != nil {
			return 0, err
		}
	}
	if err := newerThan(done, sets, lists); err != nil {
		return 0, err
	}
	for _, ms := range lists {
		for _, m := range ms {
			if _, ok := done[key(m.pkg, m.version)]; ok {
				continue
			}
			err := pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.sql); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO pg_migrations (package, version, name) VALUES ($1, $2, $3)`, m.pkg, m.version, m.name)
				return err
			})
			if err != nil {
				return applied, fmt.Errorf("migration %s/%s: %w", m.pkg, m.name, err)
			}
			applied++
		}
	}
	return applied, nil
}

// Pending counts migrations not yet applied (0 means the schema is current).
func Pending(ctx context.Context, pool *pgxpool.Pool, sets ...Migrations) (int, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('pg_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, err
	}
	done := map[string]applied{}
	if exists {
		if done, err = appliedSet(ctx, conn.Conn()); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, set := range sets {
		ms, err := set.list()
		if err != nil {
			return 0, err
		}
		for _, m := range ms {
			if _, ok := done[key(m.pkg, m.version)]; !ok {
				n++
			}
		}
	}
	return n, nil
}

// newerThan returns ErrSchemaNewer, naming the earliest applied migration of
// the packages of sets that lists do not hold.
func newerThan(done map[string]applied, sets []Migrations, lists [][]migration) error {
	known := map[string]bool{}
	pkgs := map[string]bool{}
	for i, set := range sets {
		pkgs[set.Package] = true
		for _, m := range lists[i] {
			known[key(m.pkg, m.version)] = true
		}
	}
	var first *applied
	for k, a := range done {
		if pkgs[a.pkg] && !known[k] && (first == nil || a.at.Before(first.at)) {
			first = &a
		}
	}
	if first == nil {
		return nil
	}
	return fmt.Errorf("%w: migration %s/%s (applied %s) is unknown to it; run the hub version that applied it, or restore the database backup taken before that upgrade",
		ErrSchemaNewer, first.pkg, first.name, first.at.UTC().Format(time.RFC3339))
}

// applied is a row of pg_migrations.
type applied struct {
	pkg, name string
	at        time.Time
}

// appliedSet reads pg_migrations, by key(package, version).
func appliedSet(ctx context.Context, conn *pgx.Conn) (map[string]applied, error) {
	rows, err := conn.Query(ctx, `SELECT package, version, name, applied_at FROM pg_migrations`)
	if err != nil {
		return nil, err
	}
	done := map[string]applied{}
	var a applied
	var v int
	_, err = pgx.ForEachRow(rows, []any{&a.pkg, &v, &a.name, &a.at}, func() error {
		done[key(a.pkg, v)] = a
		return nil
	})
	return done, err
}

func key(pkg string, v int) string { return pkg + "/" + strconv.Itoa(v) }

// Embedded returns the migrations a package keeps in dir of its embedded fsys.
func Embedded(pkg string, fsys fs.FS, dir string) Migrations {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(fmt.Sprintf("pg: migrations of %s: %v", pkg, err)) // a bad constant in the caller
	}
	return Migrations{Package: pkg, FS: sub}
}
