package caddymcp

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

func TestSessionIDBoundToUser(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := newSessionID("github.com#1001")
		if seen[id] {
			t.Fatalf("session ID %s handed out twice", id)
		}
		seen[id] = true
		for _, c := range id {
			if c < 0x21 || c > 0x7e {
				t.Fatalf("session ID %q has a character outside visible ASCII", id)
			}
		}
		if err := checkSessionID(id, "github.com#1001"); err != nil {
			t.Fatalf("its own user: %v", err)
		}
		if err := checkSessionID(id, "github.com#1002"); !errors.Is(err, errSessionOfAnother) {
			t.Fatalf("another user: %v, want a user mismatch", err)
		}
		if err := checkSessionID(id, "ghe.example.com#1001"); !errors.Is(err, errSessionOfAnother) {
			t.Fatalf("the same ID on another GitHub: %v, want a user mismatch", err)
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(newSessionID("github.com#1001"))
	for _, id := range []string{"", "x", "DHNQ6XU7X2RTBSBZDXHLUZMOIN", strings.Repeat("A", 43) + "=", "!" + strings.Repeat("A", 42),
		base64.RawURLEncoding.EncodeToString(raw[:31]), base64.RawURLEncoding.EncodeToString(append(raw, 0))} {
		if err := checkSessionID(id, "github.com#1001"); !errors.Is(err, errSessionNotFound) {
			t.Errorf("session ID %q: %v, want not found", id, err)
		}
	}
}

// pair is two mcp_server "instances" (each with its own transports, as two
// processes have) behind a round-robin balancer; the caller is chosen by
// the X-Test-User header (4242 alice by default, 4243 bob), and each
// answer says which instance gave it in X-Served-By.
type pair struct {
	lb       *httptest.Server
	backends [2]*httptest.Server
	mu       sync.Mutex
	served   map[string]map[string]bool // by session ID, the instances that served it
}

func newPair(t *testing.T) *pair {
	t.Helper()
	gate := testGate(t)
	p := &pair{served: map[string]map[string]bool{}}
	for i := range p.backends {
		s := &MCPServer{MaxRequestBody: defaultMaxRequestBody, logger: zap.NewNop()}
		s.transports = s.newTransports()
		s.sse.tag = []string{"AAAAAAAA", "BBBBBBBB"}[i]
		name := string(rune('A' + i))
		p.backends[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Served-By", name)
			if id := r.Header.Get(sessionIDHeader); id != "" {
				p.mu.Lock()
				if p.served[id] == nil {
					p.served[id] = map[string]bool{}
				}
				p.served[id][name] = true
				p.mu.Unlock()
			}
			user := int64(4242)
			if u := r.Header.Get("X-Test-User"); u != "" {
				user, _ = strconv.ParseInt(u, 10, 64)
			}
			ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{})
			setAuthenticated(ctx, &authenticated{gate: gate, token: &store.AccessToken{
				User: store.Identity{ID: user, Login: "user" + strconv.FormatInt(user, 10)}, ClientID: "test-client",
				ExpiresAt: time.Now().Add(time.Hour),
			}})
			if err := s.ServeHTTP(w, r.WithContext(ctx), nil); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		}))
		t.Cleanup(p.backends[i].Close)
	}
	var next atomic.Uint64
	proxies := [2]*httputil.ReverseProxy{}
	for i, b := range p.backends {
		u, _ := url.Parse(b.URL)
		proxies[i] = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, FlushInterval: -1}
	}
	p.lb = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxies[(next.Add(1)-1)%2].ServeHTTP(w, r)
	}))
	t.Cleanup(p.lb.Close)
	return p
}

// TestStreamableSessionAtEveryInstance: a session opened through a
// round-robin balancer is served by both instances, with the official Go
// SDK client, at every revision with sessions; another user's token
// presenting its ID is refused at each instance.
func TestStreamableSessionAtEveryInstance(t *testing.T) {
	p := newPair(t)
	for _, v := range []string{"2025-03-26", "2025-06-18", "2025-11-25"} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client := mcp.NewClient(&mcp.Implementation{Name: "balanced", Version: "1"}, nil)
			cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: p.lb.URL + "/mcp"}, &mcp.ClientSessionOptions{ProtocolVersion: v})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer cs.Close()
			if cs.ID() == "" {
				t.Fatal("no session ID was handed out")
			}
			if _, err := cs.ListTools(ctx, nil); err != nil {
				t.Fatalf("tools/list: %v", err)
			}
			for i := range 4 {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "calculate", Arguments: map[string]any{"operation": "add", "a": i, "b": 1}})
				if err != nil || res.IsError {
					t.Fatalf("calculate #%d: %v %+v", i, err, res)
				}
			}
			p.mu.Lock()
			served := len(p.served[cs.ID()])
			p.mu.Unlock()
			if served != 2 {
				t.Errorf("the session's requests were served by %d instances, want both", served)
			}

			for i := range 2 {
				req, _ := http.NewRequest(http.MethodPost, p.lb.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("MCP-Protocol-Version", v)
				req.Header.Set(sessionIDHeader, cs.ID())
				req.Header.Set("X-Test-User", "4243")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("bob in alice's session, request %d (instance %s): %s, want 403", i, resp.Header.Get("X-Served-By"), resp.Status)
				}
			}
		})
	}
}

// TestSessionRules: what a Streamable HTTP request meets before the SDK.
func TestSessionRules(t *testing.T) {
	p := newPair(t)
	post := func(body string, headers ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, p.backends[0].URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	resp := post(init)
	id := resp.Header.Get(sessionIDHeader)
	if resp.StatusCode != http.StatusOK || checkSessionID(id, testGate(t).idp.Host()+"#4242") != nil {
		t.Fatalf("initialize: %s, session ID %q bound to alice", resp.Status, id)
	}
	if resp := post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, "MCP-Protocol-Version", "2025-06-18", sessionIDHeader, id); resp.StatusCode != http.StatusOK || resp.Header.Get(sessionIDHeader) != "" {
		t.Errorf("tools/list in the session: %s, session header %q (only initialize hands one out)", resp.Status, resp.Header.Get(sessionIDHeader))
	}
	if resp := post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, "MCP-Protocol-Version", "2025-06-18", sessionIDHeader, "DHNQ6XU7X2RTBSBZDXHLUZMOIN"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a session ID never handed out: %s, want 404 (the client starts a new session)", resp.Status)
	}
	if resp := post(init, "X-Test-User", "4243"); resp.StatusCode != http.StatusOK || checkSessionID(resp.Header.Get(sessionIDHeader), testGate(t).idp.Host()+"#4243") != nil {
		t.Errorf("bob's initialize: %s, session ID bound to bob", resp.Status)
	}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequest(method, p.backends[1].URL+"/mcp", nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set(sessionIDHeader, id)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s in a session: %s, want 405 (nothing held to stream or terminate)", method, resp.Status)
		}
		req.Header.Set("X-Test-User", "4243")
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s in alice's session by bob: %s, want 403", method, resp.Status)
		}
	}
	if resp := post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"pad":"` + strings.Repeat("x", defaultMaxRequestBody) + `"}}`); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("an initialize over max_request_body: %s, want 413", resp.Status)
	}
}
