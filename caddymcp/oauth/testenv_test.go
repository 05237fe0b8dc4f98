package oauth_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// The GitHub OAuth app the stand-in knows.
const (
	ghClientID     = "gh-test-client-id"
	ghClientSecret = "gh-test-client-secret-9f8e7d6c5b4a"
)

// Users of the stand-in.
var (
	alice = fakegithub.User{ID: 1001, Login: "alice", Name: "Alice Liddell", Email: "alice@example.com",
		Orgs: []string{"acme"}, Teams: []fakegithub.Team{{Org: "acme", Slug: "platform"}}}
	bob   = fakegithub.User{ID: 1002, Login: "bob", Name: "Bob", Email: "bob@example.com", Orgs: []string{"other"}}
	carol = fakegithub.User{ID: 1003, Login: "carol", Name: "Carol"}
)

// The protected resources of the default configuration. /mcp needs no
// scope; /mcp/admin (nested, for longest-prefix matching) needs "admin";
// /sse needs "tools". "read" is supported but required nowhere.
var defaultResources = []oauth.Resource{
	{Path: "/mcp"},
	{Path: "/mcp/admin", Scopes: []string{"admin"}},
	{Path: "/sse", Scopes: []string{"tools"}},
}

const (
	accessTTL  = time.Hour
	refreshTTL = 30 * 24 * time.Hour
)

// envOptions shape a test environment.
type envOptions struct {
	allowUsers, allowOrgs, allowTeams []string
	// allow5xx lets the server answer 5xx without failing the test (for
	// simulated store failures).
	allow5xx bool
	// wrapStore, if set, wraps the bbolt store given to the server.
	wrapStore func(store.Store) store.Store
	// shared, if set, is used instead of a new bbolt store: two sites
	// of one Caddy sharing the default state file.
	shared *bboltstore.Store
	// scopeRules restrict scopes to some users.
	scopeRules []githubidp.ScopeRule
	// config, if set, adjusts the server's configuration.
	config func(*oauth.Config)
	// observer, if set, receives the server's events.
	observer oauth.Observer
}

// env is one authorization server on an httptest TLS server, backed by a
// real bbolt store and the GitHub stand-in.
type env struct {
	t      *testing.T
	srv    *oauth.Server
	st     *bboltstore.Store
	gh     *fakegithub.Server
	ghURL  string
	idp    *githubidp.Provider
	ts     *httptest.Server
	issuer string
	clock  *clock
	logs   *observer.ObservedLogs
	state  *envState
}

// envState is what an env and its views for subtests share.
type envState struct {
	mu       sync.Mutex
	bad      []string // 5xx answers and panics
	secrets  []string // every secret the tests saw, checked against the logs
	ghAfter  func(*http.Request, *http.Response)
	allow5xx bool
	// registered counts public clients, to name each one apart.
	registered int
}

