package oauth_test

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// docServer serves client metadata documents over TLS on loopback and
// counts the requests for each path.
type docServer struct {
	*httptest.Server
	handlers map[string]http.HandlerFunc
	hits     map[string]*atomic.Int32
}

func newDocServer(t *testing.T) *docServer {
	d := &docServer{handlers: map[string]http.HandlerFunc{}, hits: map[string]*atomic.Int32{}}
	d.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := d.hits[r.URL.Path]; n != nil {
			n.Add(1)
		}
		if h := d.handlers[r.URL.Path]; h != nil {
			h(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(d.Close)
	return d
}

// doc serves a JSON document at path; fill edits the default one (a valid
// public client whose client_id is the document's URL).
func (d *docServer) doc(path string, fill func(m map[string]any)) *testClient {
	id := d.URL + path
	m := map[string]any{
		"client_id":     id,
		"client_name":   "Doc Client",
		"redirect_uris": []string{clientRedirect},
		"grant_types":   []string{"authorization_code", "refresh_token"},
	}
	if fill != nil {
		fill(m)
	}
	body, _ := json.Marshal(m)
	d.serve(path, "application/json", string(body))
	return &testClient{ID: id, RedirectURIs: []string{clientRedirect}}
}

func (d *docServer) serve(path, contentType, body string) {
	d.hits[path] = new(atomic.Int32)
	d.handlers[path] = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write([]byte(body))
	}
}

// cimdEnv is an env whose server fetches documents from d, which it
// trusts and may reach on loopback.
func cimdEnv(t *testing.T, d *docServer, adjust func(*oauth.Config)) *env {
	roots := x509.NewCertPool()
	roots.AddCert(d.Certificate())
	return newEnvWith(t, envOptions{config: func(c *oauth.Config) {
		c.CIMD = oauth.CIMDConfig{AllowHosts: []string{"127.0.0.1"}, RootCAs: roots}
		if adjust != nil {
			adjust(c)
		}
	}})
}

// TestCIMDFlow: a client known only by its document signs a user in,
// redeems the code as a public client, and uses the token; the document
// is fetched once for both sign-ins, and the metadata says so.
func TestCIMDFlow(t *testing.T) {
	d := newDocServer(t)
	c := d.doc("/clients/app.json", nil)
	e := cimdEnv(t, d, nil)

	if md := e.get("/.well-known/oauth-authorization-server"); md.JSON["client_id_metadata_document_supported"] != true {
		t.Errorf("metadata does not advertise documents: %s", md.Body)
	}
	page := e.newBrowser("alice").authorize(authzQuery(c, newPKCE()))
	consentForm(t, page)
	for _, want := range []string{"Doc Client", "described by a document published at " + c.ID, "does not vouch for the site"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(page.Body, "Unverified client") {
		t.Errorf("a document client is called unverified")
	}
	tok := e.loginTokens(c, "alice")
	e.expectOK("/mcp", tok.Access)
	tok2 := e.mustTokens(e.refresh(c, tok.Refresh))
	e.expectOK("/mcp", tok2.Access)
	e.loginTokens(c, "alice")
	if n := d.hits["/clients/app.json"].Load(); n != 1 {
		t.Errorf("document fetched %d times, want 1 (cached)", n)
	}

	// A document client has no secret to present.
	code, p := e.codeFor(c, "alice")
	r := e.postForm("/token", map[string][]string{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {p.Verifier}, "client_id": {c.ID}, "client_secret": {"guess"}}, nil)
	expectOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
}

// TestCIMDRefused: documents that cannot be used are refused on a page,
// never by a redirect to what they name, with a message that says why.
func TestCIMDRefused(t *testing.T) {
	d := newDocServer(t)
	big := strings.Repeat("x", 6000)
	cases := map[string]struct {
		client *testClient
		want   string
	}{
		"client_id differs": {d.doc("/mismatch.json", func(m map[string]any) { m["client_id"] = d.URL + "/other.json" }), "client_id differs from its URL"},
		"no client_name":    {d.doc("/noname.json", func(m map[string]any) { delete(m, "client_name") }), "has no client_name"},
		"a client secret":   {d.doc("/secret.json", func(m map[string]any) { m["client_secret"] = "s3cret" }), "must not contain a client secret"},
		"secret auth":       {d.doc("/basic.json", func(m map[string]any) { m["token_endpoint_auth_method"] = "client_secret_basic" }), `token_endpoint_auth_method must be "none"`},
		"too large":         {d.doc("/big.json", func(m map[string]any) { m["client_uri"] = "https://x.example/" + big }), "larger than"},
		"bad redirect":      {d.doc("/badredirect.json", func(m map[string]any) { m["redirect_uris"] = []string{"http://evil.example/cb"} }), "must use https"},
		"missing":           {&testClient{ID: d.URL + "/missing.json", RedirectURIs: []string{clientRedirect}}, "not found (404)"},
		"no path":           {&testClient{ID: d.URL, RedirectURIs: []string{clientRedirect}}, "must have a path"},
		"dot segment":       {&testClient{ID: d.URL + "/a/../b.json", RedirectURIs: []string{clientRedirect}}, "dot segments"},
		"fragment":          {&testClient{ID: d.URL + "/a.json#x", RedirectURIs: []string{clientRedirect}}, "fragment"},
	}
	d.serve("/text.json", "text/html", `{"client_id":"x"}`)
	cases["not json content type"] = struct {
		client *testClient
		want   string
	}{&testClient{ID: d.URL + "/text.json", RedirectURIs: []string{clientRedirect}}, "not application/json"}
	d.serve("/garbage.json", "application/json", `{"client_id":`)
	cases["not json"] = struct {
		client *testClient
		want   string
	}{&testClient{ID: d.URL + "/garbage.json", RedirectURIs: []string{clientRedirect}}, "not a JSON object"}
	d.hits["/moved.json"] = new(atomic.Int32)
	d.handlers["/moved.json"] = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, d.URL+"/clients/app.json", http.StatusFound)
	}
	cases["redirect"] = struct {
		client *testClient
		want   string
	}{&testClient{ID: d.URL + "/moved.json", RedirectURIs: []string{clientRedirect}}, "redirect, which is not followed"}
	good := d.doc("/good.json", nil)
	cases["redirect URI not in the document"] = struct {
		client *testClient
		want   string
	}{&testClient{ID: good.ID, RedirectURIs: []string{"https://elsewhere.example/cb"}}, "not one the client registered"}

	e := cimdEnv(t, d, nil)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := e.sub(t)
			r := e.newBrowser("alice").authorize(authzQuery(tc.client, newPKCE()))
			expectPage(t, r, http.StatusBadRequest)
			if !strings.Contains(html.UnescapeString(r.Body), tc.want) {
				t.Errorf("page does not say %q: %.600s", tc.want, r.Body)
			}
			if tc.client.ID == good.ID {
				return // the client is fine; only its redirect URI is not
			}
			// The token endpoint refuses the same client.
			tr := e.postForm("/token", map[string][]string{"grant_type": {"authorization_code"}, "code": {"mcp_ac_x"},
				"code_verifier": {strings.Repeat("v", 43)}, "client_id": {tc.client.ID}}, nil)
			expectOAuthError(t, tr, http.StatusUnauthorized, "invalid_client")
		})
	}
}

