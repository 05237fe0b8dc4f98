// Package e2e tests caddymcp end to end: a real Caddy server started from a
// Caddyfile, with real TLS from Caddy's own local CA (verified, never
// skipped), a real bbolt file, upstream MCP servers and clients built with
// the official Go MCP SDK. The only stand-in is GitHub.
//
// Caddy runs in-process and is a process-wide singleton, so tests in this
// package do not run in parallel; each starts its own server on fresh ports.
package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	_ "github.com/caddymcp/caddymcp/caddymcp"
	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/internal/ports"
)

// GitHub OAuth app credentials the stand-in knows.
const (
	ghClientID     = "Iv1.e2e-client"
	ghClientSecret = "e2e-github-app-secret-value"
)

// Users of the stand-in.
var (
	alice = fakegithub.User{ID: 1001, Login: "alice", Name: "Alice Liddell", Email: "alice@example.com",
		AvatarURL: "https://avatars.example.com/alice", Orgs: []string{"acme"}, Teams: []fakegithub.Team{{Org: "acme", Slug: "platform"}},
		Repos: repos("alice", 30)}
	bob = fakegithub.User{ID: 1002, Login: "bob", Name: "Bob", Email: "bob@example.com", Orgs: []string{"other"}}
)

// repos makes n repositories, the first the most recently updated.
func repos(owner string, n int) []fakegithub.Repo {
	now := time.Now().UTC().Truncate(time.Second)
	var out []fakegithub.Repo
	for i := range n {
		name := fmt.Sprintf("repo-%02d", i)
		out = append(out, fakegithub.Repo{ID: int64(5000 + i), Name: name, FullName: owner + "/" + name,
			HTMLURL: "https://github.example/" + owner + "/" + name, UpdatedAt: now.Add(-time.Duration(i) * time.Hour)})
	}
	return out
}

// env is one running Caddy with mcp_auth, the GitHub stand-in, and an
// upstream MCP server behind the gate.
type env struct {
	t        *testing.T
	site     string // https://localhost:PORT, the issuer
	dir      string
	gh       *fakegithub.Server
	ghURL    string
	roots    *x509.CertPool
	upstream *upstream
	logs     *logBuffer
	admin    string // the admin endpoint, host:port
	// render produces this env's Caddyfile for the given options, so a
	// test can reload with changes.
	render func(options) string
	// dial, when set, makes this env's HTTP clients' connections (a load
	// balancer in the client: see instances_test.go).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// options shape the Caddyfile of a test.
type options struct {
	// authExtra is added inside the mcp_auth block.
	authExtra string
	// githubExtra is added inside mcp_auth's github block.
	githubExtra string
	// siteExtra is added inside the site block.
	siteExtra string
	// builtin serves /mcp with mcp_server instead of the upstream.
	builtin bool
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// start brings up the stand-in, an upstream MCP server and Caddy.
func start(t *testing.T, o options) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	port := freePort(t)
	e.site = fmt.Sprintf("https://localhost:%d", port)

	e.gh = fakegithub.New(fakegithub.Options{
		Apps:  []fakegithub.App{{ClientID: ghClientID, ClientSecret: ghClientSecret, CallbackURL: e.site + "/callback"}},
		Users: []fakegithub.User{alice, bob},
	})
	var err error
	e.ghURL, err = e.gh.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gh.Close() })

	e.upstream = startUpstream(t)

	// The GitHub secret comes from a file and the key from the
	// environment, so every login proves both placeholder kinds work.
	secretFile := filepath.Join(e.dir, "github_secret")
	if err := os.WriteFile(secretFile, []byte(ghClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	t.Setenv("E2E_MCP_AUTH_KEY", base64.StdEncoding.EncodeToString(key))

	e.logs = captureLogs(t, filepath.Join(e.dir, "caddy.log"))
	adminPort, httpPort := freePort(t), freePort(t)
	e.admin = fmt.Sprintf("localhost:%d", adminPort)
	e.render = func(o options) string {
		return globalOptions(adminPort, httpPort, port, filepath.Join(e.dir, "caddy"), e.logs.path) + fmt.Sprintf(`
localhost:%d {
	tls internal
	mcp_auth {
		github {
			client_id %s
			client_secret {file.%s}
			enterprise_url %s
			%s
		}
		storage bbolt %s
		secret_key {env.E2E_MCP_AUTH_KEY}
		%s
	}
	handle /mcp* {
		%s
	}
	handle /sse* {
		mcp_server
	}
	%s
}
`, port, ghClientID, secretFile, e.ghURL, o.githubExtra, e.statePath(), o.authExtra, mcpHandler(o, e.upstream.addr), o.siteExtra)
	}
	e.load(e.render(o))
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		e.logs.assertNoSecrets(t)
		// The security model stores tokens, codes and client secrets
		// only as their SHA-256 and GitHub tokens sealed: none of them,
		// as issued through Caddy, may be in the bbolt file.
		e.logs.assertNoSecretsIn(t, e.statePath(), "the state file")
	})

	root, err := os.ReadFile(filepath.Join(e.dir, "caddy", "pki", "authorities", "local", "root.crt"))
	if err != nil {
		t.Fatalf("reading Caddy's local CA root: %v", err)
	}
	e.roots = x509.NewCertPool()
	if !e.roots.AppendCertsFromPEM(root) {
		t.Fatal("Caddy's local CA root is not PEM")
	}
	e.waitReady()
	return e
}

