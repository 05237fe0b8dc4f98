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

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestSSEStreamsShrink: the streams map holds only open streams, and
// messages for unknown sessions add nothing.
func TestSSEStreamsShrink(t *testing.T) {
	p := &sseStreams{maxBody: defaultMaxRequestBody, tag: instanceTag}
	gate := testGate(t)
	for i := range 50 {
		r := httptest.NewRequest(http.MethodPost, "/sse?sessionid=x"+strconv.Itoa(i), strings.NewReader("{}"))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		p.serve(&authenticated{gate: gate, token: &store.AccessToken{User: store.Identity{ID: int64(i)}}}, w, r)
		if w.Code != http.StatusNotFound {
			t.Fatalf("POST for an unknown session: %d, want 404", w.Code)
		}
	}
	if n := p.size(); n != 0 {
		t.Fatalf("after messages to unknown sessions: %d streams, want 0", n)
	}

	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	for _, user := range []int64{7, 7, 8} {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		a := &authenticated{gate: gate, token: &store.AccessToken{User: store.Identity{ID: user}}}
		r := httptest.NewRequest(http.MethodGet, "/sse", nil).WithContext(ctx)
		wg.Go(func() { p.serve(a, httptest.NewRecorder(), r) })
	}
	waitFor(t, "three streams", func() bool { return p.size() == 3 })
	cancels[2]()
	waitFor(t, "user 8's stream closed", func() bool { return p.size() == 2 })
	cancels[0]()
	waitFor(t, "one of user 7's streams closed", func() bool { return p.size() == 1 })
	cancels[1]()
	wg.Wait()
	if n := p.size(); n != 0 {
		t.Errorf("after every stream closed: %d streams in the map, want 0", n)
	}
}

// testGate is an mcp_auth gate with only what mcp_server asks of it.
func testGate(t testing.TB) *MCPAuth {
	t.Helper()
	idp, err := githubidp.New(githubidp.Config{ClientID: "test", ClientSecret: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &MCPAuth{idp: idp}
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
