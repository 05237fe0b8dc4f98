package caddymcp

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// noIdP stands in for GitHub where no login happens: the gate never asks
// the identity provider anything.
type noIdP struct{}

func (noIdP) AuthCodeURL(string, string, string) string { return "" }
func (noIdP) Exchange(context.Context, string, string, string) (*oauth2.Token, error) {
	return nil, oauth.ErrUpstreamRevoked
}
func (noIdP) Admit(context.Context, *oauth2.Token) (store.Identity, []string, error) {
	return store.Identity{}, nil, oauth.ErrUpstreamRevoked
}
func (noIdP) Recheck(context.Context, *oauth2.Token, store.Identity) (store.Identity, []string, error) {
	return store.Identity{}, nil, oauth.ErrUpstreamRevoked
}

// benchGate is an MCPAuth gating /mcp over a real store (a bbolt file,
// or PostgreSQL in gate_bench_postgres_test.go) that holds one live grant,
// and the access token of that grant.
type benchGate struct {
	m     *MCPAuth
	st    store.Store
	token string
	grant string
}

func newBenchGate(t testing.TB) *benchGate {
	t.Helper()
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "state.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newBenchGateOn(t, st)
}

// newBenchGateOn is newBenchGate over a given store.
func newBenchGateOn(t testing.TB, st store.Store) *benchGate {
	t.Helper()
	keys, err := oauth.NewKeys(make([]byte, oauth.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := oauth.New(oauth.Config{Resources: []oauth.Resource{{Path: "/mcp"}}}, st, noIdP{}, keys, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	m := &MCPAuth{server: srv, logger: zap.NewNop()}
	matcher := caddyhttp.MatchPath{"/mcp*"}
	if err := matcher.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	m.resources = []gatedResource{{res: srv.ResourceFor("/mcp"), matcher: matcher, lowerPath: "/mcp"}}

	ctx := context.Background()
	now := time.Now()
	if err := st.PutClient(ctx, &store.Client{ID: "client-1", RedirectURIs: []string{"http://127.0.0.1/cb"}, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	token := store.NewSecret("mcp_at_")
	who := store.Identity{ID: 583231, Login: "octocat", Name: "The Octocat", Email: "octocat@github.com"}
	g := &store.Grant{ID: "grant-1", ClientID: "client-1", User: who, Scope: "read", Resource: "https://mcp.example.com/mcp",
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	at := &store.AccessToken{Hash: store.SecretKey("mcp_at_", token), GrantID: g.ID, ClientID: g.ClientID, User: who, Scope: g.Scope, Resource: g.Resource,
		ExpiresAt: now.Add(time.Hour)}
	rsum := sha256.Sum256([]byte("refresh"))
	rt := &store.RefreshToken{Hash: rsum[:], GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
	if err := st.CreateGrant(ctx, g, at, rt, nil); err != nil {
		t.Fatal(err)
	}
	return &benchGate{m: m, st: st, token: token, grant: g.ID}
}

// request is what Caddy hands a handler: a request with its own replacer
// and variables (those caddyhttp.PrepareRequest sets).
func (g *benchGate) request(base *http.Request) *http.Request {
	ctx := context.WithValue(base.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	vars := map[string]any{caddyhttp.TrustedProxyVarKey: false, caddyhttp.ClientIPVarKey: "192.0.2.1"}
	r := base.WithContext(context.WithValue(ctx, caddyhttp.VarsCtxKey, vars))
	r.Header = http.Header{"Authorization": {"Bearer " + g.token}, "Content-Type": {"application/json"}}
	return r
}

// passed is a next handler that records the placeholders the gate set,
// and the login of the verdict it handed to mcp_server.
type passed struct{ login, id, verdict string }

func (p *passed) ServeHTTP(_ http.ResponseWriter, r *http.Request) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	p.login, _ = repl.GetString("http.auth.user.login")
	p.id, _ = repl.GetString("http.auth.user.id")
	if a := authenticatedFrom(r.Context()); a != nil {
		p.verdict = a.token.User.Login
	}
	return nil
}

// TestBenchGateRevocation checks the setup BenchmarkGate measures: the
// token is accepted with its placeholders, and revoking its grant refuses
// the very next request, whatever the gate may keep between requests.
func TestBenchGateRevocation(t *testing.T) {
	checkGateRevocation(t, newBenchGate(t))
}

// checkGateRevocation: the token is accepted with its placeholders, and
// revoking its grant refuses the very next request.
func checkGateRevocation(t *testing.T, g *benchGate) {
	t.Helper()
	base := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", nil)
	next := &passed{}
	w := httptest.NewRecorder()
	if err := g.m.ServeHTTP(w, g.request(base), next); err != nil {
		t.Fatal(err)
	}
	if next.login != "octocat" || next.id != "583231" || next.verdict != "octocat" {
		t.Fatalf("placeholders login=%q id=%q, verdict for %q; response %d %s", next.login, next.id, next.verdict, w.Code, w.Body)
	}
	if err := g.st.RevokeGrant(context.Background(), g.grant); err != nil {
		t.Fatal(err)
	}
	next = &passed{}
	w = httptest.NewRecorder()
	if err := g.m.ServeHTTP(w, g.request(base), next); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusUnauthorized || next.login != "" || next.verdict != "" {
		t.Fatalf("after revocation: status %d, next handler saw %q, verdict for %q", w.Code, next.login, next.verdict)
	}
}

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkGate measures what the gate adds to a request to a protected
// path: path match, token hash, store lookup, audience, expiry and scope
// checks, and the placeholders. "plain" is the same request handed straight
// to the next handler (a fresh replacer and request, as Caddy makes), so
// the gate's cost is the difference.
func BenchmarkGate(b *testing.B) {
	benchmarkGate(b, newBenchGate(b))
}

// benchmarkGate runs BenchmarkGate's two cases on g.
func benchmarkGate(b *testing.B, g *benchGate) {
	base := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", nil)
	noop := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	w := &discard{h: http.Header{}}
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := noop.ServeHTTP(w, g.request(base)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := g.request(base)
			if err := g.m.ServeHTTP(w, r, noop); err != nil {
				b.Fatal(err)
			}
			if r.Header.Get("Authorization") != "" {
				b.Fatal("the gate did not accept the token")
			}
		}
	})
	// The gate's own time per request under load (32 goroutines on the
	// machine's CPUs, as Caddy serves 32 connections), as percentiles:
	// what it adds to a request's latency, GC and scheduling included.
	b.Run("gated-latency", func(b *testing.B) {
		var mu sync.Mutex
		var all []time.Duration
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			w := &discard{h: http.Header{}}
			var lat []time.Duration
			for pb.Next() {
				r := g.request(base)
				t0 := time.Now()
				err := g.m.ServeHTTP(w, r, noop)
				lat = append(lat, time.Since(t0))
				if err != nil || r.Header.Get("Authorization") != "" {
					b.Error("the gate did not accept the token", err)
					return
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
		slices.Sort(all)
		if len(all) > 0 {
			b.ReportMetric(float64(all[len(all)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(all[len(all)*999/1000].Nanoseconds()), "p99.9-ns")
		}
	})
}
