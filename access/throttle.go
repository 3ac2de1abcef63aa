package access

import (
	"sync"
	"time"
)

// Throttle limits attempts per key (a username, a remote address) with a
// token bucket: Burst attempts at once, then one more every Refill. Callers
// Take before the expensive work and Give back what succeeded, so only
// failures count. It remembers at most MaxKeys keys: when full, keys whose
// bucket has refilled are forgotten first, then arbitrary ones (an attacker
// with many addresses can only make the limit forget, never grow memory).
type Throttle struct {
	burst   float64
	refill  time.Duration
	maxKeys int
	now     func() time.Time

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewThrottle returns a throttle of burst attempts per key, refilled one per
// refill interval, remembering at most maxKeys keys.
func NewThrottle(burst int, refill time.Duration, maxKeys int) *Throttle {
	return &Throttle{burst: float64(burst), refill: refill, maxKeys: maxKeys, now: time.Now, m: map[string]*bucket{}}
}

// level brings b up to date and returns it.
func (t *Throttle) level(b *bucket, now time.Time) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(t.burst, b.tokens+float64(el)/float64(t.refill))
		b.at = now
	}
}

// Take spends one attempt of key. When none is left it returns false and how
// long until the next one.
func (t *Throttle) Take(key string) (bool, time.Duration) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.m[key]
	if !ok {
		t.makeRoom(now)
		b = &bucket{tokens: t.burst, at: now}
		t.m[key] = b
	}
	t.level(b, now)
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) * float64(t.refill))
		return false, max(wait, time.Second)
	}
	b.tokens--
	return true, 0
}

// Give returns one attempt to key (the attempt succeeded).
func (t *Throttle) Give(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.m[key]; ok {
		t.level(b, t.now())
		b.tokens = min(t.burst, b.tokens+1)
	}
}

// Reset forgets key's failures.
func (t *Throttle) Reset(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// makeRoom keeps the map below maxKeys; t.mu is held.
func (t *Throttle) makeRoom(now time.Time) {
	if len(t.m) < t.maxKeys {
		return
	}
	for k, b := range t.m {
		t.level(b, now)
		if b.tokens >= t.burst {
			delete(t.m, k)
		}
	}
	for k := range t.m {
		if len(t.m) < t.maxKeys {
			break
		}
		delete(t.m, k)
	}
}
