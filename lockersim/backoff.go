package lockersim

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with full jitter: the wait before retry n
// (n = 0 for the first retry) is uniform in [0, min(Max, Base·2ⁿ)].
// With Base 1 s and Max 30 s (the defaults, DESIGN.md decision 24) a fleet that
// lost its hub spreads its reconnects over at most 30 s instead of arriving at once.
type Backoff struct {
	Base time.Duration
	Max  time.Duration
}

// DefaultBackoff is the reconnect policy of every simulated locker.
var DefaultBackoff = Backoff{Base: time.Second, Max: 30 * time.Second}

// Ceiling returns the upper bound of the wait before retry n.
func (b Backoff) Ceiling(n int) time.Duration {
	c := b.Base
	for i := 0; i < n && c < b.Max; i++ {
		c *= 2
	}
	return min(c, b.Max)
}

// Delay returns the wait before retry n, drawn from r (nil: the global source).
func (b Backoff) Delay(n int, r *rand.Rand) time.Duration {
	c := b.Ceiling(n)
	if c <= 0 {
		return 0
	}
	if r == nil {
		return time.Duration(rand.Int64N(int64(c) + 1))
	}
	return time.Duration(r.Int64N(int64(c) + 1))
}
