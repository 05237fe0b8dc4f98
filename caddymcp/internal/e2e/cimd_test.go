package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"golang.org/x/oauth2"
)

// Client ID Metadata Documents end to end: documents served by the test
// over real TLS, fetched by Caddy, with the SDK client in its CIMD mode and
// every way a document can be refused.

// cimdRedirect is the redirect URI the test's documents list.
const cimdRedirect = "http://127.0.0.1:33418/callback"

// docServer serves client metadata documents over TLS on 127.0.0.1 and
// counts the requests for each path, so tests see what Caddy fetched.
type docServer struct {
	srv    *httptest.Server
	caFile string // the server's certificate, PEM, for trusted_ca_file
	mux    *http.ServeMux

	mu   sync.Mutex
	hits map[string]int
}

func startDocServer(t *testing.T) *docServer {
	t.Helper()
	d := &docServer{mux: http.NewServeMux(), hits: map[string]int{}}
	d.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.hits[r.URL.Path]++
		d.mu.Unlock()
		d.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(d.srv.Close)
	d.caFile = filepath.Join(t.TempDir(), "cimd-ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.srv.Certificate().Raw})
	if err := os.WriteFile(d.caFile, block, 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

// url is the client_id of the document at path.
func (d *docServer) url(path string) string { return d.srv.URL + path }

func (d *docServer) count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hits[path]
}

// serve answers path with body as contentType and the given extra headers.
func (d *docServer) serve(path, contentType, body string, header ...string) {
	d.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write([]byte(body))
	})
}

// serveDoc answers path with doc as JSON, cached for an hour.
func (d *docServer) serveDoc(path string, doc map[string]any) {
	raw, _ := json.Marshal(doc)
	d.serve(path, "application/json", string(raw), "Cache-Control", "max-age=3600")
}

// option is the mcp_auth line that trusts this server for documents.
func (d *docServer) option(allowHosts string) string {
	allow := ""
	if allowHosts != "" {
		allow = "allow_hosts " + allowHosts + "\n\t\t\t"
	}
	return "client_id_metadata_documents {\n\t\t\t" + allow + "trusted_ca_file " + d.caFile + "\n\t\t}"
}

// cimdDoc is a good document for the client identified by id.
func cimdDoc(id string, redirects ...string) map[string]any {
	if len(redirects) == 0 {
		redirects = []string{cimdRedirect}
	}
	return map[string]any{
		"client_id":                  id,
		"client_name":                "e2e CIMD client",
		"client_uri":                 "https://client.example",
		"redirect_uris":              redirects,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	}
}

// without returns doc without the named member.
func without(doc map[string]any, name string) map[string]any {
	delete(doc, name)
	return doc
}

// with returns doc with name set to v.
func with(doc map[string]any, name string, v any) map[string]any {
	doc[name] = v
	return doc
}

// rawAuthURL is an authorization request for any client_id, as a client
// would build it.
func (e *env) rawAuthURL(clientID, redirect, state string) string {
	c := &oauthClient{e: e, id: clientID, redirect: redirect}
	return c.config().AuthCodeURL(state,
		oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
		oauth2.SetAuthURLParam("resource", e.site+"/mcp"))
}

// expectRefusalPage checks that an authorization request is refused on a
// plain error page of ours (400, the browser sent nowhere) that says why.
func expectRefusalPage(t *testing.T, b *browser, authURL, why string) {
	t.Helper()
	status, loc, body := b.step(t, http.MethodGet, authURL, nil)
	if status != http.StatusBadRequest || loc != "" {
		t.Errorf("status %d Location %q, want 400 and no redirect", status, loc)
	}
	if !strings.Contains(body, why) {
		t.Errorf("error page does not say %q:\n%s", why, pageText(body))
	}
}

