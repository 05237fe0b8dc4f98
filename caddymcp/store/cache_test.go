package store

import (
	"testing"
	"time"
)

// TestCacheGenerations: a record read before an invalidation is not put
// back after it, which is what keeps a revocation from being undone by a
// lookup that raced it.
func TestCacheGenerations(t *testing.T) {
	var c Cache[Client]
	key := []byte("c1")
	now := time.Now()
	_, ok, gen := c.Get(key, now)
	if ok {
		t.Fatal("an empty cache had a record")
	}
	c.Invalidate() // a write that committed while the lookup read
	c.Put(key, &Client{ID: "c1"}, gen, now)
	if _, ok, _ := c.Get(key, now); ok {
		t.Fatal("a record read before an invalidation was put back after it")
	}
	_, _, gen = c.Get(key, now)
	c.Put(key, &Client{ID: "c1"}, gen, now)
	got, ok, _ := c.Get(key, now)
	if !ok || got.ID != "c1" {
		t.Fatalf("Get after Put = %+v, %v", got, ok)
	}
	c.Invalidate()
	if _, ok, _ := c.Get(key, now); ok {
		t.Fatal("Invalidate left a record")
	}
}

// TestCacheTTL: with a TTL, a record is served until it is TTL old, and
// not at that instant or after.
func TestCacheTTL(t *testing.T) {
	c := Cache[AccessToken]{TTL: time.Second}
	key := []byte("t1")
	now := time.Now()
	_, _, gen := c.Get(key, now)
	c.Put(key, &AccessToken{GrantID: "g"}, gen, now)
	if _, ok, _ := c.Get(key, now.Add(999*time.Millisecond)); !ok {
		t.Error("a record younger than the TTL was not served")
	}
	if _, ok, _ := c.Get(key, now.Add(time.Second)); ok {
		t.Error("a record as old as the TTL was served")
	}
}

// TestCacheBounded: a full cache starts over rather than grow.
func TestCacheBounded(t *testing.T) {
	var c Cache[Client]
	now := time.Now()
	for i := range cacheMax + 1 {
		key := []byte{byte(i), byte(i >> 8), byte(i >> 16)}
		_, _, gen := c.Get(key, now)
		c.Put(key, &Client{}, gen, now)
	}
	if n := len(c.m); n != 1 {
		t.Errorf("the cache holds %d records after %d puts, want 1 (started over)", n, cacheMax+1)
	}
}

// TestClientClone: a clone shares no memory with its original.
func TestClientClone(t *testing.T) {
	orig := &Client{ID: "c", SecretHash: []byte{1, 2}, RedirectURIs: []string{"https://a/cb"},
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}}
	c := orig.Clone()
	c.SecretHash[0], c.RedirectURIs[0], c.GrantTypes[0], c.ResponseTypes[0] = 9, "x", "x", "x"
	if orig.SecretHash[0] != 1 || orig.RedirectURIs[0] != "https://a/cb" || orig.GrantTypes[0] != "authorization_code" ||
		orig.ResponseTypes[0] != "code" {
		t.Errorf("changing the clone changed the original: %+v", orig)
	}
}
