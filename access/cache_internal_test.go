package access

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAuthCacheFillAfterDropIsRefused: a lookup that read PostgreSQL before
// a revocation committed, and stores its answer after the revocation dropped
// the entries, must not bring the stale principal back.
func TestAuthCacheFillAfterDropIsRefused(t *testing.T) {
	c := newAuthCache(Config{CacheTTL: time.Minute, CacheSize: 2})
	now := time.Now()
	key := keyOf("lhc_x")
	e := cacheEntry{kind: kindClient, principal: Principal{ClientID: 7}}

	gen := c.generation() // the lookup starts
	c.dropClient(7)       // the revocation commits and drops
	c.put(key, gen, e, now)
	_, ok := c.get(key, kindClient, now)
	require.False(t, ok, "the in-flight answer is not stored")

	c.put(key, c.generation(), e, now)
	_, ok = c.get(key, kindClient, now)
	require.True(t, ok)
	_, ok = c.get(key, kindToken, now)
	require.False(t, ok, "an entry answers only for its kind")
	_, ok = c.get(key, kindClient, now.Add(time.Minute))
	require.False(t, ok, "expired")
	require.Zero(t, c.entries.Len(), "an expired entry is dropped when met")

	// Bounded: the least recently used goes first.
	for i, k := range []string{"a", "b", "c"} {
		c.put(keyOf(k), c.generation(), cacheEntry{kind: kindToken, principal: Principal{TokenID: int64(i)}}, now)
	}
	require.Equal(t, 2, c.entries.Len())
	_, ok = c.get(keyOf("a"), kindToken, now)
	require.False(t, ok)
}
