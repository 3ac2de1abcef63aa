// Package audit is the hub's audit log: who changed what, when and from
// where, with the object before and after. A record is written by the
// domain package that makes the change, with Record, inside the same
// transaction as the change, so a committed change always has its record
// and a rolled-back change has none. Who is calling travels in the context
// (WithActor, set by web for each request), so domain packages need not
// know about HTTP. The table is append-only; this package has no code path
// that updates or deletes a record, and a trigger refuses both.
//
// audit is a leaf like pg: domain packages (fleet, access, …) import it,
// it imports none of them.
package audit

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockerhub/lockerhub/pg"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the package's schema.
func Migrations() pg.Migrations { return pg.Embedded("audit", migrationsFS, "migrations") }

// Kinds of actor.
const (
	KindUser      = "user"      // a person logged in to the dashboard (session)
	KindClient    = "client"    // an API client (delivery service, marketplace)
	KindToken     = "token"     // a bearer token (hubctl, automation)
	KindDevice    = "device"    // a locker (enrolment, renewal), ID = locker ID
	KindSystem    = "system"    // the hub itself (start-up, timers); also no actor in the context
	KindAnonymous = "anonymous" // not authenticated (a failed login)
)

// Common actions. Domain packages may add their own (e.g. "revoke",
// "command"); keep them short lower-case verbs.
const (
	ActionCreate      = "create"
	ActionUpdate      = "update"
	ActionDelete      = "delete"
	ActionCommand     = "command"
	ActionLogin       = "login"
	ActionLoginFailed = "login_failed"
	ActionLogout      = "logout"
)

// Actor is who makes a change and from where.
type Actor struct {
	Kind      string `json:"kind"`
	ID        string `json:"id"`   // user id, token id, client id, locker id
	Name      string `json:"name"` // username, token name, client name, locker id
	Role      string `json:"role"`
	Addr      string `json:"addr"`       // remote IP address (see web for proxies)
	RequestID string `json:"request_id"` // the X-Request-ID of the HTTP request
}

type actorKey struct{}

// WithActor returns ctx carrying the actor of the changes made under it.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor in ctx; without one it is the system.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return Actor{Kind: KindSystem, Name: "hub"}
}

// Entry is one change to record.
type Entry struct {
	Action     string // create, update, delete, command, login, …
	ObjectType string // locker, model, cells, desired, certificate, enroll_token, user, session, token, command, …
	ObjectID   string
	// Before is the object before the change (nil for a create), After after
	// it (nil for a delete). Any JSON-encodable value or json.RawMessage;
	// sensitive fields are redacted by name (see Redact) before storing.
	Before, After any
	// Actor, when set (Kind != ""), replaces the context's actor, e.g. for
	// a login, whose actor is known only once the password was checked.
	Actor Actor
}

