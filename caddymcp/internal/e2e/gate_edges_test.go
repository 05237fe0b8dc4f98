package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// These tests hold the gate to its edges through real Caddy: paths an
// upstream reads differently from the gate, CORS preflights, identity
// placeholders from GitHub profiles, the challenge, and legacy SSE
// endpoints that would send the client (and its token) elsewhere.

// echoRequest is what the echo upstream received.
type echoRequest struct {
	Method     string      `json:"method"`
	RequestURI string      `json:"request_uri"` // raw, as the upstream routes on it
	Header     http.Header `json:"header"`
	Body       string      `json:"body"`
}

// echoUpstream answers every request with what it received, and keeps it.
type echoUpstream struct {
	addr string
	mu   sync.Mutex
	seen []echoRequest
}

func startEchoUpstream(t *testing.T) *echoUpstream {
	u := &echoUpstream{}
	u.addr = serveUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got := echoRequest{Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: string(body)}
		u.mu.Lock()
		u.seen = append(u.seen, got)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(got)
	}))
	return u
}

func (u *echoUpstream) all() []echoRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]echoRequest(nil), u.seen...)
}

// startEdges runs a site that protects /mcp, /mcp/admin (nested, with its
// own scope) and /echo/mcp, and routes /echo/mcp, and everything no other
// handle takes, to the echo upstream with the identity in headers.
func startEdges(t *testing.T) (*env, *echoUpstream) {
	echo := startEchoUpstream(t)
	proxy := fmt.Sprintf(`reverse_proxy %s {
			header_up X-Forwarded-User {http.auth.user.login}
			header_up X-Forwarded-Name {http.auth.user.name}
			header_up X-Forwarded-Email {http.auth.user.email}
		}`, echo.addr)
	e := start(t, options{
		authExtra: `protect /mcp /sse /echo/mcp
		protect /mcp/admin {
			scopes admin
		}
		scopes_supported admin`,
		siteExtra: "handle /echo/mcp* {\n\t\t" + proxy + "\n\t}\n\thandle {\n\t\t" + proxy + "\n\t}",
	})
	return e, echo
}

// preflightHeader is what a browser sends before a 2026-07-28 request
// from the MCP Inspector in direct mode.
func preflightHeader() http.Header {
	return http.Header{
		"Origin":                         {"http://localhost:6274"},
		"Access-Control-Request-Method":  {"POST"},
		"Access-Control-Request-Headers": {"authorization, content-type, mcp-protocol-version, mcp-method, mcp-name, mcp-param-uri"},
	}
}

// TestGateEdgesAmbiguousPaths: the paths that nested protected resources
// or a raw-routing upstream read differently from the gate are refused
// with 400, with a good token and as preflights, and never reach the
// upstream.
func TestGateEdgesAmbiguousPaths(t *testing.T) {
	e, echo := startEdges(t)
	c := e.register(t, false)
	b := e.browser("alice")
	site := c.login(t, b, "")           // the whole site: good on every path
	mcp := c.login(t, b, e.site+"/mcp") // /mcp only, not /mcp/admin
	bearer := func(tok string) http.Header {
		return http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"application/json"}}
	}

	// The premises: the catch-all handle proxies raw paths, and the /mcp
	// token is no good at /mcp/admin.
	if resp, _ := e.rawRequest(t, http.MethodPost, "/elsewhere/a%2fb", "{}", bearer(site.AccessToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("an ungated path with an encoded slash: %s, want the upstream's 200", resp.Status)
	}
	// No token of ours reaches an upstream, on an ungated path either.
	if seen := echo.all(); len(seen) == 0 || seen[len(seen)-1].Header.Get("Authorization") != "" {
		t.Errorf("the ungated upstream received the client's access token")
	}
	if resp, _ := e.rawRequest(t, http.MethodPost, "/mcp/admin", "{}", bearer(mcp.AccessToken)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/mcp/admin with a /mcp token: %s, want 401", resp.Status)
	}
	before := len(echo.all())

	for _, target := range []string{
		"/mcp;/admin",             // servlet upstreams read /mcp/admin; the gate read /mcp
		"/mcp;x=1/admin",          //
		"/mcp%3B/admin",           // the same, encoded
		"/mcp/%252e%252e/admin",   // decoded twice: /mcp/../admin
		"/mcp/x/%252E%252E/admin", //
		"/mcp/..%2fx",             // Caddy cleans it to /x (ungated); the upstream sees it under /mcp
		"/%6Dcp/..%2Fx",           //
		"/echo/mcp/a%2f..%2fx",    //
		"/x/..%2fmcp/admin",       // the forms refused before
		"/mcp/admin%2F..",
	} {
		for _, tc := range []struct {
			method string
			header http.Header
		}{{http.MethodPost, bearer(site.AccessToken)}, {http.MethodPost, bearer(mcp.AccessToken)}, {http.MethodOptions, preflightHeader()}} {
			resp, body := e.rawRequest(t, tc.method, target, "{}", tc.header)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not allowed in protected paths") {
				t.Errorf("%s %s: %s %q, want 400", tc.method, target, resp.Status, body)
			}
		}
	}
	for _, r := range echo.all()[before:] {
		t.Errorf("the upstream received %s %s", r.Method, r.RequestURI)
	}
}

