package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// Known clients' behaviours, replayed over raw HTTP: the redirect URIs they
// register, the resource they ask for (or do not), the state they send.
// Their redirect hosts are not reachable, so the browser stops at the
// redirect back to the client and the test reads code, state and iss from
// it, as the client would.

// registerAs registers a client with the metadata a known client sends;
// its first redirect URI is the one it uses.
func (e *env) registerAs(t *testing.T, metadata string) *oauthClient {
	t.Helper()
	status, _, out := e.postRegister(t, metadata)
	if status != http.StatusCreated {
		t.Fatalf("registration %s: %d %v", metadata, status, out)
	}
	uris, _ := out["redirect_uris"].([]any)
	if len(uris) == 0 {
		t.Fatalf("registration answer without redirect_uris: %v", out)
	}
	secret, _ := out["client_secret"].(string)
	return &oauthClient{e: e, http: e.httpClient(nil), id: out["client_id"].(string), secret: secret, redirect: uris[0].(string)}
}

// authorizeAs sends b through an authorization request of c with the given
// state and extra parameters and returns what arrives at the client's
// redirect URI, checking it arrived at exactly that URI, with our issuer.
func (c *oauthClient) authorizeAs(t *testing.T, b *browser, state string, params url.Values) (q url.Values, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	for k := range params {
		opts = append(opts, oauth2.SetAuthURLParam(k, params.Get(k)))
	}
	final, err := b.Authorize(context.Background(), c.config().AuthCodeURL(state, opts...))
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	q = final.Query()
	c.e.logs.addSecret(q.Get("code"))
	c.e.logs.addSecret(verifier)
	at := *final
	at.RawQuery = ""
	if at.String() != c.redirect {
		t.Errorf("the browser was sent to %s, want the redirect URI %s", at.String(), c.redirect)
	}
	if q.Get("iss") != c.e.site {
		t.Errorf("iss = %q, want %s (RFC 9207)", q.Get("iss"), c.e.site)
	}
	if q.Get("state") != state {
		t.Errorf("state = %q, want %q echoed exactly", q.Get("state"), state)
	}
	return q, verifier
}

// exchange trades a code for tokens, with the token request's parameters.
// A confidential client sends its secret in the body (client_secret_post),
// as the web clients replayed here do.
func (c *oauthClient) exchange(t *testing.T, q url.Values, verifier string, params url.Values) *oauth2.Token {
	t.Helper()
	if q.Get("error") != "" || q.Get("code") == "" {
		t.Fatalf("no code: %v", q)
	}
	c.e.logs.addSecret(q.Get("code"))
	c.e.logs.addSecret(verifier)
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	for k := range params {
		opts = append(opts, oauth2.SetAuthURLParam(k, params.Get(k)))
	}
	cfg := c.config()
	cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, c.http)
	tok, err := cfg.Exchange(ctx, q.Get("code"), opts...)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	c.e.logs.addSecret(tok.AccessToken)
	c.e.logs.addSecret(tok.RefreshToken)
	return tok
}

// expectStatus checks the gate's answer to a token at path.
func (e *env) expectStatus(t *testing.T, path string, tok *oauth2.Token, want int) {
	t.Helper()
	if resp := e.mcpPost(t, path, "Bearer "+tok.AccessToken); resp.StatusCode != want {
		t.Errorf("token at %s: %s, want %d", path, resp.Status, want)
	}
}

// TestClaudeAIClient: Claude.ai registers its claude.ai callback, falls
// back to the root protected resource document and asks for the resource
// it names (the whole site), or sends no resource at all; either token
// works on every protected path.
func TestClaudeAIClient(t *testing.T) {
	e := start(t, options{})
	resp := e.mcpPost(t, "/mcp", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/mcp without a token: %s", resp.Status)
	}
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if status := e.getJSON(t, e.site+"/.well-known/oauth-protected-resource", &prm); status != http.StatusOK ||
		prm.Resource != e.site || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != e.site {
		t.Fatalf("root PRM: %d %+v, want resource and server %s", status, prm, e.site)
	}
	var as struct {
		RegistrationEndpoint string `json:"registration_endpoint"`
	}
	e.getJSON(t, prm.AuthorizationServers[0]+"/.well-known/oauth-authorization-server", &as)
	if as.RegistrationEndpoint != e.site+"/register" {
		t.Fatalf("registration_endpoint %q", as.RegistrationEndpoint)
	}
	c := e.registerAs(t, `{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_post"}`)
	b := e.browser("alice")

	q, verifier := c.authorizeAs(t, b, "claude-state-1", url.Values{"resource": {prm.Resource}})
	tok := c.exchange(t, q, verifier, url.Values{"resource": {prm.Resource}})
	for _, p := range []string{"/mcp", "/sse"} {
		e.expectStatus(t, p, tok, http.StatusOK)
	}

	q, verifier = c.authorizeAs(t, b, "claude-state-2", nil)
	tok = c.exchange(t, q, verifier, nil)
	for _, p := range []string{"/mcp", "/sse"} {
		e.expectStatus(t, p, tok, http.StatusOK)
	}
	if status, out := c.refresh(t, tok.RefreshToken); status != http.StatusOK {
		t.Errorf("refresh of a token without resource: %d %v", status, out)
	}
}