// TestCIMDWithSDKClient: the SDK client identifies itself by the URL of
// its metadata document; the server fetches it once, and the client signs
// in, calls a tool, and signs in again without another fetch.
func TestCIMDWithSDKClient(t *testing.T) {
	d := startDocServer(t)
	d.serveDoc("/clients/e2e.json", cimdDoc(d.url("/clients/e2e.json")))
	e := start(t, options{authExtra: d.option("127.0.0.1")})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var as map[string]any
	if status := e.getJSON(t, e.site+"/.well-known/oauth-authorization-server", &as); status != http.StatusOK || as["client_id_metadata_document_supported"] != true {
		t.Fatalf("AS metadata: %d client_id_metadata_document_supported=%v, want true", status, as["client_id_metadata_document_supported"])
	}

	b := e.browser("alice")
	newHandler := func() *auth.AuthorizationCodeHandler {
		return e.sdkHandlerWith(t, b, auth.AuthorizationCodeHandlerConfig{
			ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: d.url("/clients/e2e.json")},
			RedirectURL:                    cimdRedirect,
		})
	}
	session, err := e.connect(ctx, t, "/mcp", newHandler())
	if err != nil {
		t.Fatalf("connecting with a metadata document client: %v", err)
	}
	user, client := whoami(ctx, t, session)
	session.Close()
	if user != "alice" || client != d.url("/clients/e2e.json") {
		t.Errorf("upstream saw user %q client %q, want alice and the document URL", user, client)
	}
	if b.ConsentPages() != 1 {
		t.Errorf("consent pages: %d, want 1", b.ConsentPages())
	}
	if n := d.count("/clients/e2e.json"); n != 1 {
		t.Errorf("the document was fetched %d times during one sign-in, want 1", n)
	}
	if e.gh.TokenExchanges() != 1 {
		t.Errorf("GitHub code exchanges: %d, want 1", e.gh.TokenExchanges())
	}

	// A second sign-in within the document's max-age uses the cached copy.
	session, err = e.connect(ctx, t, "/mcp", newHandler())
	if err != nil {
		t.Fatalf("second sign-in: %v", err)
	}
	whoami(ctx, t, session)
	session.Close()
	if e.gh.TokenExchanges() != 2 {
		t.Errorf("GitHub code exchanges: %d, want 2 (a second sign-in happened)", e.gh.TokenExchanges())
	}
	if n := d.count("/clients/e2e.json"); n != 1 {
		t.Errorf("the document was fetched %d times in all, want 1 (cached for its max-age)", n)
	}
}

