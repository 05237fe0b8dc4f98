package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"
)

// TestSDKClientFullFlow is the path every MCP client takes: a 401 with a
// resource_metadata challenge, discovery, dynamic registration, consent,
// GitHub login, PKCE, token exchange, and a tool call that reaches the
// upstream with the user's identity and without the client's token.
func TestSDKClientFullFlow(t *testing.T) {
	e := start(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	b := e.browser("alice")
	session, err := e.connect(ctx, t, "/mcp", e.sdkHandler(t, b))
	if err != nil {
		t.Fatalf("connecting through the gate: %v", err)
	}
	defer session.Close()
	if b.ConsentPages() != 1 {
		t.Errorf("consent pages shown: %d, want 1", b.ConsentPages())
	}

	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		t.Fatalf("calling whoami: %v", err)
	}
	var who whoamiResult
	structured(t, res, &who)
	if who.User != "alice" || who.UserID != "1001" {
		t.Errorf("upstream saw user %q id %q, want alice 1001", who.User, who.UserID)
	}
	if !strings.HasPrefix(who.Client, "mcp_client_") {
		t.Errorf("upstream saw client %q, want a registered client id", who.Client)
	}
	if who.Authorization != "" {
		t.Errorf("the client's Authorization header reached the upstream")
	}
	// Drain what the upstream recorded without closing the channel: the
	// client's session DELETE may still be on its way.
	n := 0
drain:
	for {
		select {
		case h := <-e.upstream.seen:
			n++
			if h.Get("Authorization") != "" {
				t.Errorf("upstream request %d carried an Authorization header", n)
			}
		default:
			break drain
		}
	}
	if n == 0 {
		t.Error("the upstream saw no request")
	}
}

// oauthClient drives the endpoints by hand, to reach the corners the SDK
// does not: refresh, reuse, revocation, bad input.
type oauthClient struct {
	e        *env
	http     *http.Client
	id       string
	secret   string
	redirect string
	scopes   []string // requested at authorization, if any
}

// register registers a public client (or a confidential one if secret).
func (e *env) register(t *testing.T, confidential bool) *oauthClient {
	t.Helper()
	method := "none"
	if confidential {
		method = "client_secret_basic"
	}
	body := `{"client_name":"raw test client","redirect_uris":["http://127.0.0.1:9999/cb"],"token_endpoint_auth_method":"` + method + `"}`
	resp, err := e.httpClient(nil).Post(e.site+"/register", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("register: %s %s", resp.Status, b)
	}
	var reg struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil {
		t.Fatal(err)
	}
	if confidential == (reg.ClientSecret == "") {
		t.Fatalf("confidential=%v but a client_secret was issued: %v", confidential, reg.ClientSecret != "")
	}
	e.logs.addSecret(reg.ClientSecret)
	return &oauthClient{e: e, http: e.httpClient(nil), id: reg.ClientID, secret: reg.ClientSecret, redirect: "http://127.0.0.1:9999/cb"}
}

func (c *oauthClient) config() *oauth2.Config {
	style := oauth2.AuthStyleInParams
	if c.secret != "" {
		style = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{
		ClientID:     c.id,
		ClientSecret: c.secret,
		RedirectURL:  c.redirect,
		Scopes:       c.scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   c.e.site + "/authorize",
			TokenURL:  c.e.site + "/token",
			AuthStyle: style,
		},
	}
}

// login runs the authorization code flow for resource as the browser's
// user and returns the tokens.
func (c *oauthClient) login(t *testing.T, b *browser, resource string) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", resource))
	}
	final, err := b.Authorize(context.Background(), c.config().AuthCodeURL("st-"+resource, opts...))
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	q := final.Query()
	if q.Get("error") != "" {
		t.Fatalf("authorize refused: %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != "st-"+resource || q.Get("iss") != c.e.site {
		t.Fatalf("redirect state %q iss %q, want st-%s and %s", q.Get("state"), q.Get("iss"), resource, c.e.site)
	}
	c.e.logs.addSecret(q.Get("code"))
	c.e.logs.addSecret(verifier)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, c.http)
	xopts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if resource != "" {
		xopts = append(xopts, oauth2.SetAuthURLParam("resource", resource))
	}
	tok, err := c.config().Exchange(ctx, q.Get("code"), xopts...)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	c.e.logs.addSecret(tok.AccessToken)
	c.e.logs.addSecret(tok.RefreshToken)
	return tok
}