// TestChatGPTClient: ChatGPT registers its connector callback and asks
// for the MCP endpoint itself as the resource; the token is bound to it.
func TestChatGPTClient(t *testing.T) {
	e := start(t, options{})
	var prm struct {
		Resource string `json:"resource"`
	}
	if status := e.getJSON(t, e.site+"/.well-known/oauth-protected-resource/mcp", &prm); status != http.StatusOK || prm.Resource != e.site+"/mcp" {
		t.Fatalf("PRM for /mcp: %d %+v", status, prm)
	}
	c := e.registerAs(t, `{"client_name":"ChatGPT","redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect"],
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`)
	q, verifier := c.authorizeAs(t, e.browser("alice"), "chatgpt-state", url.Values{"resource": {prm.Resource}})
	tok := c.exchange(t, q, verifier, url.Values{"resource": {prm.Resource}})
	e.expectStatus(t, "/mcp", tok, http.StatusOK)
	e.expectStatus(t, "/sse", tok, http.StatusUnauthorized)
}

// TestLoopbackClients: Claude Code and VS Code register a loopback
// redirect on one port and come back on another each run; any port is
// accepted (RFC 8252), but not another path or loopback host.
func TestLoopbackClients(t *testing.T) {
	e := start(t, options{})
	for _, tc := range []struct {
		name, registered, used, otherPath, otherHost string
	}{
		{"Claude Code", "http://localhost:7301/callback", "http://localhost:7399/callback", "http://localhost:7399/other", "http://127.0.0.1:7399/callback"},
		{"VS Code", "http://127.0.0.1:7302/", "http://127.0.0.1:7398/", "http://127.0.0.1:7398/x", "http://localhost:7398/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.registerAs(t, `{"client_name":"`+tc.name+`","redirect_uris":["`+tc.registered+`"],"token_endpoint_auth_method":"none"}`)
			c.redirect = tc.used
			b := e.browser("alice")
			q, verifier := c.authorizeAs(t, b, "loopback-state", url.Values{"resource": {e.site + "/mcp"}})
			tok := c.exchange(t, q, verifier, url.Values{"resource": {e.site + "/mcp"}})
			e.expectStatus(t, "/mcp", tok, http.StatusOK)
			for _, bad := range []string{tc.otherPath, tc.otherHost} {
				expectRefusalPage(t, b, e.rawAuthURL(c.id, bad, "loopback-state"), "redirect_uri is not one the client registered")
			}
		})
	}
}

// TestInspectorShortState: the MCP Inspector's state can be a single
// character; it comes back exactly, on success and on error.
func TestInspectorShortState(t *testing.T) {
	e := start(t, options{})
	c := e.registerAs(t, `{"client_name":"MCP Inspector","redirect_uris":["http://localhost:6274/oauth/callback"],
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`)
	b := e.browser("alice")
	q, verifier := c.authorizeAs(t, b, "a", url.Values{"resource": {e.site + "/mcp"}})
	tok := c.exchange(t, q, verifier, url.Values{"resource": {e.site + "/mcp"}})
	e.expectStatus(t, "/mcp", tok, http.StatusOK)

	e.gh.SetDeny(true)
	q, _ = c.authorizeAs(t, b, "b", url.Values{"resource": {e.site + "/mcp"}})
	if q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Errorf("GitHub login cancelled: %v, want error=access_denied", q)
	}
}

// TestIssOnErrorRedirects: RFC 9207's iss is on error redirects too:
// GitHub's cancel coming back through the callback, and a bad request from
// a client this browser already approved (errors for clients it has not
// approved are shown on a page instead; see TestCIMDRefusals).
func TestIssOnErrorRedirects(t *testing.T) {
	e := start(t, options{})
	c := e.registerAs(t, `{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"none"}`)
	b := e.browser("alice")

	e.gh.SetDeny(true)
	q, _ := c.authorizeAs(t, b, "denied-state", url.Values{"resource": {e.site + "/mcp"}})
	if q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Errorf("GitHub cancel: %v, want error=access_denied", q)
	}
	e.gh.SetDeny(false)

	// The browser approved this client above, so a broken request of it
	// is answered at its redirect URI.
	bad := url.Values{"response_type": {"code"}, "client_id": {c.id}, "redirect_uri": {c.redirect}, "state": {"no-pkce"},
		"resource": {e.site + "/mcp"}}
	status, loc, _ := b.step(t, http.MethodGet, e.site+"/authorize?"+bad.Encode(), nil)
	u, err := url.Parse(loc)
	if status != http.StatusFound || err != nil || !strings.HasPrefix(loc, c.redirect+"?") {
		t.Fatalf("request without PKCE: %d %q, want a redirect to the client", status, loc)
	}
	q = u.Query()
	if q.Get("error") != "invalid_request" || q.Get("iss") != e.site || q.Get("state") != "no-pkce" || q.Get("code") != "" {
		t.Errorf("error redirect query %v, want invalid_request with iss %s and the state", q, e.site)
	}
	// Another browser that never approved the client sees a page.
	status, loc, _ = e.browser("bob").step(t, http.MethodGet, e.site+"/authorize?"+bad.Encode(), nil)
	if status != http.StatusBadRequest || loc != "" {
		t.Errorf("the same request in a browser that never approved the client: %d %q, want a 400 page", status, loc)
	}
}
