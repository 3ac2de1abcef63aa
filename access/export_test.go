package access

import (
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SetClock makes the store read the time from now (tests of expiry).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// SetClock makes the throttle read the time from now.
func (t *Throttle) SetClock(now func() time.Time) { t.now = now }

// Keys is how many keys the throttle remembers.
func (t *Throttle) Keys() int { t.mu.Lock(); defer t.mu.Unlock(); return len(t.m) }

// Pool is the store's pool (to look at what is at rest).
func Pool(s *Store) *pgxpool.Pool { return s.pool }