// sub returns a view of e whose helpers fail the subtest t.
func (e *env) sub(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// clock is the server's clock, safe to move while requests run.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

func newEnv(t *testing.T) *env { return newEnvWith(t, envOptions{}) }

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{}, state: &envState{allow5xx: o.allow5xx}}

	// The TLS listener exists before the server starts, so the issuer (and
	// with it GitHub's callback URL) is known before anything is built.
	e.ts = httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	e.issuer = "https://" + e.ts.Listener.Addr().String()

	e.gh = fakegithub.New(fakegithub.Options{
		Apps:  []fakegithub.App{{ClientID: ghClientID, ClientSecret: ghClientSecret, CallbackURL: e.issuer + "/callback"}},
		Users: []fakegithub.User{alice, bob, carol},
	})
	var err error
	e.ghURL, err = e.gh.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gh.Close() })

	e.idp, err = githubidp.New(githubidp.Config{
		ClientID:      ghClientID,
		ClientSecret:  ghClientSecret,
		EnterpriseURL: e.ghURL,
		Allow:         githubidp.Audience{Users: o.allowUsers, Orgs: o.allowOrgs, Teams: o.allowTeams},
		ScopeRules:    o.scopeRules,
		HTTPClient:    &http.Client{Transport: &ghTransport{e: e}, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}

	if e.st = o.shared; e.st == nil {
		e.st, err = bboltstore.Open(t.TempDir()+"/state.db", bboltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.st.Close() })
	}
	var st store.Store = e.st
	if o.wrapStore != nil {
		st = o.wrapStore(st)
	}

	keys, err := oauth.NewKeys(bytes.Repeat([]byte{0x42}, oauth.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	cfg := oauth.Config{
		Resources:       defaultResources,
		ScopesSupported: []string{"read"},
		AccessTokenTTL:  accessTTL,
		RefreshTokenTTL: refreshTTL,
		Observer:        o.observer,
	}
	if o.config != nil {
		o.config(&cfg)
	}
	e.srv, err = oauth.New(cfg, st, e.idp, keys, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetClock(e.clock.Now)

	// Cleanups run last-in first-out: the server is closed (waiting for
	// its handlers) before the checks run.
	t.Cleanup(e.check)
	e.ts.StartTLS()
	t.Cleanup(e.ts.Close)
	return e
}

// serve is the test mux: the authorization server's endpoints, then the
// gate in front of a handler that names the user.
func (e *env) serve(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if p := recover(); p != nil {
			e.fail(fmt.Sprintf("panic serving %s %s: %v", r.Method, r.URL.Path, p))
			panic(p)
		}
		if rec.status >= 500 && !e.state.allow5xx {
			e.fail(fmt.Sprintf("%s %s answered %d", r.Method, r.URL.Path, rec.status))
		}
	}()
	if h := e.srv.Endpoint(r.URL.Path); h != nil {
		h(rec, r)
		return
	}
	if res := e.srv.ResourceFor(r.URL.Path); res != nil {
		tok, refusal := e.srv.Authenticate(r, res)
		if refusal != nil {
			refusal.Write(rec)
			return
		}
		rec.WriteHeader(http.StatusOK)
		fmt.Fprintf(rec, "user=%s id=%d client=%s scope=%q resource=%s", tok.User.Login, tok.User.ID, tok.ClientID, tok.Scope, tok.Resource)
		return
	}
	http.NotFound(rec, r)
}

func (e *env) fail(msg string) {
	e.state.mu.Lock()
	defer e.state.mu.Unlock()
	e.state.bad = append(e.state.bad, msg)
}

// check fails the test for any 5xx or panic, and for any secret the
// tests saw that reached the server's log.
func (e *env) check() {
	e.state.mu.Lock()
	defer e.state.mu.Unlock()
	for _, b := range e.state.bad {
		e.t.Error(b)
	}
	secrets := append([]string{ghClientSecret, "gho_"}, e.state.secrets...)
	for _, entry := range e.logs.All() {
		enc, err := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()).EncodeEntry(entry.Entry, entry.Context)
		if err != nil {
			e.t.Errorf("encoding a log entry: %v", err)
			continue
		}
		line := enc.String()
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				e.t.Errorf("a secret (%.10s...) reached the log: %s", s, line)
			}
		}
	}
	// The security model stores tokens, codes and client secrets only as
	// their SHA-256, and GitHub tokens sealed: none may be in the file.
	db, err := os.ReadFile(e.st.Path())
	if err != nil {
		e.t.Errorf("reading the state file: %v", err)
		return
	}
	for _, s := range secrets {
		if s != "" && bytes.Contains(db, []byte(s)) {
			e.t.Errorf("a secret (%.10s...) is stored in the clear in the state file", s)
		}
	}
}

// remember records secrets that must never be logged.
func (e *env) remember(secrets ...string) {
	e.state.mu.Lock()
	defer e.state.mu.Unlock()
	e.state.secrets = append(e.state.secrets, secrets...)
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	return r.ResponseWriter.Write(b)
}

// ghTransport carries the provider's calls to GitHub, running the test's
// hook after each answer.
type ghTransport struct{ e *env }

func (g *ghTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	g.e.state.mu.Lock()
	after := g.e.state.ghAfter
	g.e.state.mu.Unlock()
	if err == nil && after != nil {
		after(r, resp)
	}
	return resp, err
}

// afterGitHub sets a hook run after each response GitHub gives the
// provider.
func (e *env) afterGitHub(f func(*http.Request, *http.Response)) {
	e.state.mu.Lock()
	defer e.state.mu.Unlock()
	e.state.ghAfter = f
}

// --- HTTP helpers ----------------------------------------------------------

// response is a read response.
type response struct {
	Status int
	Header http.Header
	Body   string
	JSON   map[string]any
	// Cookies are the cookies the response set.
	Cookies []*http.Cookie
}

// str returns a string member of the JSON body.
func (r *response) str(name string) string {
	s, _ := r.JSON[name].(string)
	return s
}

