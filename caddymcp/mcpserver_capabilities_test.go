package caddymcp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// ungatedMCPServer serves ungatedMCP on a loopback httptest server.
func ungatedMCPServer(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(ungatedMCP(t))
	t.Cleanup(srv.Close)
	return srv
}

// ungatedMCP is an mcp_server, built as Provision builds it, that takes
// every request for one signed-in user: the mcp_auth gate's verdict is set
// on the request the way the gate sets it, so that ServeHTTP routes it
// (stateless, sessions or legacy SSE) exactly as in production, without a
// login. Tests only: mcp_server itself serves nobody without a gate.
func ungatedMCP(t testing.TB) http.Handler {
	t.Helper()
	idp, err := githubidp.New(githubidp.Config{ClientID: "test", ClientSecret: "test"})
	if err != nil {
		t.Fatal(err)
	}
	gate := &MCPAuth{idp: idp}
	s := &MCPServer{
		MaxRequestBody:     defaultMaxRequestBody,
		SessionIdleTimeout: caddy.Duration(time.Minute),
		logger:             zap.NewNop(),
	}
	s.transports = s.newTransports()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{})
		setAuthenticated(ctx, &authenticated{gate: gate, token: &store.AccessToken{
			User:      store.Identity{ID: 4242, Login: "alice"},
			ClientID:  "test-client",
			Scope:     "read:user",
			ExpiresAt: time.Now().Add(time.Hour),
		}})
		if err := s.ServeHTTP(w, r.WithContext(ctx), nil); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

// capabilityProbes are the method families a server declares in its
// capabilities, each with one request that only a server serving that
// family answers, unless the family's request was removed from the
// protocol at revision removedIn.
var capabilityProbes = []struct {
	family    string
	declared  func(*mcp.ServerCapabilities) bool
	removedIn string
	call      func(context.Context, *mcp.ClientSession) error
}{
	{"tools", func(c *mcp.ServerCapabilities) bool { return c.Tools != nil }, "", func(ctx context.Context, cs *mcp.ClientSession) error {
		_, err := cs.ListTools(ctx, nil)
		return err
	}},
	{"prompts", func(c *mcp.ServerCapabilities) bool { return c.Prompts != nil }, "", func(ctx context.Context, cs *mcp.ClientSession) error {
		_, err := cs.ListPrompts(ctx, nil)
		return err
	}},
	{"resources", func(c *mcp.ServerCapabilities) bool { return c.Resources != nil }, "", func(ctx context.Context, cs *mcp.ClientSession) error {
		_, err := cs.ListResources(ctx, nil)
		return err
	}},
	{"resources (templates)", func(c *mcp.ServerCapabilities) bool { return c.Resources != nil }, "", func(ctx context.Context, cs *mcp.ClientSession) error {
		_, err := cs.ListResourceTemplates(ctx, nil)
		return err
	}},
	{"completions", func(c *mcp.ServerCapabilities) bool { return c.Completions != nil }, "", func(ctx context.Context, cs *mcp.ClientSession) error {
		// Well-formed, so that only the lack of the capability can refuse it.
		_, err := cs.Complete(ctx, &mcp.CompleteParams{
			Ref:      &mcp.CompleteReference{Type: "ref/prompt", Name: "any"},
			Argument: mcp.CompleteParamsArgument{Name: "any", Value: "a"},
		})
		return err
	}},
	// From 2026-07-28 a client asks for log messages in each request's
	// _meta, and logging/setLevel is gone whatever the server declares.
	{"logging", func(c *mcp.ServerCapabilities) bool { return c.Logging != nil }, sessionlessRevision, func(ctx context.Context, cs *mcp.ClientSession) error {
		params := &mcp.SetLoggingLevelParams{Level: "info"}
		if v := cs.InitializeResult().ProtocolVersion; v >= sessionlessRevision {
			// The SDK's client sends it there without the per-request
			// _meta every request carries, which the server would
			// refuse first (invalid params).
			params.Meta = mcp.Meta{
				mcp.MetaKeyProtocolVersion:    v,
				mcp.MetaKeyClientInfo:         map[string]any{"name": "capabilities", "version": "1"},
				mcp.MetaKeyClientCapabilities: map[string]any{},
			}
		}
		return cs.SetLoggingLevel(ctx, params)
	}},
}

// checkCapabilitiesMatchMethods asserts that every method family the
// session's server declares is answered, and every other one is refused
// with "method not found" (-32601).
func checkCapabilitiesMatchMethods(ctx context.Context, t *testing.T, cs *mcp.ClientSession) {
	caps := cs.InitializeResult().Capabilities
	if caps == nil {
		caps = &mcp.ServerCapabilities{}
	}
	revision := cs.InitializeResult().ProtocolVersion
	for _, p := range capabilityProbes {
		err := p.call(ctx, cs)
		var werr *jsonrpc.Error
		notFound := errors.As(err, &werr) && werr.Code == jsonrpc.CodeMethodNotFound
		declared := p.declared(caps)
		removed := p.removedIn != "" && revision >= p.removedIn
		switch {
		case removed && !notFound:
			t.Errorf("%s: removed at %s, answered %v, want method not found (%d)", p.family, p.removedIn, err, jsonrpc.CodeMethodNotFound)
		case removed:
		case declared && err != nil:
			t.Errorf("%s: declared, but refused: %v", p.family, err)
		case !declared && err == nil:
			t.Errorf("%s: not declared, but answered", p.family)
		case !declared && !notFound:
			t.Errorf("%s: not declared, refused with %v, want method not found (%d)", p.family, err, jsonrpc.CodeMethodNotFound)
		}
	}
}

// checkDeclaresOnlyTools asserts that the server declares what the
// built-in server serves: tools, whose list never changes, and nothing
// else (it sends no log messages, so not logging either, which from
// 2026-07-28 no request can probe).
func checkDeclaresOnlyTools(t *testing.T, cs *mcp.ClientSession) {
	got, _ := json.Marshal(cs.InitializeResult().Capabilities)
	if want := `{"tools":{}}`; string(got) != want {
		t.Errorf("capabilities %s, want %s", got, want)
	}
}

// TestMCPServerCapabilitiesMatchMethods: at every protocol revision, on
// both transports, the built-in server declares (in its initialize or
// server/discover result) exactly the method families it answers: tools,
// and nothing it would answer with empty lists or silence. The official
// conformance suite's server-stateless scenario checks this for prompts.
func TestMCPServerCapabilitiesMatchMethods(t *testing.T) {
	srv := ungatedMCPServer(t)
	for _, v := range []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"} {
		t.Run("streamable-"+v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client := mcp.NewClient(&mcp.Implementation{Name: "capabilities-" + v, Version: "1"}, nil)
			cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp"}, &mcp.ClientSessionOptions{ProtocolVersion: v})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ProtocolVersion; got != v {
				t.Fatalf("asked for %s, negotiated %s", v, got)
			}
			checkCapabilitiesMatchMethods(ctx, t, cs)
			checkDeclaresOnlyTools(t, cs)
		})
	}
	t.Run("sse-2024-11-05", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		client := mcp.NewClient(&mcp.Implementation{Name: "capabilities-sse", Version: "1"}, nil)
		cs, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: srv.URL + "/sse"}, &mcp.ClientSessionOptions{ProtocolVersion: "2024-11-05"})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer cs.Close()
		checkCapabilitiesMatchMethods(ctx, t, cs)
		checkDeclaresOnlyTools(t, cs)
	})
}