// TestCIMDRefusals: every document the server must not use is refused on
// a plain page, never by a redirect to the client, with a message that
// says what is wrong.
func TestCIMDRefusals(t *testing.T) {
	d := startDocServer(t)
	good := d.url("/good.json")
	d.serveDoc("/good.json", cimdDoc(good))
	d.serveDoc("/mismatch.json", cimdDoc(d.url("/other.json")))
	d.serveDoc("/trailing.json", cimdDoc(d.url("/trailing.json")+"/"))
	big := cimdDoc(d.url("/big.json"))
	big["software_id"] = strings.Repeat("x", 5<<10)
	d.serveDoc("/big.json", big)
	d.mux.HandleFunc("/slow.json", func(w http.ResponseWriter, r *http.Request) {
		// Slower than the fetch timeout; once the fetcher gave up,
		// nothing is sent (a document written then could still race
		// the fetcher's own timers at their deadline).
		select {
		case <-r.Context().Done():
			return
		case <-time.After(15 * time.Second):
		}
		raw, _ := json.Marshal(cimdDoc(d.url("/slow.json")))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	})
	d.mux.HandleFunc("/redirect.json", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/good.json", http.StatusFound)
	})
	d.mux.HandleFunc("/redirect-private.json", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://127.0.0.2:1/private.json", http.StatusTemporaryRedirect)
	})
	raw, _ := json.Marshal(cimdDoc(d.url("/html.json")))
	d.serve("/html.json", "text/html", string(raw))
	d.serve("/garbage.json", "application/json", "{not json")
	d.serve("/array.json", "application/json", `[{"client_id":"`+d.url("/array.json")+`"}]`)
	d.serveDoc("/secret.json", with(cimdDoc(d.url("/secret.json")), "client_secret", "s3cret"))
	d.serveDoc("/confidential.json", with(cimdDoc(d.url("/confidential.json")), "token_endpoint_auth_method", "client_secret_basic"))
	d.serveDoc("/noname.json", without(cimdDoc(d.url("/noname.json")), "client_name"))
	d.serveDoc("/noredirects.json", without(cimdDoc(d.url("/noredirects.json")), "redirect_uris"))
	d.serveDoc("/badredirect.json", cimdDoc(d.url("/badredirect.json"), "http://evil.example/cb"))
	d.mux.HandleFunc("/gone.json", http.NotFound)

	e := start(t, options{authExtra: d.option("127.0.0.1")})
	b := e.browser("alice")
	port := strings.TrimPrefix(d.srv.URL, "https://127.0.0.1")

	for _, tc := range []struct {
		name, clientID, redirect, why string
	}{
		{"mismatched client_id", d.url("/mismatch.json"), cimdRedirect, "client_id differs from its URL"},
		{"client_id differing by a slash", d.url("/trailing.json"), cimdRedirect, "client_id differs from its URL"},
		{"redirect not listed", good, "http://127.0.0.1:33418/other", "redirect_uri is not one the client registered"},
		{"redirect on another host", good, "https://evil.example/callback", "redirect_uri is not one the client registered"},
		{"oversized", d.url("/big.json"), cimdRedirect, "larger than 5120 bytes"},
		{"slow", d.url("/slow.json"), cimdRedirect, "could not be fetched"},
		{"redirect to another document", d.url("/redirect.json"), cimdRedirect, "is a redirect, which is not followed"},
		{"redirect to a private address", d.url("/redirect-private.json"), cimdRedirect, "is a redirect, which is not followed"},
		{"host name resolving to loopback", "https://localhost" + port + "/good.json", cimdRedirect, "is not a public address"},
		{"loopback address not allowed", "https://127.0.0.2" + port + "/good.json", cimdRedirect, "is not a public address"},
		{"IPv6 loopback", "https://[::1]" + port + "/good.json", cimdRedirect, "is not a public address"},
		{"wrong content type", d.url("/html.json"), cimdRedirect, "is not application/json"},
		{"not JSON", d.url("/garbage.json"), cimdRedirect, "is not a JSON object of client metadata"},
		{"JSON array", d.url("/array.json"), cimdRedirect, "is not a JSON object of client metadata"},
		{"client_secret in the document", d.url("/secret.json"), cimdRedirect, "must not contain a client secret"},
		{"confidential auth method", d.url("/confidential.json"), cimdRedirect, "token_endpoint_auth_method must be"},
		{"no client_name", d.url("/noname.json"), cimdRedirect, "has no client_name"},
		{"no redirect_uris", d.url("/noredirects.json"), cimdRedirect, "redirect_uris is required"},
		{"redirect_uri breaking the rules", d.url("/badredirect.json"), "http://evil.example/cb", "must use https"},
		{"not found", d.url("/gone.json"), cimdRedirect, "was not found (404)"},
		{"root path", d.url("/"), cimdRedirect, "must have a path"},
		{"http client_id", "http://127.0.0.1" + port + "/good.json", cimdRedirect, "is not registered with this server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectRefusalPage(t, b, e.rawAuthURL(tc.clientID, tc.redirect, "st"), tc.why)
		})
	}
	if n := d.count("/private.json"); n != 0 {
		t.Errorf("a redirect was followed (%d requests to its target)", n)
	}
	// Only the allow-listed 127.0.0.1 reached the good document: once for
	// the "redirect not listed" cases (then cached), never through
	// localhost, 127.0.0.2, ::1, a redirect or plain http.
	if n := d.count("/good.json"); n != 1 {
		t.Errorf("/good.json was fetched %d times, want 1", n)
	}

	// The same good document works: the refusals above are about the
	// documents, not the setup.
	status, _, body := b.step(t, http.MethodGet, e.rawAuthURL(good, cimdRedirect, "st"), nil)
	if status != http.StatusOK || !isConsentPage(body) || !strings.Contains(body, "e2e CIMD client") {
		t.Errorf("the good document: %d, want the consent page naming the client", status)
	}
}

// TestCIMDClientHasNoSecret: a client known by its document is public; the
// token endpoint refuses it a client_secret in the body or in Basic, and
// the code stays good for the genuine exchange.
func TestCIMDClientHasNoSecret(t *testing.T) {
	d := startDocServer(t)
	id := d.url("/public.json")
	d.serveDoc("/public.json", cimdDoc(id))
	e := start(t, options{authExtra: d.option("127.0.0.1")})
	c := &oauthClient{e: e, http: e.httpClient(nil), id: id, redirect: cimdRedirect}

	verifier := oauth2.GenerateVerifier()
	final, err := e.browser("alice").Authorize(t.Context(), c.config().AuthCodeURL("cimd-state",
		oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", e.site+"/mcp")))
	if err != nil {
		t.Fatal(err)
	}
	q := final.Query()
	code := q.Get("code")
	e.logs.addSecret(code)
	e.logs.addSecret(verifier)
	if code == "" || q.Get("state") != "cimd-state" || q.Get("iss") != e.site {
		t.Fatalf("redirect back to the client: %v", q)
	}
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {cimdRedirect}, "client_id": {id}}

	withSecret := url.Values{"client_secret": {"any-guess"}}
	for k, v := range exchange {
		withSecret[k] = v
	}
	status, out := c.form(t, "/token", withSecret)
	if status != http.StatusUnauthorized || out["error"] != "invalid_client" || !strings.Contains(out["error_description"].(string), "no secret") {
		t.Errorf("client_secret in the body: %d %v, want 401 invalid_client", status, out)
	}
	c.secret = "any-guess" // sent as HTTP Basic by form
	status, out = c.form(t, "/token", exchange)
	if status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("client_secret in Basic: %d %v, want 401 invalid_client", status, out)
	}

	c.secret = ""
	status, out = c.form(t, "/token", exchange)
	if status != http.StatusOK {
		t.Fatalf("the genuine exchange: %d %v", status, out)
	}
	access, refresh := e.tokensIn(out)
	if resp := e.mcpPost(t, "/mcp", "Bearer "+access); resp.StatusCode != http.StatusOK {
		t.Errorf("the document client's token at /mcp: %s", resp.Status)
	}
	if status, out := c.refresh(t, refresh); status != http.StatusOK {
		t.Errorf("the document client's refresh: %d %v", status, out)
	}
}

