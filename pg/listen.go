package pg

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Listen holds one connection of its own (LISTEN needs a dedicated
// connection, not the pool's) listening on channel, and calls handle with the
// payload of every notification, on its own goroutine, until ctx ends.
//
// Notifications sent while the connection is down are lost: after every
// connect, the first included, resync is called (with the listener already
// in place), so the caller can read again whatever it follows. A lost
// connection is dialled again after a pause (1 s, doubling up to 10 s).
func Listen(ctx context.Context, pool *pgxpool.Pool, channel string, log *slog.Logger,
	resync func(ctx context.Context), handle func(payload string)) {
	pause := time.Second
	for ctx.Err() == nil {
		listened, err := listenOnce(ctx, pool, channel, resync, handle)
		if ctx.Err() != nil {
			return
		}
		if listened {
			pause = time.Second
		}
		log.Warn("database listener lost; listening again", "channel", channel, "error", err, "after", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
}

// listenOnce listens until the connection fails; listened says whether
// LISTEN was in place.
func listenOnce(ctx context.Context, pool *pgxpool.Pool, channel string, resync func(context.Context), handle func(string)) (listened bool, err error) {
	dial, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(dial, pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return false, err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = conn.Close(closeCtx)
		cancel()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return false, err
	}
	resync(ctx)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		handle(n.Payload)
	}
}
