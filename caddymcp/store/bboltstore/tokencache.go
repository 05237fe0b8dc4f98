package bboltstore

import (
	"sync"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// tokenCache keeps access tokens read from the file, so that the gate,
// which looks one up on every MCP request, does not open a read
// transaction each time. It is exact, not eventually consistent: the file
// belongs to this process alone (bbolt's lock), and every write that could
// delete an access token or its grant clears the cache after it commits,
// before the revoking call returns. A lookup that raced such a write
// cannot put back what it read: entries are only added under the
// generation that was current before their read transaction began.
//
// Writes clear the cache unless they say they cannot revoke (see
// Store.updateKeep), so a new way to revoke is safe by default.
type tokenCache struct {
	mu  sync.RWMutex
	gen uint64
	m   map[string]store.AccessToken
}

// tokenCacheMax bounds the cache; when it is full it starts over.
const tokenCacheMax = 100_000

// get returns a cached token and the current generation.
func (c *tokenCache) get(hash []byte) (store.AccessToken, bool, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	at, ok := c.m[string(hash)]
	return at, ok, c.gen
}

// put caches a token read under generation gen, unless a write has
// cleared the cache since.
func (c *tokenCache) put(hash []byte, at *store.AccessToken, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = make(map[string]store.AccessToken)
	}
	c.m[string(hash)] = *at
}

// invalidate empties the cache and starts a new generation.
func (c *tokenCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}