// loc returns the parsed Location header, failing the test if there is none.
func (r *response) loc(t *testing.T) *url.URL {
	t.Helper()
	l := r.Header.Get("Location")
	if l == "" {
		t.Fatalf("expected a redirect, got %d with no Location: %.300s", r.Status, r.Body)
	}
	u, err := url.Parse(l)
	if err != nil {
		t.Fatalf("Location %q: %v", l, err)
	}
	return u
}

func readResponse(t *testing.T, resp *http.Response) *response {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := &response{Status: resp.StatusCode, Header: resp.Header, Body: string(body), Cookies: resp.Cookies()}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") && len(body) > 0 {
		if err := json.Unmarshal(body, &out.JSON); err != nil {
			t.Fatalf("bad JSON body %q: %v", body, err)
		}
	}
	return out
}

// client returns an HTTP client for the test server that does not follow
// redirects and has no cookies.
func (e *env) client(jar http.CookieJar) *http.Client {
	return &http.Client{
		Transport: e.ts.Client().Transport,
		Jar:       jar,
		Timeout:   15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func (e *env) do(req *http.Request) *response {
	e.t.Helper()
	resp, err := e.client(nil).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return readResponse(e.t, resp)
}

func (e *env) get(path string) *response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.issuer+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

// postForm posts a form; basic, if not nil, is {id, secret} sent with
// HTTP Basic, form-encoded as RFC 6749 section 2.3.1 requires.
func (e *env) postForm(path string, form url.Values, basic []string) *response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	return e.do(req)
}

func (e *env) postJSON(path, contentType, body string) *response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.issuer+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	return e.do(req)
}

// call requests a protected path with a bearer token ("" for none).
func (e *env) call(path, token string) *response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.issuer+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.do(req)
}

// expectOK asserts a 200 from the gate for token on path.
func (e *env) expectOK(path, token string) *response {
	e.t.Helper()
	r := e.call(path, token)
	if r.Status != http.StatusOK {
		e.t.Fatalf("GET %s: status %d, want 200: %s (WWW-Authenticate %q)", path, r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
	}
	return r
}

// expectRefused asserts the gate refuses token on path with status.
func (e *env) expectRefused(path, token string, status int) *response {
	e.t.Helper()
	r := e.call(path, token)
	if r.Status != status {
		e.t.Fatalf("GET %s: status %d, want %d: %s", path, r.Status, status, r.Body)
	}
	return r
}

// --- clients ---------------------------------------------------------------

// testClient is a registered client.
type testClient struct {
	ID           string
	Secret       string
	RedirectURIs []string
}

const clientRedirect = "https://client.example.com/cb"

// register registers a client from the JSON metadata and fails the test
// unless it is accepted.
func (e *env) register(metadata map[string]any) *testClient {
	e.t.Helper()
	body, _ := json.Marshal(metadata)
	r := e.postJSON("/register", "application/json", string(body))
	if r.Status != http.StatusCreated {
		e.t.Fatalf("registration refused: %d %s", r.Status, r.Body)
	}
	c := &testClient{ID: r.str("client_id"), Secret: r.str("client_secret")}
	for _, u := range r.JSON["redirect_uris"].([]any) {
		c.RedirectURIs = append(c.RedirectURIs, u.(string))
	}
	e.remember(c.Secret)
	return c
}

// publicClient registers a public client with the given redirect URIs
// (clientRedirect if none).
func (e *env) publicClient(redirectURIs ...string) *testClient {
	e.t.Helper()
	if len(redirectURIs) == 0 {
		redirectURIs = []string{clientRedirect}
	}
	// Each call is another client: a public client that registers the
	// same metadata again gets the same one back.
	e.state.mu.Lock()
	e.state.registered++
	n := e.state.registered
	e.state.mu.Unlock()
	return e.register(map[string]any{
		"redirect_uris":              redirectURIs,
		"token_endpoint_auth_method": "none",
		"client_name":                fmt.Sprintf("Test Client %d", n),
	})
}

// confidentialClient registers a client_secret_basic client.
func (e *env) confidentialClient(redirectURIs ...string) *testClient {
	e.t.Helper()
	if len(redirectURIs) == 0 {
		redirectURIs = []string{clientRedirect}
	}
	return e.register(map[string]any{
		"redirect_uris": redirectURIs,
		"client_name":   "Confidential Client",
	})
}

// --- PKCE ----------------------------------------------------------------

type pkce struct{ Verifier, Challenge string }

func newPKCE() pkce {
	var b [32]byte
	rand.Read(b[:])
	v := base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(v))
	return pkce{Verifier: v, Challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// authzQuery is a sound authorization request for c, which mods may change.
func authzQuery(c *testClient, p pkce, mods ...func(url.Values)) url.Values {
	q := url.Values{
		"client_id":             {c.ID},
		"redirect_uri":          {c.RedirectURIs[0]},
		"response_type":         {"code"},
		"code_challenge":        {p.Challenge},
		"code_challenge_method": {"S256"},
		"state":                 {"client-state-123"},
	}
	for _, m := range mods {
		m(q)
	}
	return q
}

func set(name, value string) func(url.Values) {
	return func(q url.Values) { q.Set(name, value) }
}

func del(name string) func(url.Values) {
	return func(q url.Values) { q.Del(name) }
}

func add(name, value string) func(url.Values) {
	return func(q url.Values) { q.Add(name, value) }
}

// --- the browser ---------------------------------------------------------

// browser plays a user's browser: it keeps cookies and follows no
// redirects on its own.
type browser struct {
	*fakegithub.Browser
	e *env
}

// newBrowser returns a browser signed in to the GitHub stand-in as login
// ("" for nobody).
func (e *env) newBrowser(login string) *browser {
	return &browser{Browser: fakegithub.NewBrowser(e.ghURL, login, e.client(nil)), e: e}
}

func (b *browser) get(rawURL string) *response {
	b.e.t.Helper()
	resp, err := b.Client.Get(rawURL)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return readResponse(b.e.t, resp)
}

func (b *browser) postForm(path string, form url.Values) *response {
	b.e.t.Helper()
	resp, err := b.Client.PostForm(b.e.issuer+path, form)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return readResponse(b.e.t, resp)
}

// authorize sends the browser to the authorization endpoint.
func (b *browser) authorize(q url.Values) *response {
	b.e.t.Helper()
	return b.get(b.e.issuer + "/authorize?" + q.Encode())
}

// cookie returns the value of one of our cookies in this browser's jar.
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.e.issuer)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// setCookie puts a cookie for the issuer in this browser's jar.
func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.e.issuer)
	b.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true}})
}

