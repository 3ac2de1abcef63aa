package access

import (
	"crypto/sha256"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Cache defaults: at most DefaultCacheSize authenticated credentials are
// kept, each for DefaultCacheTTL. A change made by another hub node (which
// cannot drop this node's entries) is seen here within the TTL.
const (
	DefaultCacheSize = 10_000
	DefaultCacheTTL  = 10 * time.Second
)

// Config sizes the store's cache of authenticated credentials; zero values
// take the defaults.
type Config struct {
	// CacheTTL is how long an authenticated credential is trusted without
	// asking PostgreSQL again; negative turns the cache off.
	CacheTTL time.Duration
	// CacheSize bounds the cache; the least recently used entry goes first.
	CacheSize int
	// Registerer, when set, gets lockerhub_access_auth_cache_total.
	Registerer prometheus.Registerer
}

func (c *Config) defaults() {
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.CacheSize <= 0 {
		c.CacheSize = DefaultCacheSize
	}
}

type credKind uint8

const (
	kindToken credKind = iota + 1
	kindClient
	kindSession
)

// cacheKey is the SHA-256 of a credential, never the credential itself.
type cacheKey [sha256.Size]byte

// cacheEntry is one authenticated credential.
type cacheEntry struct {
	kind      credKind
	principal Principal
	session   Session   // kindSession: without ID
	lastUsed  time.Time // kindClient: last_used_at as written (zero: never)
	expires   time.Time
}

// authCache remembers authenticated credentials for a short TTL. Every path
// of the store that revokes or changes a credential drops the affected
// entries after its transaction commits; a lookup that was in flight across
// such a drop does not store what it read (the generation has moved on), so
// a stale row read before the commit cannot come back.
type authCache struct {
	ttl     time.Duration
	entries *lru.Cache[cacheKey, cacheEntry]
	results *prometheus.CounterVec

	mu  sync.Mutex // orders fills against drops
	gen uint64
}

func newAuthCache(cfg Config) *authCache {
	entries, err := lru.New[cacheKey, cacheEntry](cfg.CacheSize)
	if err != nil {
		panic(err) // only for a size <= 0, which defaults() rules out
	}
	c := &authCache{
		ttl:     cfg.CacheTTL,
		entries: entries,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_access_auth_cache_total",
			Help: "Credential lookups by whether the cache answered (hit) or PostgreSQL was asked (miss).",
		}, []string{"result"}),
	}
	c.results.WithLabelValues("hit")
	c.results.WithLabelValues("miss")
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.results)
	}
	return c
}

func (c *authCache) enabled() bool { return c.ttl > 0 }

// get returns the live entry of key if it is of kind; an expired one is dropped.
func (c *authCache) get(key cacheKey, kind credKind, now time.Time) (cacheEntry, bool) {
	if !c.enabled() {
		return cacheEntry{}, false
	}
	e, ok := c.entries.Get(key)
	if ok && e.kind == kind && now.Before(e.expires) {
		c.results.WithLabelValues("hit").Inc()
		return e, true
	}
	if ok && !now.Before(e.expires) {
		c.entries.Remove(key)
	}
	c.results.WithLabelValues("miss").Inc()
	return cacheEntry{}, false
}

// generation is read before asking PostgreSQL; put stores the answer only
// if no drop happened since.
func (c *authCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *authCache) put(key cacheKey, gen uint64, e cacheEntry, now time.Time) {
	if !c.enabled() {
		return
	}
	e.expires = now.Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	c.entries.Add(key, e)
}

// update replaces an entry that is still there (a refreshed last-seen),
// keeping its expiry.
func (c *authCache) update(key cacheKey, gen uint64, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if _, ok := c.entries.Peek(key); ok {
		c.entries.Add(key, e)
	}
}

// drop removes one credential's entry.
func (c *authCache) drop(key cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.entries.Remove(key)
}

// dropWhere removes every entry match selects. It walks the whole cache:
// revocations are rare, lookups are not, so no second index is kept.
func (c *authCache) dropWhere(match func(cacheEntry) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, k := range c.entries.Keys() {
		if e, ok := c.entries.Peek(k); ok && match(e) {
			c.entries.Remove(k)
		}
	}
}

func (c *authCache) dropUser(id int64) {
	c.dropWhere(func(e cacheEntry) bool { return e.principal.UserID == id })
}

func (c *authCache) dropClient(id int64) {
	c.dropWhere(func(e cacheEntry) bool { return e.principal.ClientID == id })
}

func keyOf(credential string) cacheKey { return sha256.Sum256([]byte(credential)) }
