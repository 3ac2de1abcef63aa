package audit_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := pgtest.NewDB(t, audit.Migrations())
	pool, err := pg.Connect(context.Background(), url, 4)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

var alice = audit.Actor{Kind: audit.KindUser, ID: "7", Name: "alice", Role: "admin", Addr: "192.0.2.1", RequestID: "req-1"}

func count(t *testing.T, pool *pgxpool.Pool) int {
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log`).Scan(&n))
	return n
}

func TestRecordCommitsAndRollsBackWithTheChange(t *testing.T) {
	pool := newPool(t)
	ctx := audit.WithActor(context.Background(), alice)

	err := pg.Tx(ctx, pool, func(tx pgx.Tx) error {
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionUpdate, ObjectType: "locker", ObjectID: "L1",
			Before: map[string]any{"address": "a"}, After: map[string]any{"address": "b"}})
	})
	require.NoError(t, err)

	failed := errors.New("the change failed")
	err = pg.Tx(ctx, pool, func(tx pgx.Tx) error {
		if err := audit.Record(ctx, tx, audit.Entry{Action: audit.ActionDelete, ObjectType: "locker", ObjectID: "L1"}); err != nil {
			return err
		}
		return failed
	})
	require.ErrorIs(t, err, failed)
	require.Equal(t, 1, count(t, pool), "the rolled-back change left no record")

	p, err := audit.NewStore(pool).List(context.Background(), audit.Filter{})
	require.NoError(t, err)
	require.Len(t, p.Records, 1)
	r := p.Records[0]
	require.Equal(t, alice, r.Actor)
	require.Equal(t, "update", r.Action)
	require.Equal(t, "locker", r.ObjectType)
	require.Equal(t, "L1", r.ObjectID)
	require.JSONEq(t, `{"address":"a"}`, string(r.Before))
	require.JSONEq(t, `{"address":"b"}`, string(r.After))
	require.Empty(t, p.Next)
}

func TestNoActorIsTheSystemAndACreateHasNoBefore(t *testing.T) {
	pool := newPool(t)
	require.NoError(t, audit.Record(context.Background(), pool, audit.Entry{Action: "create", ObjectType: "model", ObjectID: "m", After: json.RawMessage(`{"id":"m"}`)}))
	p, err := audit.NewStore(pool).List(context.Background(), audit.Filter{})
	require.NoError(t, err)
	require.Equal(t, audit.KindSystem, p.Records[0].Actor.Kind)
	require.Nil(t, p.Records[0].Before)
}

func TestAuditLogRefusesUpdateDeleteTruncate(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	require.NoError(t, audit.Record(ctx, pool, audit.Entry{Action: "create", ObjectType: "locker", ObjectID: "L1"}))
	for _, q := range []string{
		`UPDATE audit_log SET actor_name = 'mallory'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
	} {
		_, err := pool.Exec(ctx, q)
		require.Error(t, err, q)
		require.Contains(t, err.Error(), "append-only", q)
	}
	require.Equal(t, 1, count(t, pool))
	var name string
	require.NoError(t, pool.QueryRow(ctx, `SELECT actor_name FROM audit_log`).Scan(&name))
	require.Equal(t, "hub", name)
}

func TestRedaction(t *testing.T) {
	pool := newPool(t)
	ctx := audit.WithActor(context.Background(), alice)
	secrets := []string{"hunter2-password", "$argon2id$v=19$hash", "lh_tokensecret", "et_enrolsecret", "csrf-secret",
		"hmac-key-material", "48213907", "sess-secret", "-----BEGIN PRIVATE KEY-----"}
	after := map[string]any{
		"username":      "bob",
		"password":      secrets[0],
		"password_hash": secrets[1],
		"token":         secrets[2],
		"token_id":      42,
		"enroll_token":  map[string]any{"x": secrets[3]},
		"csrf_token":    secrets[4],
		"locker":        map[string]any{"hmac_secret": secrets[5], "cells": []any{map[string]any{"name": "A01", "code": secrets[6]}}},
		"session_id":    secrets[7],
		"private_key":   secrets[8],
		"error":         map[string]any{"code": "jammed"},
	}
	require.NoError(t, audit.Record(ctx, pool, audit.Entry{Action: "create", ObjectType: "user", ObjectID: "bob", After: after,
		Before: json.RawMessage(`{"nested":[{"codes_key":"hmac-key-material"}]}`)}))
	var raw string
	require.NoError(t, pool.QueryRow(ctx, `SELECT before::text || after::text FROM audit_log`).Scan(&raw))
	for _, s := range secrets {
		require.NotContains(t, raw, s)
	}
	for _, s := range []string{`"username": "bob"`, `"token_id": 42`, `"code": "jammed"`, `"name": "A01"`, audit.Redacted} {
		require.Contains(t, raw, s)
	}

	for field, want := range map[string]bool{"password": true, "new_password": true, "Password_Hash": true, "token": true,
		"api_token": true, "webhook_secret": true, "hmac": true, "pickup_code": true, "token_id": false, "name": false,
		"key": true, "idempotency_key": false, "role": false, "address": false} {
		require.Equal(t, want, audit.Sensitive(field), field)
	}
}