// form posts to a token-endpoint-like URL with the client's credentials.
func (c *oauthClient) form(t *testing.T, path string, v url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.e.site+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.secret != "" {
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	} else if !v.Has("client_id") {
		v.Set("client_id", c.id)
		req.Body = io.NopCloser(strings.NewReader(v.Encode()))
		req.ContentLength = int64(len(v.Encode()))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s answered non-JSON %s: %s", path, resp.Status, b)
		}
	}
	if resp.StatusCode >= 500 {
		t.Errorf("%s answered %s", path, resp.Status)
	}
	return resp.StatusCode, out
}

func (c *oauthClient) refresh(t *testing.T, refreshToken string) (int, map[string]any) {
	t.Helper()
	return c.form(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}})
}

func TestRefreshRotationReuseAndRevocation(t *testing.T) {
	e := start(t, options{})
	for _, confidential := range []bool{false, true} {
		name := "public"
		if confidential {
			name = "confidential"
		}
		t.Run(name, func(t *testing.T) {
			c := e.register(t, confidential)
			b := e.browser("alice")
			tok := c.login(t, b, e.site+"/mcp")
			if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
				t.Fatalf("fresh token refused: %s", resp.Status)
			}

			status, out := c.refresh(t, tok.RefreshToken)
			if status != http.StatusOK {
				t.Fatalf("refresh: %d %v", status, out)
			}
			at2, rt2 := out["access_token"].(string), out["refresh_token"].(string)
			e.logs.addSecret(at2)
			e.logs.addSecret(rt2)
			if rt2 == "" || rt2 == tok.RefreshToken || at2 == tok.AccessToken {
				t.Fatal("refresh did not rotate both tokens")
			}
			if resp := e.mcpPost(t, "/mcp", "Bearer "+at2); resp.StatusCode != http.StatusOK {
				t.Fatalf("refreshed token refused: %s", resp.Status)
			}

			// Once its successor was used, reusing the rotated refresh
			// token revokes the whole grant.
			status, out = c.refresh(t, rt2)
			if status != http.StatusOK {
				t.Fatalf("refresh of the successor: %d %v", status, out)
			}
			at3, rt3 := out["access_token"].(string), out["refresh_token"].(string)
			e.logs.addSecret(at3)
			e.logs.addSecret(rt3)
			status, out = c.refresh(t, tok.RefreshToken)
			if status != http.StatusBadRequest || out["error"] != "invalid_grant" {
				t.Fatalf("reuse of a rotated refresh token: %d %v, want 400 invalid_grant", status, out)
			}
			if resp := e.mcpPost(t, "/mcp", "Bearer "+at3); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("access token of a revoked grant: %s, want 401", resp.Status)
			}
			if status, _ := c.refresh(t, rt3); status != http.StatusBadRequest {
				t.Errorf("newest refresh token of a revoked grant: %d, want 400", status)
			}

			// A new login, then RFC 7009 revocation of its refresh token.
			tok = c.login(t, b, e.site+"/mcp")
			// A confidential client's approval is remembered; a public
			// one with a loopback redirect is asked for every time.
			if want := map[bool]int{true: 1, false: 2}[confidential]; b.ConsentPages() != want {
				t.Errorf("consent shown %d times, want %d", b.ConsentPages(), want)
			}
			if status, out := c.form(t, "/revoke", url.Values{"token": {tok.RefreshToken}}); status != http.StatusOK {
				t.Fatalf("revoke: %d %v", status, out)
			}
			if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("access token after its refresh token was revoked: %s, want 401", resp.Status)
			}
			if status, _ := c.refresh(t, tok.RefreshToken); status != http.StatusBadRequest {
				t.Errorf("revoked refresh token: %d, want 400", status)
			}
		})
	}
}

