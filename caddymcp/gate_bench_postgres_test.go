package caddymcp

import (
	"context"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

// newPostgresBenchGate is newBenchGate over PostgreSQL (the test server,
// on loopback).
func newPostgresBenchGate(t testing.TB) *benchGate {
	t.Helper()
	st, err := pgstore.Open(context.Background(), pgtest.DSN(t), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newBenchGateOn(t, st)
}

// BenchmarkGatePostgres is BenchmarkGate with the state in PostgreSQL:
// a token is read from the database once, then from the store's memory
// for up to pgstore.CacheTTL; a revocation on this instance counts from
// the next request.
func BenchmarkGatePostgres(b *testing.B) {
	benchmarkGate(b, newPostgresBenchGate(b))
}

// TestPostgresBenchGateRevocation checks BenchmarkGatePostgres's setup as
// TestBenchGateRevocation checks bbolt's.
func TestPostgresBenchGateRevocation(t *testing.T) {
	checkGateRevocation(t, newPostgresBenchGate(t))
}
