package pgstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestSweepOneInstanceAtATime: while another instance holds the sweep
// lock, Sweep removes nothing and returns at once; after, it does the work,
// in many small batches.
func TestSweepOneInstanceAtATime(t *testing.T) {
	old := sweepBatch
	sweepBatch = 3
	t.Cleanup(func() { sweepBatch = old })

	dsn := pgtest.DSN(t)
	ctx := context.Background()
	s, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().Truncate(time.Microsecond)
	const n = 10
	for i := range n {
		if err := s.PutPending(ctx, &store.Pending{StateHash: []byte(fmt.Sprintf("state-%d", i)), ExpiresAt: now}); err != nil {
			t.Fatal(err)
		}
		c := fmt.Sprintf("client-%d", i)
		if err := s.PutClient(ctx, &store.Client{ID: c, CreatedAt: now.Add(-48 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		g := &store.Grant{ID: fmt.Sprintf("grant-%d", i), ClientID: c, ExpiresAt: now}
		at := &store.AccessToken{Hash: []byte(fmt.Sprintf("at-%d", i)), GrantID: g.ID, ClientID: c, ExpiresAt: now.Add(time.Hour)}
		rt := &store.RefreshToken{Hash: []byte(fmt.Sprintf("rt-%d", i)), GrantID: g.ID, ClientID: c, ExpiresAt: now.Add(time.Hour)}
		if err := s.CreateGrant(ctx, g, at, rt, nil); err != nil {
			t.Fatal(err)
		}
	}

	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var got bool
	if err := other.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, `+lockKeySQL+`)`, lockClass, lockSweep).Scan(&got); err != nil || !got {
		t.Fatalf("taking the sweep lock as another instance: %v %v", got, err)
	}
	removed, err := s.Sweep(ctx, now)
	if err != nil || removed != 0 {
		t.Errorf("Sweep while another instance sweeps: %d, %v; want 0, nil", removed, err)
	}
	if _, err := s.GetClient(ctx, "client-0"); err != nil {
		t.Errorf("a record went while another instance held the lock: %v", err)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1, `+lockKeySQL+`)`, lockClass, lockSweep); err != nil {
		t.Fatal(err)
	}

	// Each of the n grants goes with its two tokens (3 records), then the
	// n clients it kept (collected UnusedClientTTL after registration,
	// lifted by the grant only to IdleClientTTL past now) stay; the n
	// pending requests go.
	removed, err = s.Sweep(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3*n + n; removed != want {
		t.Errorf("Sweep removed %d records, want %d", removed, want)
	}
	for i := range n {
		if _, err := s.GetGrant(ctx, fmt.Sprintf("grant-%d", i), now.Add(-time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("grant-%d survived: %v", i, err)
		}
	}
	var left int
	if err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM mcp_auth_pending) + (SELECT count(*) FROM mcp_auth_access)
	+ (SELECT count(*) FROM mcp_auth_refresh) + (SELECT count(*) FROM mcp_auth_grants)`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d expired records left (%v)", left, err)
	}
	// The lock was released: another instance can take it now.
	if err := other.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, `+lockKeySQL+`)`, lockClass, lockSweep).Scan(&got); err != nil || !got {
		t.Errorf("Sweep kept the lock: %v %v", got, err)
	}
}
