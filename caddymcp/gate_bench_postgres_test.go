package caddymcp

import (
	"context"
	"net/http"
	"net/http/httptest"
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
// each gated request is one indexed query over loopback, and nothing is
// cached, so a revocation on any instance counts from the next request.
func BenchmarkGatePostgres(b *testing.B) {
	benchmarkGate(b, newPostgresBenchGate(b))
}

// TestPostgresBenchGateRevocation checks BenchmarkGatePostgres's setup as
// TestBenchGateRevocation checks bbolt's.
func TestPostgresBenchGateRevocation(t *testing.T) {
	g := newPostgresBenchGate(t)
	base := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", nil)
	next := &passed{}
	w := httptest.NewRecorder()
	if err := g.m.ServeHTTP(w, g.request(base), next); err != nil {
		t.Fatal(err)
	}
	if next.login != "octocat" {
		t.Fatalf("placeholder login=%q; response %d %s", next.login, w.Code, w.Body)
	}
	if err := g.st.RevokeGrant(context.Background(), g.grant); err != nil {
		t.Fatal(err)
	}
	next = &passed{}
	w = httptest.NewRecorder()
	if err := g.m.ServeHTTP(w, g.request(base), next); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusUnauthorized || next.login != "" {
		t.Fatalf("after revocation: status %d, next handler saw %q", w.Code, next.login)
	}
}
