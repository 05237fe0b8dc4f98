package oauth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestRegisterPublicClient(t *testing.T) {
	e := newEnv(t)
	r := e.postJSON("/register", "application/json", `{
		"redirect_uris": ["https://client.example.com/cb", "http://127.0.0.1:33418/callback"],
		"token_endpoint_auth_method": "none",
		"client_name": "  Inspector\u0007\u200e  ",
		"client_uri": "https://client.example.com",
		"software_id": "inspector",
		"unknown_member": {"ignored": true}
	}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	id := r.str("client_id")
	if !strings.HasPrefix(id, "mcp_client_") || len(id) < 30 {
		t.Errorf("client_id %q", id)
	}
	if _, ok := r.JSON["client_secret"]; ok {
		t.Errorf("a public client got a secret: %s", r.Body)
	}
	if _, ok := r.JSON["client_secret_expires_at"]; ok {
		t.Errorf("a public client got client_secret_expires_at: %s", r.Body)
	}
	if r.str("token_endpoint_auth_method") != "none" {
		t.Errorf("token_endpoint_auth_method %q", r.str("token_endpoint_auth_method"))
	}
	if got := r.str("client_name"); got != "Inspector" {
		t.Errorf("client_name %q, want control and format characters dropped", got)
	}
	if _, ok := r.JSON["client_id_issued_at"].(float64); !ok {
		t.Errorf("no client_id_issued_at")
	}
	c, err := e.st.GetClient(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if c.SecretHash != nil {
		t.Errorf("a public client has a secret hash")
	}
	if !slices.Equal(c.RedirectURIs, []string{"https://client.example.com/cb", "http://127.0.0.1:33418/callback"}) {
		t.Errorf("stored redirect URIs %v", c.RedirectURIs)
	}
}

func TestRegisterConfidentialClient(t *testing.T) {
	e := newEnv(t)
	for _, method := range []string{"", "client_secret_basic", "client_secret_post"} {
		t.Run("method="+method, func(t *testing.T) {
			e := e.sub(t)
			md := map[string]any{"redirect_uris": []string{clientRedirect}}
			if method != "" {
				md["token_endpoint_auth_method"] = method
			}
			body, _ := json.Marshal(md)
			r := e.postJSON("/register", "application/json; charset=utf-8", string(body))
			if r.Status != http.StatusCreated {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			want := method
			if want == "" {
				want = "client_secret_basic" // RFC 7591 section 2
			}
			if got := r.str("token_endpoint_auth_method"); got != want {
				t.Errorf("token_endpoint_auth_method %q, want %q", got, want)
			}
			secret := r.str("client_secret")
			e.remember(secret)
			if !strings.HasPrefix(secret, "mcp_cs_") || len(secret) < 40 {
				t.Fatalf("client_secret %q", secret)
			}
			if exp, ok := r.JSON["client_secret_expires_at"].(float64); !ok || exp != 0 {
				t.Errorf("client_secret_expires_at = %v, want 0", r.JSON["client_secret_expires_at"])
			}
			c, err := e.st.GetClient(context.Background(), r.str("client_id"))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(secret))
			if !bytes.Equal(c.SecretHash, sum[:]) {
				t.Errorf("SecretHash is not the SHA-256 of the secret")
			}
			stored, _ := json.Marshal(c)
			if bytes.Contains(stored, []byte(secret)) || bytes.Contains(stored, []byte(secret[len("mcp_cs_"):])) {
				t.Errorf("the plaintext secret is stored: %s", stored)
			}
		})
	}
}

func TestRegisterDefaults(t *testing.T) {
	e := newEnv(t)
	r := e.postJSON("/register", "application/json", `{"redirect_uris":["https://client.example.com/cb","https://client.example.com/cb"]}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if got := strList(t, r.JSON["grant_types"]); !slices.Equal(got, []string{"authorization_code", "refresh_token"}) {
		t.Errorf("grant_types %v", got)
	}
	if got := strList(t, r.JSON["response_types"]); !slices.Equal(got, []string{"code"}) {
		t.Errorf("response_types %v", got)
	}
	if got := r.str("application_type"); got != "web" {
		t.Errorf("application_type %q", got)
	}
	if got := strList(t, r.JSON["redirect_uris"]); !slices.Equal(got, []string{"https://client.example.com/cb"}) {
		t.Errorf("redirect_uris %v, want the duplicate dropped", got)
	}
	if r.str("client_secret") == "" {
		t.Errorf("the default client (client_secret_basic) got no secret")
	}
	e.remember(r.str("client_secret"))
}

func TestRegisterAccepts(t *testing.T) {
	e := newEnv(t)
	twenty := make([]string, 20)
	for i := range twenty {
		twenty[i] = fmt.Sprintf("https://client.example.com/cb%d", i)
	}
	tests := []struct {
		name string
		md   map[string]any
	}{
		{"twenty redirect URIs", map[string]any{"redirect_uris": twenty}},
		{"loopback IPv4", map[string]any{"redirect_uris": []string{"http://127.0.0.1:1234/cb"}}},
		{"loopback IPv6", map[string]any{"redirect_uris": []string{"http://[::1]/cb"}}},
		{"localhost", map[string]any{"redirect_uris": []string{"http://localhost:6274/oauth/callback"}}},
		{"private-use scheme, native", map[string]any{"redirect_uris": []string{"com.example.app:/cb"}, "application_type": "native"}},
		{"private-use scheme with authority, native", map[string]any{"redirect_uris": []string{"com.example.app://oauth/cb"}, "application_type": "native"}},
		// What Cursor sends: no application_type, a scheme without a dot.
		{"cursor, type inferred", map[string]any{"redirect_uris": []string{"cursor://anysphere.cursor-mcp/oauth/callback"}, "token_endpoint_auth_method": "none"}},
		{"private-use scheme without a dot, native", map[string]any{"redirect_uris": []string{"myapp:/cb"}, "application_type": "native"}},
		{"https with query", map[string]any{"redirect_uris": []string{"https://client.example.com/cb?tenant=1"}}},
		{"only authorization_code", map[string]any{"redirect_uris": []string{clientRedirect}, "grant_types": []string{"authorization_code"}}},
		{"client_uri and logo_uri https", map[string]any{"redirect_uris": []string{clientRedirect},
			"client_uri": "https://client.example.com", "logo_uri": "https://client.example.com/logo.png"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			c := e.register(tc.md)
			if c.ID == "" {
				t.Fatal("no client_id")
			}
		})
	}
}

func TestRegisterRefusals(t *testing.T) {
	e := newEnv(t)
	tooMany := make([]string, 21)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("https://client.example.com/cb%d", i)
	}
	uris := func(u ...string) map[string]any { return map[string]any{"redirect_uris": u} }
	native := func(u ...string) map[string]any {
		return map[string]any{"redirect_uris": u, "application_type": "native"}
	}
	with := func(k string, v any) map[string]any {
		return map[string]any{"redirect_uris": []string{clientRedirect}, k: v}
	}
	tests := []struct {
		name string
		md   map[string]any
		code string
	}{
		{"no redirect_uris", map[string]any{"client_name": "x"}, "invalid_redirect_uri"},
		{"empty redirect_uris", uris(), "invalid_redirect_uri"},
		{"21 redirect URIs", map[string]any{"redirect_uris": tooMany}, "invalid_redirect_uri"},
		{"http, not loopback", uris("http://client.example.com/cb"), "invalid_redirect_uri"},
		{"http, localhost look-alike", uris("http://localhost.evil.example/cb"), "invalid_redirect_uri"},
		{"http, 127.0.0.1 look-alike", uris("http://127.0.0.1.evil.example/cb"), "invalid_redirect_uri"},
		{"one good one bad", uris(clientRedirect, "http://client.example.com/cb"), "invalid_redirect_uri"},
		{"javascript", uris("javascript:alert(1)"), "invalid_redirect_uri"},
		{"javascript, native", native("javascript:alert(1)"), "invalid_redirect_uri"},
		{"javascript, upper case", native("JAVASCRIPT:alert(1)"), "invalid_redirect_uri"},
		{"data", native("data:text/html,<script>alert(1)</script>"), "invalid_redirect_uri"},
		{"file", native("file:///etc/passwd"), "invalid_redirect_uri"},
		{"oob", native("urn:ietf:wg:oauth:2.0:oob"), "invalid_redirect_uri"},
		{"fragment", uris("https://client.example.com/cb#frag"), "invalid_redirect_uri"},
		{"empty fragment", uris("https://client.example.com/cb#"), "invalid_redirect_uri"},
		{"userinfo", uris("https://user:pass@client.example.com/cb"), "invalid_redirect_uri"},
		{"userinfo loopback", uris("http://user@127.0.0.1/cb"), "invalid_redirect_uri"},
		{"relative", uris("/cb"), "invalid_redirect_uri"},
		{"empty string", uris(""), "invalid_redirect_uri"},
		{"https without host", uris("https:///cb"), "invalid_redirect_uri"},
		{"private-use scheme, web", map[string]any{"redirect_uris": []string{"com.example.app:/cb"}, "application_type": "web"}, "invalid_redirect_uri"},
		{"private-use scheme and https, web", map[string]any{"redirect_uris": []string{"https://a.example/cb", "cursor://x/cb"}, "application_type": "web"}, "invalid_redirect_uri"},
		{"reserved parameter in redirect query", uris("https://client.example.com/cb?code=1"), "invalid_redirect_uri"},
		{"homograph host", uris("https://\u0441laude.ai/api/mcp/auth_callback"), "invalid_redirect_uri"},
		{"state in redirect query", uris("https://client.example.com/cb?x=1&state=2"), "invalid_redirect_uri"},
		{"too long", uris("https://client.example.com/" + strings.Repeat("a", 3000)), "invalid_redirect_uri"},
		{"application_type", map[string]any{"redirect_uris": []string{clientRedirect}, "application_type": "desktop"}, "invalid_client_metadata"},
		{"auth method private_key_jwt", with("token_endpoint_auth_method", "private_key_jwt"), "invalid_client_metadata"},
		{"auth method bogus", with("token_endpoint_auth_method", "bogus"), "invalid_client_metadata"},
		{"grant implicit", with("grant_types", []string{"authorization_code", "implicit"}), "invalid_client_metadata"},
		{"grant password", with("grant_types", []string{"password"}), "invalid_client_metadata"},
		{"grant client_credentials", with("grant_types", []string{"client_credentials"}), "invalid_client_metadata"},
		{"grant refresh_token alone", with("grant_types", []string{"refresh_token"}), "invalid_client_metadata"},
		{"response type token", with("response_types", []string{"token"}), "invalid_client_metadata"},
		{"response type code token", with("response_types", []string{"code", "token"}), "invalid_client_metadata"},
		{"client_uri http", with("client_uri", "http://client.example.com"), "invalid_client_metadata"},
		{"client_uri javascript", with("client_uri", "javascript:alert(1)"), "invalid_client_metadata"},
		{"client_uri relative", with("client_uri", "/about"), "invalid_client_metadata"},
		{"logo_uri http", with("logo_uri", "http://client.example.com/logo.png"), "invalid_client_metadata"},
		{"scope too long", with("scope", strings.Repeat("s ", 600)), "invalid_client_metadata"},
		{"redirect_uris not an array", map[string]any{"redirect_uris": clientRedirect}, "invalid_client_metadata"},
		{"client_name not a string", with("client_name", 42), "invalid_client_metadata"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			body, _ := json.Marshal(tc.md)
			r := e.postJSON("/register", "application/json", string(body))
			expectOAuthError(t, r, http.StatusBadRequest, tc.code)
			if r.str("error_description") == "" {
				t.Errorf("no error_description")
			}
			if r.str("client_id") != "" {
				t.Errorf("a refused registration returned a client_id")
			}
		})
	}
}