// TestGateEdgesPreflight: a preflight on a protected path reaches the
// protected server (it alone knows the origins and headers it takes), as a
// browser sends it: without a body, and with the identity headers the
// operator forwards empty, not the client's and not placeholder names.
func TestGateEdgesPreflight(t *testing.T) {
	e, echo := startEdges(t)
	h := preflightHeader()
	h["X-Forwarded-User"] = []string{"mallory"}
	resp, body := e.rawRequest(t, http.MethodOptions, "/echo/mcp", `{"jsonrpc":"2.0","method":"tools/call"}`, h)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("preflight: %s %q, want the upstream's answer", resp.Status, body)
	}
	var got echoRequest
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	if got.Method != http.MethodOptions || got.Body != "" || got.Header.Get("Content-Length") != "" {
		t.Errorf("the upstream received %s with body %q (Content-Length %q), want OPTIONS without one", got.Method, got.Body, got.Header.Get("Content-Length"))
	}
	for _, name := range []string{"X-Forwarded-User", "X-Forwarded-Name", "X-Forwarded-Email"} {
		if v := got.Header.Get(name); v != "" {
			t.Errorf("the preflight reached the upstream with %s: %q, want it empty", name, v)
		}
	}
	if got.Header.Get("Access-Control-Request-Headers") != h.Get("Access-Control-Request-Headers") {
		t.Errorf("the preflight lost what it asks for: %q", got.Header.Get("Access-Control-Request-Headers"))
	}
	if len(echo.all()) != 1 {
		t.Errorf("the upstream received %d requests, want the one preflight", len(echo.all()))
	}
}