// TestCIMDOperatorSwitches: without allow_hosts, a document on 127.0.0.1
// is refused as not public; with client_id_metadata_documents off, even
// a good document is refused and the metadata says so; turned back on
// with the host allowed, it works.
func TestCIMDOperatorSwitches(t *testing.T) {
	d := startDocServer(t)
	id := d.url("/doc.json")
	d.serveDoc("/doc.json", cimdDoc(id))
	o := options{authExtra: d.option("")}
	e := start(t, o)
	b := e.browser("alice")

	expectRefusalPage(t, b, e.rawAuthURL(id, cimdRedirect, "st"), "is not a public address")
	if n := d.count("/doc.json"); n != 0 {
		t.Errorf("a loopback host outside allow_hosts was fetched from (%d requests)", n)
	}

	e.reload(t, options{authExtra: "client_id_metadata_documents off"})
	var as map[string]any
	if e.getJSON(t, e.site+"/.well-known/oauth-authorization-server", &as); as["client_id_metadata_document_supported"] != false {
		t.Errorf("client_id_metadata_document_supported = %v with documents off, want false", as["client_id_metadata_document_supported"])
	}
	expectRefusalPage(t, b, e.rawAuthURL(id, cimdRedirect, "st"), "does not accept client metadata documents")

	e.reload(t, options{authExtra: d.option("127.0.0.1")})
	status, _, body := b.step(t, http.MethodGet, e.rawAuthURL(id, cimdRedirect, "st"), nil)
	if status != http.StatusOK || !isConsentPage(body) {
		t.Errorf("with the host allowed: %d, want the consent page", status)
	}
	if n := d.count("/doc.json"); n != 1 {
		t.Errorf("document fetched %d times, want 1", n)
	}
}

// TestCIMDFetchBudget: one address can make the server fetch 30 documents
// it has not cached, then is refused for a while without a fetch; cached
// documents keep working.
func TestCIMDFetchBudget(t *testing.T) {
	d := startDocServer(t)
	d.mux.HandleFunc("/many/", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := json.Marshal(cimdDoc("https://" + r.Host + r.URL.Path))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	})
	e := start(t, options{authExtra: d.option("127.0.0.1")})
	b := e.browser("alice")
	doc := func(i int) string { return d.url("/many/" + strconv.Itoa(i) + ".json") }
	for i := range 30 {
		if status, _, _ := b.step(t, http.MethodGet, e.rawAuthURL(doc(i), cimdRedirect, "st"), nil); status != http.StatusOK {
			t.Fatalf("document %d of 30: %d, want the consent page", i+1, status)
		}
	}
	// A page, not a redirect to the client: 429.
	status, loc, body := b.step(t, http.MethodGet, e.rawAuthURL(doc(30), cimdRedirect, "st"), nil)
	if status != http.StatusTooManyRequests || loc != "" || !strings.Contains(body, "many client metadata documents were fetched from this address") {
		t.Errorf("document 31: %d %q %s, want a page saying the budget is spent", status, loc, pageText(body))
	}
	if n := d.count("/many/30.json"); n != 0 {
		t.Errorf("the document over budget was fetched (%d requests)", n)
	}
	if status, _, _ := b.step(t, http.MethodGet, e.rawAuthURL(doc(0), cimdRedirect, "st"), nil); status != http.StatusOK {
		t.Errorf("a cached document over budget: %d, want the consent page", status)
	}
}

var tags = regexp.MustCompile(`<[^>]*>|\s+`)

// pageText is the text of an HTML page, for error messages.
func pageText(body string) string {
	s := strings.TrimSpace(tags.ReplaceAllString(body, " "))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