// TestCIMDAddressGuard: without the operator's allow-list, a document on
// a loopback address is refused before anything is fetched, by IP or by
// a name that resolves there; and documents can be turned off.
func TestCIMDAddressGuard(t *testing.T) {
	d := newDocServer(t)
	c := d.doc("/app.json", nil)
	roots := x509.NewCertPool()
	roots.AddCert(d.Certificate())
	e := newEnvWith(t, envOptions{config: func(c *oauth.Config) { c.CIMD = oauth.CIMDConfig{RootCAs: roots} }})
	byName := &testClient{ID: strings.Replace(c.ID, "127.0.0.1", "localhost", 1), RedirectURIs: c.RedirectURIs}
	for _, cl := range []*testClient{c, byName} {
		r := e.newBrowser("alice").authorize(authzQuery(cl, newPKCE()))
		expectPage(t, r, http.StatusBadRequest)
		if !strings.Contains(r.Body, "not a public address") {
			t.Errorf("%s: %.400s", cl.ID, r.Body)
		}
	}
	if n := d.hits["/app.json"].Load(); n != 0 {
		t.Errorf("the guarded document was fetched %d times", n)
	}

	off := newEnvWith(t, envOptions{config: func(c *oauth.Config) {
		c.CIMD = oauth.CIMDConfig{Disabled: true, AllowHosts: []string{"127.0.0.1"}, RootCAs: roots}
	}})
	if md := off.get("/.well-known/oauth-authorization-server"); md.JSON["client_id_metadata_document_supported"] != false {
		t.Errorf("metadata advertises documents while they are off: %s", md.Body)
	}
	r := off.newBrowser("alice").authorize(authzQuery(c, newPKCE()))
	expectPage(t, r, http.StatusBadRequest)
	if !strings.Contains(r.Body, "does not accept client metadata documents") {
		t.Errorf("documents off: %.400s", r.Body)
	}
}