// globalOptions is the global options block of every Caddy the tests
// run: loopback only, its own ports and storage, no trust store changes,
// and a debug log in logFile (where assertNoSecrets looks).
func globalOptions(adminPort, httpPort, httpsPort int, storageDir, logFile string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	default_bind 127.0.0.1
	storage file_system %s
	skip_install_trust
	log {
		output file %s
		level DEBUG
		format json
		# At debug level Caddy's events app copies the TLS app for each
		# certificate event, racing its Start (a data race inside Caddy
		# 2.11 that -race reports); its lines hold no secret of ours.
		exclude events
	}
}
`, adminPort, httpPort, httpsPort, storageDir, logFile)
}

// waitReady waits until the site answers over TLS verified against the
// local CA: Caddy issues the certificate in the background after Load.
func (e *env) waitReady() {
	e.t.Helper()
	c := e.httpClient(nil)
	c.Timeout = 2 * time.Second
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var resp *http.Response
		resp, err = c.Get(e.site + "/.well-known/oauth-authorization-server")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("metadata: %s", resp.Status)
		}
	}
	e.t.Fatalf("Caddy did not become ready: %v", err)
}

// mcpHandler is what serves /mcp: the built-in tools or the upstream.
func mcpHandler(o options, upstream string) string {
	if o.builtin {
		return "mcp_server"
	}
	return `reverse_proxy ` + upstream + ` {
			header_up X-Forwarded-User {http.auth.user.login}
			header_up X-Forwarded-User-Id {http.auth.user.id}
			header_up X-MCP-Client {mcp_auth.client_id}
		}`
}

func (e *env) statePath() string { return filepath.Join(e.dir, "state.db") }

// load adapts a Caddyfile and runs it.
func (e *env) load(caddyfile string) {
	e.t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		e.t.Fatalf("adapting the Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "not formatted") {
			e.t.Logf("adapter warning: %v", w)
		}
	}
	if err := caddy.Load(cfg, true); err != nil {
		e.t.Fatalf("loading the config: %v", err)
	}
}

// httpClient trusts Caddy's local CA and nothing else, and does not follow
// redirects, so tests see every hop.
func (e *env) httpClient(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:     jar,
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: e.roots},
			ForceAttemptHTTP2: true,
			DialContext:       e.dial,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// browser is a user agent with cookies, signed in to the stand-in as a
// given GitHub user, that plays the user through the authorization flow
// (Authorize) or one request at a time (step).
type browser struct {
	*fakegithub.Browser
	e *env
}

func (e *env) browser(login string) *browser {
	return &browser{Browser: fakegithub.NewBrowser(e.ghURL, login, e.httpClient(nil)), e: e}
}

// fetcher adapts a browser to the SDK's AuthorizationCodeFetcher.
func (b *browser) fetcher() auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		final, err := b.Authorize(ctx, args.URL)
		if err != nil {
			return nil, err
		}
		q := final.Query()
		if e := q.Get("error"); e != "" {
			return nil, fmt.Errorf("authorization refused: %s: %s", e, q.Get("error_description"))
		}
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
}

// sdkClient is an MCP client of the official SDK that logs in through b,
// registering dynamically.
func (e *env) sdkHandler(t *testing.T, b *browser) *auth.AuthorizationCodeHandler {
	t.Helper()
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{
			Metadata: &oauthex.ClientRegistrationMetadata{
				ClientName:              "e2e SDK client",
				RedirectURIs:            []string{"http://127.0.0.1:33418/callback"},
				TokenEndpointAuthMethod: "none",
				GrantTypes:              []string{"authorization_code", "refresh_token"},
				ResponseTypes:           []string{"code"},
			},
		},
		RedirectURL:              "http://127.0.0.1:33418/callback",
		AuthorizationCodeFetcher: b.fetcher(),
		Client:                   e.httpClient(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// connect opens an MCP session to path through the gate with handler h.
func (e *env) connect(ctx context.Context, t *testing.T, path string, h auth.OAuthHandler) (*mcp.ClientSession, error) {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	return client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:     e.site + path,
		HTTPClient:   e.httpClient(nil),
		OAuthHandler: h,
	}, nil)
}

// upstream is an MCP server built with the SDK, reached through
// reverse_proxy, that reports the request headers it received.
type upstream struct {
	addr string
	seen chan http.Header
}

func startUpstream(t *testing.T) *upstream {
	u := &upstream{seen: make(chan http.Header, 100)}
	server := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1"}, nil)
	addWhoami(server)
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case u.seen <- r.Header.Clone():
		default:
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u.addr = strings.TrimPrefix(srv.URL, "http://")
	return u
}

// whoamiResult is what the upstreams' whoami tool reports: the identity
// headers the gate set, and any Authorization header that got through.
type whoamiResult struct {
	User          string `json:"user"`
	UserID        string `json:"user_id"`
	Client        string `json:"client"`
	Authorization string `json:"authorization"`
}

// addWhoami adds the whoami tool to an upstream MCP server.
func addWhoami(server *mcp.Server) {
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "reports the identity headers the upstream received"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoamiResult, error) {
			h := req.Extra.Header
			return nil, whoamiResult{
				User:          h.Get("X-Forwarded-User"),
				UserID:        h.Get("X-Forwarded-User-Id"),
				Client:        h.Get("X-MCP-Client"),
				Authorization: h.Get("Authorization"),
			}, nil
		})
}

// logBuffer is Caddy's log file, read back to check that no secret was
// ever written.
type logBuffer struct {
	path    string
	mu      sync.Mutex // clients of one test add secrets concurrently
	secrets []string
}

func captureLogs(t *testing.T, path string) *logBuffer {
	return &logBuffer{path: path, secrets: []string{ghClientSecret}}
}

// addSecret registers a value that must never appear in any log line.
func (l *logBuffer) addSecret(s string) {
	if s != "" {
		l.mu.Lock()
		l.secrets = append(l.secrets, s)
		l.mu.Unlock()
	}
}

// assertNoSecrets checks Caddy's log.
func (l *logBuffer) assertNoSecrets(t *testing.T) { l.assertNoSecretsIn(t, l.path, "Caddy's log") }

// assertNoSecretsIn checks that the file at path, what for messages, holds
// none of l's secrets and nothing shaped like a secret.
func (l *logBuffer) assertNoSecretsIn(t *testing.T, path, what string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("reading %s: %v", what, err)
		return
	}
	if len(b) == 0 {
		t.Errorf("%s is empty; the secret check would prove nothing", what)
	}
	l.mu.Lock()
	secrets := slices.Clone(l.secrets)
	l.mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(string(b), s) {
			t.Errorf("a secret (%.8s…) appears in %s", s, what)
		}
	}
	// Every secret we or the stand-in mint has a recognisable prefix, so
	// this also catches ones the test never saw (GitHub tokens, states).
	if m := secretShape.FindString(string(b)); m != "" {
		t.Errorf("something shaped like a secret (%.10s…) appears in %s", m, what)
	}
}

var secretShape = regexp.MustCompile(`(gho_|mcp_at_|mcp_rt_|mcp_ac_|mcp_cs_)[A-Za-z0-9_-]{20,}`)

// getJSON fetches url (of this site) and decodes a 200 answer into v. It
// returns the status.
func (e *env) getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := e.httpClient(nil).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
	return resp.StatusCode
}