// consentForm returns the hidden fields of a consent page.
func consentForm(t *testing.T, page *response) url.Values {
	t.Helper()
	form, ok := fakegithub.ConsentForm(page.Body)
	if page.Status != http.StatusOK || !ok {
		t.Fatalf("expected the consent page, got %d: %.400s", page.Status, page.Body)
	}
	if form.Get("csrf") == "" || form.Get("client_id") == "" {
		t.Fatalf("consent page without form fields: %s", page.Body)
	}
	return form
}

// toGitHub runs authorize (and consent, if the page is shown) and returns
// where the browser is sent at GitHub.
func (b *browser) toGitHub(q url.Values) *url.URL {
	t := b.e.t
	t.Helper()
	r := b.authorize(q)
	if r.Status == http.StatusOK {
		form := consentForm(t, r)
		form.Set("action", fakegithub.Approve)
		r = b.postForm("/consent", form)
	}
	if r.Status != http.StatusFound {
		t.Fatalf("expected a redirect to GitHub, got %d: %.400s", r.Status, r.Body)
	}
	u := r.loc(t)
	if !strings.HasPrefix(u.String(), b.e.ghURL+"/login/oauth/authorize?") {
		t.Fatalf("expected a redirect to GitHub, got %s", u)
	}
	return u
}

// atGitHub visits GitHub's authorization URL and returns where GitHub sends
// the browser back (our callback).
func (b *browser) atGitHub(gh *url.URL) *url.URL {
	t := b.e.t
	t.Helper()
	r := b.get(gh.String())
	if r.Status != http.StatusFound {
		t.Fatalf("GitHub stand-in answered %d: %.400s", r.Status, r.Body)
	}
	cb := r.loc(t)
	if !strings.HasPrefix(cb.String(), b.e.issuer+"/callback?") {
		t.Fatalf("GitHub sent the browser to %s, not our callback", cb)
	}
	return cb
}

// login runs the whole flow and returns the redirect to the client, which
// must carry a code.
func (b *browser) login(q url.Values) *url.URL {
	t := b.e.t
	t.Helper()
	u, err := b.Authorize(t.Context(), b.e.issuer+"/authorize?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if u.Query().Get("code") == "" {
		t.Fatalf("callback redirected without a code: %s", u)
	}
	b.e.remember(u.Query().Get("code"))
	return u
}