// TestCIMDFetchBudget: an address that makes the server fetch document
// after document is stopped; cached documents cost nothing.
func TestCIMDFetchBudget(t *testing.T) {
	d := newDocServer(t)
	e := cimdEnv(t, d, nil)
	b := e.newBrowser("alice")
	refused := 0
	for i := range 40 {
		c := d.doc(fmt.Sprintf("/c%d.json", i), nil)
		r := b.authorize(authzQuery(c, newPKCE()))
		if r.Status == http.StatusTooManyRequests && strings.Contains(r.Body, "Too many client metadata documents") {
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("40 fetches of distinct documents from one address were all made")
	}
	if refused > 15 {
		t.Errorf("%d of 40 refused; the burst should allow about 30", refused)
	}
}

// TestCIMDServerDown: a document whose server fails is a 400 page at the
// authorization endpoint and a retryable 503 at the token endpoint; a
// document fetched before keeps working on its cached copy meanwhile.
func TestCIMDServerDown(t *testing.T) {
	d := newDocServer(t)
	e := cimdEnv(t, d, nil)
	e.state.allow5xx = true // the token endpoint's 503 is under test
	var down atomic.Bool
	broken := func(path string) {
		inner := d.handlers[path]
		d.handlers[path] = func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				http.Error(w, "down", http.StatusInternalServerError)
				return
			}
			inner(w, r)
		}
	}
	cached := d.doc("/cached.json", nil)
	broken("/cached.json")
	fresh := d.doc("/fresh.json", nil)
	broken("/fresh.json")
	tok := e.loginTokens(cached, "alice")

	down.Store(true)
	e.clock.Advance(2 * time.Hour) // past the hour a document is fresh for
	r := e.newBrowser("alice").authorize(authzQuery(fresh, newPKCE()))
	expectPage(t, r, http.StatusBadRequest)
	if !strings.Contains(r.Body, "server failed (500)") {
		t.Errorf("page does not say the document's server failed: %.400s", r.Body)
	}
	tr := e.postForm("/token", map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {"mcp_rt_x"}, "client_id": {fresh.ID}}, nil)
	expectOAuthError(t, tr, http.StatusServiceUnavailable, "temporarily_unavailable")
	if tr.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	// The client known from before refreshes on its stale copy.
	e.mustTokens(e.refresh(cached, tok.Refresh))
	if n := d.hits["/cached.json"].Load(); n < 2 {
		t.Errorf("the stale document was not refetched (%d fetches)", n)
	}
}

