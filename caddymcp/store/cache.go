package store

import (
	"sync"
	"time"
)

// Cache keeps records a backend has read, so that hot lookups (the gate's
// access token on every MCP request, the token endpoint's client on every
// token request) do not go to the store each time. It stays exact where
// the backend can make it so: the backend calls Invalidate after every
// write that could delete or change a cached record has committed, before
// the writing call returns, and a lookup that raced such a write cannot
// put back what it read, because entries are only added under the
// generation that was current before the read began (Get returns it; pass
// it to Put).
//
// A backend shared by several processes cannot see the others' writes:
// its entries live for TTL, which bounds how long a revocation made
// elsewhere takes to be seen. TTL zero means entries live until
// invalidated.
type Cache[V any] struct {
	// TTL bounds an entry's life; zero for none.
	TTL time.Duration

	mu  sync.RWMutex
	gen uint64
	m   map[string]cached[V]
}

// TokenCache is the cache of access tokens.
type TokenCache = Cache[AccessToken]

type cached[V any] struct {
	v     V
	until time.Time // zero: no TTL
}

// cacheMax bounds a cache; when it is full it starts over.
const cacheMax = 100_000

// Get returns a cached record (ok false if none, or if its TTL ran out by
// now) and the current generation.
func (c *Cache[V]) Get(key []byte, now time.Time) (V, bool, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[string(key)]
	if ok && !e.until.IsZero() && !now.Before(e.until) {
		ok = false
	}
	return e.v, ok, c.gen
}

// Put caches a record read under generation gen at now, unless a write
// has invalidated the cache since.
func (c *Cache[V]) Put(key []byte, v *V, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= cacheMax {
		c.m = make(map[string]cached[V])
	}
	e := cached[V]{v: *v}
	if c.TTL > 0 {
		e.until = now.Add(c.TTL)
	}
	c.m[string(key)] = e
}

// Invalidate empties the cache and starts a new generation.
func (c *Cache[V]) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}