func TestRegisterBodyRefusals(t *testing.T) {
	e := newEnv(t)
	good := `{"redirect_uris":["https://client.example.com/cb"]}`
	tests := []struct {
		name, contentType, body string
		status                  int
	}{
		{"not JSON", "application/json", "redirect_uris=https://client.example.com/cb", http.StatusBadRequest},
		{"empty body", "application/json", "", http.StatusBadRequest},
		{"JSON array", "application/json", `[` + good + `]`, http.StatusBadRequest},
		{"JSON string", "application/json", `"hello"`, http.StatusBadRequest},
		{"wrong content type", "text/plain", good, http.StatusBadRequest},
		{"form content type", "application/x-www-form-urlencoded", good, http.StatusBadRequest},
		{"no content type", "", good, http.StatusBadRequest},
		{"trailing garbage", "application/json", good + ` garbage`, http.StatusBadRequest},
		{"two objects", "application/json", good + good, http.StatusBadRequest},
		{"truncated", "application/json", good[:len(good)-2], http.StatusBadRequest},
		{"oversize", "application/json", `{"redirect_uris":["https://client.example.com/cb"],"client_name":"` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.postJSON("/register", tc.contentType, tc.body)
			expectOAuthError(t, r, tc.status, "invalid_client_metadata")
		})
	}
	t.Run("GET", func(t *testing.T) {
		e := e.sub(t)
		r := e.get("/register")
		expectOAuthError(t, r, http.StatusMethodNotAllowed, "invalid_request")
		if r.Header.Get("Allow") != "POST" {
			t.Errorf("Allow %q", r.Header.Get("Allow"))
		}
	})
}