// Execer is a pgx.Tx (or a pool, for a record that is a change of its own,
// such as a failed login).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Record writes e with the actor of ctx through db, which should be the
// transaction of the change, so the record commits or rolls back with it.
func Record(ctx context.Context, db Execer, e Entry) error {
	if e.Action == "" || e.ObjectType == "" {
		return errors.New("audit: an entry needs an action and an object type")
	}
	a := e.Actor
	if a.Kind == "" {
		a = ActorFrom(ctx)
	}
	before, err := redacted(e.Before)
	if err != nil {
		return fmt.Errorf("audit: before: %w", err)
	}
	after, err := redacted(e.After)
	if err != nil {
		return fmt.Errorf("audit: after: %w", err)
	}
	_, err = db.Exec(ctx, `INSERT INTO audit_log (actor_kind, actor_id, actor_name, actor_role, remote_addr, request_id,
			action, object_type, object_id, before, after)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		a.Kind, clip(a.ID, 200), clip(a.Name, 200), clip(a.Role, 50), clip(a.Addr, 100), clip(a.RequestID, 100),
		e.Action, e.ObjectType, clip(e.ObjectID, 500), before, after)
	if err != nil {
		return fmt.Errorf("audit: record %s %s %s: %w", e.Action, e.ObjectType, e.ObjectID, err)
	}
	return nil
}

// RecordAll writes entries with one statement (a CSV import of thousands of
// lockers), like Record.
func RecordAll(ctx context.Context, db Execer, entries []Entry) error {
	a := ActorFrom(ctx)
	entries = slices.Clone(entries)
	for i, e := range entries {
		if e.Action == "" || e.ObjectType == "" || e.Actor.Kind != "" {
			return errors.New("audit: RecordAll takes entries with an action, an object type and the context's actor")
		}
		entries[i].Actor = a
	}
	return insertAll(ctx, db, entries)
}

// RecordEach records entries of different actors in one statement (a writer
// that batches many callers' changes in one transaction): each entry's Actor,
// or the context's when its Kind is empty.
func RecordEach(ctx context.Context, db Execer, entries []Entry) error {
	entries = slices.Clone(entries)
	for i, e := range entries {
		if e.Action == "" || e.ObjectType == "" {
			return errors.New("audit: an entry needs an action and an object type")
		}
		if e.Actor.Kind == "" {
			entries[i].Actor = ActorFrom(ctx)
		}
	}
	return insertAll(ctx, db, entries)
}

// insertAll stores entries, each with its Actor set, in one statement.
func insertAll(ctx context.Context, db Execer, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	args, err := entryArrays(entries)
	if err != nil {
		return err
	}
	if _, err := db.Exec(ctx, insertSQL(1, ""), args...); err != nil {
		return fmt.Errorf("audit: record %d entries: %w", len(entries), err)
	}
	return nil
}

// RecordInserted returns one statement that runs insert (an INSERT …
// RETURNING id, with insertArgs as $1…$n) and records, in the same
// statement, the entries whose ObjectID it returned; the statement returns
// their object IDs. A batch writer whose inserts may be refused (ON CONFLICT
// DO NOTHING) stores and audits what was new in one statement instead of
// two round trips. Each entry's Actor is used, or the context's.
func RecordInserted(ctx context.Context, insert string, insertArgs []any, entries []Entry) (string, []any, error) {
	entries = slices.Clone(entries)
	for i, e := range entries {
		if e.Action == "" || e.ObjectType == "" {
			return "", nil, errors.New("audit: an entry needs an action and an object type")
		}
		if e.Actor.Kind == "" {
			entries[i].Actor = ActorFrom(ctx)
		}
	}
	args, err := entryArrays(entries)
	if err != nil {
		return "", nil, err
	}
	sql := "WITH inserted AS (" + insert + ")\n" +
		insertSQL(len(insertArgs)+1, "WHERE u.id IN (SELECT id FROM inserted)") + "\nRETURNING object_id"
	return sql, append(slices.Clone(insertArgs), args...), nil
}

// insertSQL is the INSERT of entryArrays' arrays as $first…$first+10,
// with an optional condition on the unnested rows u.
func insertSQL(first int, where string) string {
	ps := make([]string, 11)
	for i := range ps {
		ps[i] = fmt.Sprintf("$%d::text[]", first+i)
	}
	return `INSERT INTO audit_log (actor_kind, actor_id, actor_name, actor_role, remote_addr, request_id,
			action, object_type, object_id, before, after)
		SELECT u.kind, u.aid, u.name, u.role, u.addr, u.req, u.action, u.type, u.id,
			CASE WHEN u.before = '' THEN NULL ELSE u.before::jsonb END,
			CASE WHEN u.after = '' THEN NULL ELSE u.after::jsonb END
		FROM unnest(` + strings.Join(ps, ", ") + `)
			WITH ORDINALITY AS u(kind, aid, name, role, addr, req, action, type, id, before, after, n)
		` + where + `
		ORDER BY u.n`
}

// entryArrays are the columns of entries (each with its Actor set) as
// arrays, redacted and clipped.
func entryArrays(entries []Entry) ([]any, error) {
	n := len(entries)
	kinds, aids, names, roles, addrs, reqs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	actions, types, ids, befores, afters := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, e := range entries {
		before, err := redacted(e.Before)
		if err != nil {
			return nil, fmt.Errorf("audit: before: %w", err)
		}
		after, err := redacted(e.After)
		if err != nil {
			return nil, fmt.Errorf("audit: after: %w", err)
		}
		a := e.Actor
		kinds[i], aids[i], names[i], roles[i], addrs[i], reqs[i] = a.Kind, clip(a.ID, 200), clip(a.Name, 200), clip(a.Role, 50), clip(a.Addr, 100), clip(a.RequestID, 100)
		actions[i], types[i], ids[i] = e.Action, e.ObjectType, clip(e.ObjectID, 500)
		befores[i], afters[i] = string(before), string(after)
	}
	return []any{kinds, aids, names, roles, addrs, reqs, actions, types, ids, befores, afters}, nil
}

// redacted encodes v as JSON with sensitive fields replaced; nil stays nil (SQL NULL).
func redacted(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	return Redact(raw)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Row is a stored audit record.
type Row struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	Actor      Actor           `json:"actor"`
	Action     string          `json:"action"`
	ObjectType string          `json:"object_type"`
	ObjectID   string          `json:"object_id"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
}