func TestGateRefusals(t *testing.T) {
	e := start(t, options{})
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	sseTok := c.login(t, e.browser("alice"), e.site+"/sse")

	prm := e.site + "/.well-known/oauth-protected-resource/mcp"
	for name, tc := range map[string]struct {
		path, authz string
		status      int
		errCode     string
	}{
		"no token":             {"/mcp", "", 401, ""},
		"basic scheme":         {"/mcp", "Basic YTpi", 401, ""},
		"unknown token":        {"/mcp", "Bearer mcp_at_not-a-real-token", 401, "invalid_token"},
		"oversized token":      {"/mcp", "Bearer " + strings.Repeat("x", 5000), 401, "invalid_token"},
		"other resource token": {"/mcp", "Bearer " + sseTok.AccessToken, 401, "invalid_token"},
		"upper-case path":      {"/MCP", "", 401, ""},
		"doubled slash":        {"//mcp", "", 401, ""},
		"encoded letter":       {"/%6Dcp", "", 401, ""},
		"prefix without slash": {"/mcpextra", "", 401, ""},
		"token in the query":   {"/mcp?access_token=" + tok.AccessToken, "", 400, "invalid_request"},
	} {
		t.Run(name, func(t *testing.T) {
			resp := e.mcpPost(t, tc.path, tc.authz)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %s, want %d", resp.Status, tc.status)
			}
			chal := resp.Header.Get("WWW-Authenticate")
			if resp.Header.Get("Access-Control-Expose-Headers") != "WWW-Authenticate" {
				t.Errorf("a browser client could not read the challenge")
			}
			want := prm
			if tc.path == "/mcpextra" {
				// Below the prefix, the challenge names the document
				// whose resource is exactly the URL requested.
				want = e.site + "/.well-known/oauth-protected-resource/mcpextra"
			}
			if !strings.HasPrefix(chal, `Bearer resource_metadata="`+want+`"`) {
				t.Errorf("challenge %q does not name %s", chal, want)
			}
			if tc.errCode != "" && !strings.Contains(chal, `error="`+tc.errCode+`"`) {
				t.Errorf("challenge %q lacks error=%q", chal, tc.errCode)
			}
			if tc.errCode == "" && strings.Contains(chal, "error=") {
				t.Errorf("challenge %q has an error code for a request without credentials", chal)
			}
		})
	}
	// Paths that the gate and an upstream could read differently are
	// refused outright, even with a good token.
	for _, p := range []string{"/x/../mcp", "/mcp/admin%2F..", "/x/..%2fmcp", "/mcp/x/%2e%2e/y", "/mcp/.", "/mcp%5C.."} {
		if resp := e.mcpPost(t, p, "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("ambiguous path %s: %s, want 400", p, resp.Status)
		}
	}
	// A CORS preflight carries no credentials and is the protected
	// server's to answer.
	req, _ := http.NewRequest(http.MethodOptions, e.site+"/mcp", nil)
	req.Header.Set("Origin", "https://inspector.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	if resp, err := e.httpClient(nil).Do(req); err != nil || resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("preflight: %v %v, want it passed to the upstream", err, resp.Status)
	}
	// The /sse token works where it belongs.
	resp := e.mcpPost(t, "/sse", "Bearer "+sseTok.AccessToken)
	if resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("a /sse token was refused at /sse")
	}
	// A token requested without a resource is good on every protected path.
	any := c.login(t, e.browser("alice"), "")
	if resp := e.mcpPost(t, "/mcp", "Bearer "+any.AccessToken); resp.StatusCode != http.StatusOK {
		t.Errorf("site-wide token at /mcp: %s", resp.Status)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestSDKClientRefreshes: with access tokens that live one second, the
// SDK's token source (x/oauth2, which counts a token as expired ten
// seconds early) refreshes before every request, so each tool call
// rotates the refresh token through our token endpoint. Any disagreement
// about rotation would trip reuse detection and revoke the grant.
func TestSDKClientRefreshes(t *testing.T) {
	e := start(t, options{authExtra: "access_token_ttl 1s"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session, err := e.connect(ctx, t, "/mcp", e.sdkHandler(t, e.browser("alice")))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()
	for i := range 3 {
		if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	logs, err := os.ReadFile(e.logs.path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logs), `"msg":"tokens refreshed"`); n < 3 {
		t.Errorf("the SDK refreshed %d times, want at least 3 (one per call)", n)
	}
	if strings.Contains(string(logs), "reused") || strings.Contains(string(logs), "used twice") {
		t.Error("a refresh token was reused")
	}
}