// TestCIMDFetchEvents: every fetch is reported to the observer with its
// result, for the cimd_fetches_total metric.
func TestCIMDFetchEvents(t *testing.T) {
	d := newDocServer(t)
	good := d.doc("/good.json", nil)
	bad := d.doc("/bad.json", func(m map[string]any) { delete(m, "client_name") })
	roots := x509.NewCertPool()
	roots.AddCert(d.Certificate())
	var mu sync.Mutex
	var results []string
	e := newEnvWith(t, envOptions{
		config: func(c *oauth.Config) { c.CIMD = oauth.CIMDConfig{AllowHosts: []string{"127.0.0.1"}, RootCAs: roots} },
		observer: func(ev oauth.Event) {
			if ev.Kind == oauth.EventCIMDFetch {
				mu.Lock()
				results = append(results, ev.Reason)
				mu.Unlock()
			}
		},
	})
	b := e.newBrowser("alice")
	b.authorize(authzQuery(good, newPKCE()))
	b.authorize(authzQuery(good, newPKCE())) // cached: no fetch
	b.authorize(authzQuery(bad, newPKCE()))
	byName := &testClient{ID: strings.Replace(good.ID, "127.0.0.1", "localhost", 1), RedirectURIs: good.RedirectURIs}
	b.authorize(authzQuery(byName, newPKCE()))
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(results, ","); got != "ok,invalid,refused" {
		t.Errorf("fetch results %q, want ok,invalid,refused", got)
	}
}

// TestCIMDServerWideFetchBudget: many addresses together cannot make the
// server fetch documents without bound.
func TestCIMDServerWideFetchBudget(t *testing.T) {
	d := newDocServer(t)
	var n atomic.Int64
	e := cimdEnv(t, d, func(c *oauth.Config) {
		c.ClientAddr = func(*http.Request) string { return fmt.Sprintf("192.0.2.%d", n.Add(1)) }
	})
	b := e.newBrowser("alice")
	// One fetch a second refills while the test runs: the first refusal
	// comes after the burst of 300 plus what the elapsed time refilled.
	start := time.Now()
	var r *response
	fetched := 0
	for fetched < 1000 {
		r = b.authorize(authzQuery(d.doc(fmt.Sprintf("/w%d.json", fetched), nil), newPKCE()))
		if r.Status != http.StatusOK {
			break
		}
		fetched++
	}
	refilled := int(time.Since(start)/time.Second) + 1
	if fetched < 300 || fetched > 300+refilled {
		t.Fatalf("%d documents fetched before a refusal, want 300 plus at most %d refilled", fetched, refilled)
	}
	if r.Status != http.StatusTooManyRequests || !strings.Contains(r.Body, "fetching too many client metadata documents") {
		t.Errorf("the refusal: %d %.300s", r.Status, r.Body)
	}
}

// TestCIMDStaleCopyOverBudget: an address over its fetch budget still
// gets the clients the server already knows, from their cached copies.
func TestCIMDStaleCopyOverBudget(t *testing.T) {
	d := newDocServer(t)
	e := cimdEnv(t, d, nil)
	known := d.doc("/known.json", nil)
	b := e.newBrowser("alice")
	consentForm(t, b.authorize(authzQuery(known, newPKCE())))
	e.clock.Advance(2 * time.Hour) // the copy is stale
	for i := range 40 {
		b.authorize(authzQuery(d.doc(fmt.Sprintf("/s%d.json", i), nil), newPKCE()))
	}
	if r := b.authorize(authzQuery(d.doc("/new.json", nil), newPKCE())); r.Status != http.StatusTooManyRequests {
		t.Fatalf("a new document over budget: %d, want 429", r.Status)
	}
	consentForm(t, b.authorize(authzQuery(known, newPKCE())))
}
