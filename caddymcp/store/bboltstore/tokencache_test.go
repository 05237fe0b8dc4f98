package bboltstore

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestTokenCacheRace: readers hammer a token while it is revoked; once
// RevokeGrant has returned, no read accepts it, whatever a read that
// raced the revocation tried to put back.
func TestTokenCacheRace(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	for round := range 20 {
		s := openTemp(t)
		must(t, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))
		g, at, rt := benchRecords(round, "c", now, now.Add(time.Hour))
		must(t, s.CreateGrant(ctx, g, at, rt, nil))
		var revoked atomic.Bool
		var wg sync.WaitGroup
		var bad atomic.Int32
		for range 4 {
			wg.Go(func() {
				for range 300 {
					after := revoked.Load()
					_, err := s.GetAccessToken(ctx, at.Hash, now)
					if after && err == nil {
						bad.Add(1)
					}
				}
			})
		}
		must(t, s.RevokeGrant(ctx, g.ID))
		revoked.Store(true)
		wg.Wait()
		if n := bad.Load(); n > 0 {
			t.Fatalf("round %d: %d reads accepted the token after its revocation returned", round, n)
		}
	}
}
