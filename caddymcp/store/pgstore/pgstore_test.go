package pgstore_test

import (
	"context"
	"os"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
	"github.com/caddymcp/caddymcp/caddymcp/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open opens a store on a fresh schema of the test server.
func open(t *testing.T) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgtest.DSN(t), pgstore.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestContract runs the store contract suite, the one bboltstore passes,
// against a real PostgreSQL server.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}
