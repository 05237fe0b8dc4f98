package caddymcp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestPerUserSSEShrinks: a user's SSE handler lives only while they have a
// stream open, and messages for users without one do not add entries.
func TestPerUserSSEShrinks(t *testing.T) {
	p := &perUserSSE{opts: &mcp.SSEOptions{DisableLocalhostProtection: true}}
	for i := range 50 {
		r := httptest.NewRequest(http.MethodPost, "/sse?sessionid=x", strings.NewReader("{}"))
		w := httptest.NewRecorder()
		p.serve(strconv.Itoa(i), w, r)
		if w.Code != http.StatusNotFound {
			t.Fatalf("POST for a user without streams: %d, want 404", w.Code)
		}
	}
	if n := p.size(); n != 0 {
		t.Fatalf("after messages to unknown sessions: %d users in the map, want 0", n)
	}

	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	for _, user := range []int64{7, 7, 8} {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		setAuthenticated(ctx, &authenticated{token: &store.AccessToken{User: store.Identity{ID: user}}})
		r := httptest.NewRequest(http.MethodGet, "/sse", nil).WithContext(ctx)
		wg.Go(func() { p.serve(strconv.FormatInt(user, 10), httptest.NewRecorder(), r) })
	}
	waitFor(t, "two users with streams", func() bool { return p.size() == 2 })
	cancels[2]()
	waitFor(t, "user 8's stream closed", func() bool { return p.size() == 1 })
	cancels[0]()
	time.Sleep(50 * time.Millisecond) // one of user 7's two streams is still open
	if n := p.size(); n != 1 {
		t.Errorf("with one of user 7's streams open: %d users, want 1", n)
	}
	cancels[1]()
	wg.Wait()
	if n := p.size(); n != 0 {
		t.Errorf("after every stream closed: %d users in the map, want 0", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
