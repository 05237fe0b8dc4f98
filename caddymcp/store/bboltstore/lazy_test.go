package bboltstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/storetest"
)

// TestNewContract: a store made by New, whose file every first call
// opens, meets the contract.
func TestNewContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := New(filepath.Join(t.TempDir(), "state", "caddymcp.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestNewLazy: New touches nothing; a locked file fails OpenFile and
// calls, which succeed once it is free; a store closed unopened never
// opens its file.
func TestNewLazy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "caddymcp.db")
	s, err := New(path, Options{LockTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("New created the directory (or worse): %v", err)
	}

	holder, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.OpenFile(time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("OpenFile of a held file: %v, want ErrLocked", err)
	}
	if _, err := s.GetClient(ctx, "c1"); !errors.Is(err, ErrLocked) {
		t.Fatalf("a call on a held file: %v, want ErrLocked", err)
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClient(ctx, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a call once the file is free: %v, want ErrNotFound", err)
	}
	if err := s.OpenFile(0); err != nil {
		t.Fatalf("OpenFile of an open store: %v", err)
	}

	closed, err := New(filepath.Join(t.TempDir(), "other.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := closed.GetClient(ctx, "c1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("a call on a store closed unopened: %v, want ErrClosed", err)
	}
	if _, err := os.Stat(closed.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a store closed unopened created its file: %v", err)
	}
	if _, err := New("", Options{}); err == nil {
		t.Error("New with an empty path succeeded")
	}
}