// codeFor logs login in as c and returns the code and verifier.
func (e *env) codeFor(c *testClient, login string, mods ...func(url.Values)) (code string, p pkce) {
	e.t.Helper()
	p = newPKCE()
	u := e.newBrowser(login).login(authzQuery(c, p, mods...))
	return u.Query().Get("code"), p
}

// --- tokens ----------------------------------------------------------------

// auth returns how c authenticates at the token endpoint: client_id in the
// body for a public client, Basic for a confidential one.
func (c *testClient) auth(form url.Values) []string {
	if c.Secret == "" {
		form.Set("client_id", c.ID)
		return nil
	}
	return []string{c.ID, c.Secret}
}

// exchange redeems a code.
func (e *env) exchange(c *testClient, code, verifier string, mods ...func(url.Values)) *response {
	e.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}}
	basic := c.auth(form)
	for _, m := range mods {
		m(form)
	}
	return e.postForm("/token", form, basic)
}

// refresh uses a refresh token.
func (e *env) refresh(c *testClient, rt string, mods ...func(url.Values)) *response {
	e.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	basic := c.auth(form)
	for _, m := range mods {
		m(form)
	}
	return e.postForm("/token", form, basic)
}

// tokens is a successful token response.
type tokens struct {
	Access, Refresh, Scope string
}

// mustTokens checks a token response is a success and returns its tokens.
func (e *env) mustTokens(r *response) tokens {
	e.t.Helper()
	if r.Status != http.StatusOK {
		e.t.Fatalf("token request refused: %d %s", r.Status, r.Body)
	}
	tk := tokens{Access: r.str("access_token"), Refresh: r.str("refresh_token"), Scope: r.str("scope")}
	if tk.Access == "" || tk.Refresh == "" {
		e.t.Fatalf("token response without tokens: %s", r.Body)
	}
	e.remember(tk.Access, tk.Refresh)
	return tk
}

// loginTokens logs login in as c and redeems the code.
func (e *env) loginTokens(c *testClient, login string, mods ...func(url.Values)) tokens {
	e.t.Helper()
	code, p := e.codeFor(c, login, mods...)
	return e.mustTokens(e.exchange(c, code, p.Verifier))
}

// expectOAuthError asserts status and the JSON error code of a response.
func expectOAuthError(t *testing.T, r *response, status int, code string) {
	t.Helper()
	if r.Status != status || r.str("error") != code {
		t.Fatalf("got %d %q, want %d %q: %s", r.Status, r.str("error"), status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("error Cache-Control %q, want no-store", cc)
	}
}

// expectClientRedirect asserts that r sends the browser to the client's
// redirectURI with the error code, an error_description, iss = issuer and
// the given state ("" for none), and returns the query.
func (e *env) expectClientRedirect(r *response, redirectURI, code, state string) url.Values {
	t := e.t
	t.Helper()
	if r.Status != http.StatusFound {
		t.Fatalf("status %d, want 302 to the client: %.400s", r.Status, r.Body)
	}
	u := r.loc(t)
	base := *u
	base.RawQuery = ""
	if base.String() != redirectURI {
		t.Fatalf("redirected to %s, want %s", base.String(), redirectURI)
	}
	q := u.Query()
	if q.Get("error") != code {
		t.Fatalf("error %q (%s), want %q", q.Get("error"), q.Get("error_description"), code)
	}
	if code != "" && q.Get("error_description") == "" {
		t.Errorf("no error_description with %s", code)
	}
	if q.Get("iss") != e.issuer {
		t.Errorf("iss %q, want %q", q.Get("iss"), e.issuer)
	}
	if got, has := q.Get("state"), q.Has("state"); got != state || (state == "" && has) {
		t.Errorf("state %q (present %v), want %q", got, has, state)
	}
	if code != "" && q.Has("code") {
		t.Errorf("an error redirect carries a code: %s", u)
	}
	return q
}

// expectPage asserts an HTML error page with status and no redirect.
func expectPage(t *testing.T, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %.400s", r.Status, status, r.Body)
	}
	if l := r.Header.Get("Location"); l != "" {
		t.Fatalf("an error page redirects to %s", l)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want text/html", ct)
	}
	if strings.Contains(r.Body, "code=") {
		t.Errorf("error page mentions a code: %s", r.Body)
	}
}
