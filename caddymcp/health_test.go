package caddymcp

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// fixedStorage is a StorageBackend over a given store.
type fixedStorage struct{ st store.Store }

func (f fixedStorage) Store() store.Store { return f.st }

// brokenStore fails every listing, like a store whose file is gone.
type brokenStore struct{ store.Store }

func (brokenStore) ListClients(context.Context, string, int) ([]*store.Client, error) {
	return nil, errors.New("disk on fire")
}

func TestHealth(t *testing.T) {
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "state.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, tc := range []struct {
		name   string
		st     store.Store
		method string
		status int
		body   string
	}{
		{"ok", st, "GET", 200, `"status":"ok"`},
		{"head", st, "HEAD", 200, ""},
		{"store down", brokenStore{}, "GET", 503, `"status":"unavailable"`},
		{"post", st, "POST", 405, "method not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &MCPAuth{storage: fixedStorage{tc.st}, logger: zap.NewNop()}
			w := httptest.NewRecorder()
			m.serveHealth(w, httptest.NewRequest(tc.method, "/healthz", nil))
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("%s: %d %q, want %d %q", tc.method, w.Code, w.Body, tc.status, tc.body)
			}
			if strings.Contains(w.Body.String(), "fire") {
				t.Error("the health answer leaks the store's error")
			}
		})
	}
}