func TestPaginationAndFilters(t *testing.T) {
	pool := newPool(t)
	ctx := audit.WithActor(context.Background(), alice)
	bob := audit.Actor{Kind: audit.KindToken, ID: "3", Name: "bob-ci", Role: "admin"}
	for i := range 25 {
		c := ctx
		if i%5 == 0 {
			c = audit.WithActor(context.Background(), bob)
		}
		require.NoError(t, audit.Record(c, pool, audit.Entry{Action: "update", ObjectType: "locker", ObjectID: fmt.Sprintf("L%d", i%3)}))
	}
	s := audit.NewStore(pool)
	var ids []int64
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		p, err := s.List(context.Background(), audit.Filter{Limit: 7, Cursor: cursor})
		require.NoError(t, err)
		for _, r := range p.Records {
			ids = append(ids, r.ID)
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	require.Len(t, ids, 25)
	for i := 1; i < len(ids); i++ {
		require.Greater(t, ids[i-1], ids[i], "newest first, no repeats")
	}

	p, err := s.List(context.Background(), audit.Filter{Actor: "bob-ci"})
	require.NoError(t, err)
	require.Len(t, p.Records, 5)
	p, err = s.List(context.Background(), audit.Filter{ObjectType: "locker", ObjectID: "L1", Actor: "alice"})
	require.NoError(t, err)
	for _, r := range p.Records {
		require.Equal(t, "L1", r.ObjectID)
		require.Equal(t, "alice", r.Actor.Name)
	}
	require.NotEmpty(t, p.Records)

	_, err = s.List(context.Background(), audit.Filter{Cursor: "abc"})
	require.ErrorIs(t, err, audit.ErrInvalid)
	_, err = s.List(context.Background(), audit.Filter{Limit: audit.MaxLimit + 1})
	require.ErrorIs(t, err, audit.ErrInvalid)
}

func TestExportCSV(t *testing.T) {
	pool := newPool(t)
	ctx := audit.WithActor(context.Background(), alice)
	for i := range 3 {
		require.NoError(t, audit.Record(ctx, pool, audit.Entry{Action: "update", ObjectType: "locker", ObjectID: fmt.Sprintf("L%d", i),
			Before: map[string]any{"address": "Main St, 1"}, After: map[string]any{"address": "Main St, 2"}}))
	}
	var buf bytes.Buffer
	next, err := audit.NewStore(pool).ExportCSV(context.Background(), audit.Filter{Limit: 2}, &buf)
	require.NoError(t, err)
	require.NotEmpty(t, next)
	recs, err := csv.NewReader(strings.NewReader(buf.String())).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 3)
	require.Equal(t, audit.CSVHeader, recs[0])
	require.Equal(t, "L2", recs[1][10])
	require.Equal(t, "alice", recs[1][4])
	require.Equal(t, "192.0.2.1", recs[1][6])
	require.JSONEq(t, `{"address":"Main St, 2"}`, recs[1][12])

	buf.Reset()
	next, err = audit.NewStore(pool).ExportCSV(context.Background(), audit.Filter{Cursor: next}, &buf)
	require.NoError(t, err)
	require.Empty(t, next)
	recs, err = csv.NewReader(strings.NewReader(buf.String())).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "L0", recs[1][10])
}

func TestExportCSVDefusesFormulas(t *testing.T) {
	pool := newPool(t)
	ctx := audit.WithActor(context.Background(), audit.Actor{Kind: audit.KindAnonymous, Addr: "192.0.2.7"})
	require.NoError(t, audit.Record(ctx, pool, audit.Entry{Action: audit.ActionLoginFailed, ObjectType: "user",
		ObjectID: `=HYPERLINK("http://evil.example","x")`}))
	var buf bytes.Buffer
	_, err := audit.NewStore(pool).ExportCSV(context.Background(), audit.Filter{}, &buf)
	require.NoError(t, err)
	recs, err := csv.NewReader(strings.NewReader(buf.String())).ReadAll()
	require.NoError(t, err)
	require.Equal(t, `'=HYPERLINK("http://evil.example","x")`, recs[1][10])
}

// TestRecordEachKeepsEveryEntrysActor: one statement for entries of several
// actors (a writer batching many callers), each stored with its own actor;
// an entry without one takes the context's. Secrets are redacted as ever.
func TestRecordEachKeepsEveryEntrysActor(t *testing.T) {
	pool := newPool(t)
	bob := audit.Actor{Kind: audit.KindToken, ID: "3", Name: "bob", Role: "technician", Addr: "192.0.2.2", RequestID: "req-2"}
	ctx := audit.WithActor(context.Background(), alice)
	require.NoError(t, audit.RecordEach(ctx, pool, []audit.Entry{
		{Action: audit.ActionCommand, ObjectType: "command", ObjectID: "c-1", After: map[string]any{"n": 1}, Actor: bob},
		{Action: audit.ActionCommand, ObjectType: "command", ObjectID: "c-2", After: map[string]any{"n": 2, "password": "x"}},
	}))
	require.NoError(t, audit.RecordEach(ctx, pool, nil))
	require.Error(t, audit.RecordEach(ctx, pool, []audit.Entry{{ObjectType: "command"}}), "an entry needs an action")
	p, err := audit.NewStore(pool).List(context.Background(), audit.Filter{})
	require.NoError(t, err)
	require.Len(t, p.Records, 2)
	byID := map[string]audit.Row{}
	for _, r := range p.Records {
		byID[r.ObjectID] = r
	}
	require.Equal(t, bob, byID["c-1"].Actor)
	require.JSONEq(t, `{"n":1}`, string(byID["c-1"].After))
	require.Equal(t, alice, byID["c-2"].Actor)
	require.NotContains(t, string(byID["c-2"].After), `"x"`, "redacted")
}
