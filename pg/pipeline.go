package pg

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Pipeline is one transaction whose statements go to the server in batches:
// BEGIN leads the first batch and COMMIT ends the last, so a transaction
// costs one round trip per batch instead of one per statement plus two. A
// writer that needs a statement's result before it can build the next
// statements sends two batches; one that does not, one.
//
// Results are read by the callbacks queued on each statement
// (pgx.QueuedQuery.Exec, Query, QueryRow). Close the Pipeline when done: a
// transaction not committed is rolled back there.
type Pipeline struct {
	conn  *pgxpool.Conn
	begun bool
	ended bool
}

// BeginPipeline takes a connection for a pipelined transaction; nothing is
// sent before the first Send.
func BeginPipeline(ctx context.Context, pool *pgxpool.Pool) (*Pipeline, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &Pipeline{conn: conn}, nil
}

// Send sends b's statements within the transaction (after BEGIN, the first
// time) and runs their callbacks; with commit, COMMIT follows them. The first
// error is returned: the transaction is then aborted and Close rolls it back.
func (p *Pipeline) Send(ctx context.Context, b *pgx.Batch, commit bool) error {
	if p.ended {
		return errors.New("pipeline: the transaction has ended")
	}
	full := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, b.Len()+2)}
	if !p.begun {
		full.Queue("BEGIN")
		p.begun = true
	}
	full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
	if commit {
		full.Queue("COMMIT")
	}
	err := p.conn.SendBatch(ctx, full).Close()
	if err == nil && commit {
		p.ended = true
	}
	return err
}

// Close rolls back a transaction that was begun and not committed, and gives
// the connection back. A connection that cannot roll back is closed, so the
// pool never hands out one inside a transaction.
func (p *Pipeline) Close() {
	if p.begun && !p.ended {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := p.conn.Exec(ctx, "ROLLBACK"); err != nil {
			_ = p.conn.Conn().Close(ctx)
		}
		cancel()
	}
	p.ended = true
	p.conn.Release()
}

// Queue adapts a pgx.Batch to code that executes statements (Exec): each
// statement is queued, and its error comes from the Send of the batch.
type Queue struct{ Batch *pgx.Batch }

// Exec queues sql; its result is known once the batch is sent.
func (q Queue) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	q.Batch.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}
