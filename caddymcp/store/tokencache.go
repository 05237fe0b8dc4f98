package store

import (
	"sync"
	"time"
)

// TokenCache keeps access tokens a backend has read, so that the gate,
// which looks one up on every MCP request, does not go to the store each
// time. It stays exact where the backend can make it so: the backend
// calls Invalidate after every write that could delete an access token or
// its grant has committed, before the revoking call returns, and a lookup
// that raced such a write cannot put back what it read, because entries
// are only added under the generation that was current before the read
// began (Get returns it; pass it to Put).
//
// A backend shared by several processes cannot see the others' writes:
// its entries live for TTL, which bounds how long a revocation made
// elsewhere takes to be seen. TTL zero means entries live until
// invalidated.
type TokenCache struct {
	// TTL bounds an entry's life; zero for none.
	TTL time.Duration

	mu  sync.RWMutex
	gen uint64
	m   map[string]cachedToken
}

type cachedToken struct {
	at    AccessToken
	until time.Time // zero: no TTL
}

// tokenCacheMax bounds the cache; when it is full it starts over.
const tokenCacheMax = 100_000

// Get returns a cached token (ok false if none, or if its TTL ran out by
// now) and the current generation.
func (c *TokenCache) Get(hash []byte, now time.Time) (AccessToken, bool, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[string(hash)]
	if ok && !e.until.IsZero() && !now.Before(e.until) {
		ok = false
	}
	return e.at, ok, c.gen
}

// Put caches a token read under generation gen at now, unless a write
// has invalidated the cache since.
func (c *TokenCache) Put(hash []byte, at *AccessToken, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = make(map[string]cachedToken)
	}
	e := cachedToken{at: *at}
	if c.TTL > 0 {
		e.until = now.Add(c.TTL)
	}
	c.m[string(hash)] = e
}

// Invalidate empties the cache and starts a new generation.
func (c *TokenCache) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}