// TestLoopbackAnyPort checks RFC 8252 section 7.3: a loopback redirect URI
// matches with any port, but nothing else about it may differ.
func TestLoopbackAnyPort(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient("http://127.0.0.1:1234/cb", "http://localhost/cb")
	p := newPKCE()
	b := e.newBrowser("alice")
	for _, ru := range []string{
		"http://127.0.0.1:1234/cb",
		"http://127.0.0.1:5555/cb",
		"http://127.0.0.1/cb",
		"http://localhost:49152/cb",
	} {
		r := b.authorize(authzQuery(c, p, set("redirect_uri", ru)))
		if r.Status != http.StatusOK {
			t.Errorf("redirect_uri %s refused: %d %.200s", ru, r.Status, r.Body)
		}
	}
	for _, ru := range []string{
		"http://127.0.0.1:5555/other",
		"http://127.0.0.1:5555/cb/",
		"http://127.0.0.1:5555/cb?x=1",
		"http://127.0.0.2:1234/cb",
		"http://localhost:1234/other",
		"http://[::1]:1234/cb",
		"https://127.0.0.1:1234/cb",
		"http://user@127.0.0.1:5555/cb",
		"http://127.0.0.1:5555/cb#x",
		"http://evil.example:1234/cb",
	} {
		r := b.authorize(authzQuery(c, p, set("redirect_uri", ru)))
		expectPage(t, r, http.StatusBadRequest)
	}

	// The code goes to the port the client asked for, and redeems only
	// with that redirect URI.
	u := b.login(authzQuery(c, p, set("redirect_uri", "http://127.0.0.1:5555/cb")))
	if u.Host != "127.0.0.1:5555" || u.Path != "/cb" {
		t.Fatalf("redirected to %s", u)
	}
	code := u.Query().Get("code")
	r := e.exchange(c, code, p.Verifier, set("redirect_uri", "http://127.0.0.1:5555/cb"))
	e.mustTokens(r)
}

// TestRegisteredGrantTypesAreKept: a client that registered only the
// authorization_code grant gets no refresh token and cannot refresh.
func TestRegisteredGrantTypesAreKept(t *testing.T) {
	e := newEnv(t)
	c := e.register(map[string]any{
		"redirect_uris":              []string{clientRedirect},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code"},
	})
	code, p := e.codeFor(c, "alice")
	r := e.exchange(c, code, p.Verifier)
	if r.Status != http.StatusOK || r.str("access_token") == "" {
		t.Fatalf("exchange: %d %s", r.Status, r.Body)
	}
	e.remember(r.str("access_token"))
	if r.str("refresh_token") != "" {
		t.Error("a refresh token was issued to a client without the refresh_token grant")
	}
	expectOAuthError(t, e.refresh(c, "mcp_rt_anything"), http.StatusBadRequest, "unauthorized_client")
}
