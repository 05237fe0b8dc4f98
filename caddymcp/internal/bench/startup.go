package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// startupFigures are how long Caddy takes to provision with a store of
// many grants, first start and reload.
type startupFigures struct {
	grants int
	seed   time.Duration
	empty  time.Duration // caddy.Load in a fresh process, empty store
	load   time.Duration // caddy.Load in a fresh process, n grants
	reload time.Duration // a forced reload through the admin API, n grants
}

// seedStore fills the store file at path with n grants (each with an
// access and a refresh token, as a login leaves them) through the store's
// own API, many callers at once so that group commit batches them.
func seedStore(path string, n int) error {
	st, err := bboltstore.Open(path, bboltstore.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now()
	if err := st.PutClient(ctx, &store.Client{ID: "seed-client", RedirectURIs: []string{redirectURI}, CreatedAt: now}); err != nil {
		return err
	}
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || firstErr.Load() != nil {
					return
				}
				id := fmt.Sprintf("seed-%012d", i)
				who := store.Identity{ID: int64(i + 1), Login: fmt.Sprintf("user%d", i), Name: "Seed User", Email: "seed@example.com"}
				sealed := make([]byte, 120)
				_, _ = rand.Read(sealed)
				g := &store.Grant{ID: id, ClientID: "seed-client", User: who, Resource: "https://localhost/mcp", GitHubToken: sealed,
					CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}
				at := &store.AccessToken{Hash: randomDigest(), GrantID: id, ClientID: g.ClientID, User: who, Resource: g.Resource,
					ExpiresAt: now.Add(time.Hour)}
				rt := &store.RefreshToken{Hash: randomDigest(), GrantID: id, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
				if err := st.CreateGrant(ctx, g, at, rt, nil); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return st.Close()
}

func randomDigest() []byte {
	var b [32]byte
	_, _ = rand.Read(b[:])
	sum := sha256.Sum256(b[:])
	return sum[:]
}

// startupBench starts Caddy on an empty state file, for comparison, then
// seeds another with n grants, starts Caddy on it and reloads it once.
func startupBench(dir string, n int) (startupFigures, error) {
	f := startupFigures{grants: n}
	var err error
	if f.empty, _, err = startOnce(dir, filepath.Join(dir, "startup-empty.db"), "caddy-startup-empty", false); err != nil {
		return f, err
	}
	path := filepath.Join(dir, "startup.db")
	start := time.Now()
	if err := seedStore(path, n); err != nil {
		return f, fmt.Errorf("seeding %d grants: %w", n, err)
	}
	f.seed = time.Since(start)
	f.load, f.reload, err = startOnce(dir, path, "caddy-startup", true)
	return f, err
}

// startOnce starts Caddy on the state file at path, optionally reloads
// it, and stops it.
func startOnce(dir, path, name string, reload bool) (load, reloaded time.Duration, err error) {
	e, err := newEnv(dir, path, "")
	if err != nil {
		return 0, 0, err
	}
	defer e.close()
	if err := e.startCaddy(name); err != nil {
		return 0, 0, err
	}
	load = e.caddy.load
	if reload {
		if reloaded, err = e.caddy.reload(e.caddyfile); err != nil {
			return 0, 0, err
		}
	}
	return load, reloaded, e.stopCaddy()
}