// TestGateEdgesProfileFields: a GitHub name is data. A placeholder in it
// reaches the upstream literally; CR/LF in it neither splits the header
// nor fails the request; the upstream sees them as spaces.
func TestGateEdgesProfileFields(t *testing.T) {
	e, _ := startEdges(t)
	e.gh.AddUser(fakegithub.User{ID: 3001, Login: "mallet", Name: "{env.HOME} {http.request.header.Cookie}", Email: "mallet@example.com"})
	e.gh.AddUser(fakegithub.User{ID: 3002, Login: "eve", Name: "Eve\r\nX-Injected: 1", Email: "eve@example.com\r\n\r\nGET / HTTP/1.1"})
	c := e.register(t, false)
	for _, tc := range []struct{ login, name, email string }{
		{"mallet", "{env.HOME} {http.request.header.Cookie}", "mallet@example.com"},
		{"eve", "Eve  X-Injected: 1", "eve@example.com    GET / HTTP/1.1"},
	} {
		t.Run(tc.login, func(t *testing.T) {
			tok := c.login(t, e.browser(tc.login), e.site+"/echo/mcp")
			resp, body := e.rawRequest(t, http.MethodPost, "/echo/mcp", "{}", http.Header{
				"Authorization": {"Bearer " + tok.AccessToken}, "Content-Type": {"application/json"}, "Cookie": {"session=s3cr3t"}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST /echo/mcp as %s: %s %q", tc.login, resp.Status, body)
			}
			var got echoRequest
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if v := got.Header.Values("X-Forwarded-Name"); len(v) != 1 || v[0] != tc.name {
				t.Errorf("X-Forwarded-Name %q, want exactly %q", v, tc.name)
			}
			if v := got.Header.Values("X-Forwarded-Email"); len(v) != 1 || v[0] != tc.email {
				t.Errorf("X-Forwarded-Email %q, want exactly %q", v, tc.email)
			}
			if got.Header.Get("X-Injected") != "" {
				t.Errorf("a header was injected: %v", got.Header)
			}
			if got.Header.Get("X-Forwarded-User") != tc.login {
				t.Errorf("X-Forwarded-User %q", got.Header.Get("X-Forwarded-User"))
			}
		})
	}
}

// challengeSyntax is one RFC 6750 Bearer challenge and nothing else.
var challengeSyntax = regexp.MustCompile(`^Bearer [a-z_]+="[^"\\\x00-\x1f\x7f]*"(, [a-z_]+="[^"\\\x00-\x1f\x7f]*")*$`)

// TestGateEdgesChallenge: whatever the request path holds (quotes,
// commas, backslashes, escapes), WWW-Authenticate is one well-formed
// challenge naming a metadata document on this site that exists.
func TestGateEdgesChallenge(t *testing.T) {
	e, _ := startEdges(t)
	for _, target := range []string{
		"/echo/mcp",
		`/echo/mcp/a"b`,
		"/echo/mcp/a,b",
		`/echo/mcp/x",error="invalid_request`,
		"/echo/mcp/a%22b",
		"/echo/mcp/a%2Cb%20c",
		"/echo/mcp?x=%22",
	} {
		for _, authz := range []string{"", "Bearer mcp_at_not-a-token"} {
			h := http.Header{}
			if authz != "" {
				h.Set("Authorization", authz)
			}
			resp, _ := e.rawRequest(t, http.MethodGet, target, "", h)
			wa := resp.Header.Values("WWW-Authenticate")
			if resp.StatusCode != http.StatusUnauthorized || len(wa) != 1 || !challengeSyntax.MatchString(wa[0]) {
				t.Errorf("GET %s (%q): %s, challenge %q", target, authz, resp.Status, wa)
				continue
			}
			doc := regexp.MustCompile(`resource_metadata="([^"]*)"`).FindStringSubmatch(wa[0])[1]
			if !strings.HasPrefix(doc, e.site+"/.well-known/oauth-protected-resource/echo/mcp") {
				t.Errorf("GET %s: the challenge names %q", target, doc)
				continue
			}
			var meta map[string]any
			if status := e.getJSON(t, doc, &meta); status != http.StatusOK {
				t.Errorf("GET %s: the document it names, %s, answers %d", target, doc, status)
			}
		}
	}
}

// TestGateEdgesSSEEndpoint: a legacy SSE upstream's endpoint event reaches
// the client only as a path on this site; one that would read as another
// host, or that does not parse, ends the stream, and the error is logged.
func TestGateEdgesSSEEndpoint(t *testing.T) {
	upstream := serveUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The event this upstream announces is the test's to choose.
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "event: endpoint\ndata: %s\n\n", r.URL.Query().Get("announce"))
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	e := start(t, options{authExtra: "protect /mcp /sse /rawsse",
		siteExtra: fmt.Sprintf("handle /rawsse* {\n\t\treverse_proxy %s {\n\t\t\tflush_interval -1\n\t\t}\n\t}", upstream)})
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/rawsse")
	stream := func(announce string) (sseEvent, bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), proxyWait)
		defer cancel()
		resp := e.proxyRequest(ctx, t, http.MethodGet, "/rawsse/sse?announce="+url.QueryEscape(announce), tok.AccessToken, "", http.Header{"Accept": {"text/event-stream"}})
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /rawsse/sse: %s", resp.Status)
		}
		select {
		case ev, ok := <-readEvents(resp.Body):
			return ev, ok
		case <-ctx.Done():
			t.Fatalf("neither an event nor the end of the stream within %s", proxyWait)
		}
		return sseEvent{}, false
	}
	for announce, want := range map[string]string{
		"/rawsse/messages?sessionId=1":                "/rawsse/messages?sessionId=1",
		"http://" + upstream + "/rawsse/messages?s=2": "/rawsse/messages?s=2",
		"messages?s=3": "/rawsse/messages?s=3",
	} {
		if ev, ok := stream(announce); !ok || ev.name != "endpoint" || ev.data != want {
			t.Errorf("announced %q: the client got %q %q (stream open %v), want %q", announce, ev.name, ev.data, ok, want)
		}
	}
	for _, announce := range []string{
		"///evil.example/messages?sessionId=1",
		"//evil.example/messages?sessionId=1",
		`/\evil.example/messages`,
		"/.//evil.example/messages",
		"http://[::1/messages",
		"/rawsse/%2e%2e/%2e%2e/messages",
		"javascript:alert(1)",
	} {
		if ev, ok := stream(announce); ok {
			t.Errorf("announced %q: the client got %q %q, want the stream ended", announce, ev.name, ev.data)
		}
	}
	logs, err := os.ReadFile(e.logs.path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logs), "ending an SSE stream"); n < 7 {
		t.Errorf("%d streams ended with an error logged, want 7", n)
	}
	if strings.Contains(string(logs), "sessionId=1") {
		t.Errorf("a legacy session ID was logged")
	}
}
