package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// The OAuth client the driver plays: a public client (PKCE, no secret)
// with a loopback redirect URI, as MCP clients register themselves.
const redirectURI = "http://127.0.0.1:9/callback"

// oauthClient is a registered client and the PKCE pair it uses for every
// authorization request (a benchmark needs no fresh verifier each time).
type oauthClient struct {
	e         *env
	http      *http.Client
	id        string
	secret    string // a confidential client's; "" for a public one
	verifier  string
	challenge string
}

// register registers a public client through RFC 7591 dynamic
// registration, as an MCP client does.
func (e *env) register(conns int) (*oauthClient, error) {
	c, _, err := e.registerVia(e.client(conns), publicClientMetadata("mcp-auth-bench"))
	return c, err
}

// publicClientMetadata is the registration of a public client named name
// (PKCE, no secret) with the driver's loopback redirect URI. The server
// hands the same metadata the same client back.
func publicClientMetadata(name string) map[string]any {
	return map[string]any{
		"client_name":                name,
		"redirect_uris":              []string{redirectURI},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
	}
}

// confidentialClientMetadata is the registration of a confidential client
// (client_secret_basic), as a hosted application makes it: every one is a
// new client with its own secret.
func confidentialClientMetadata(name string) map[string]any {
	m := publicClientMetadata(name)
	m["token_endpoint_auth_method"] = "client_secret_basic"
	return m
}

// registerVia registers a client with metadata through h, and returns it
// (using h for its token requests) and the status of the answer.
func (e *env) registerVia(h *http.Client, metadata map[string]any) (*oauthClient, int, error) {
	body, _ := json.Marshal(metadata)
	c := &oauthClient{e: e, http: h}
	resp, err := c.http.Post(e.site+"/register", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var reg struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&reg); err != nil || resp.StatusCode != http.StatusCreated || reg.ClientID == "" {
		return nil, resp.StatusCode, fmt.Errorf("register: %s (%v)", resp.Status, err)
	}
	c.id, c.secret = reg.ClientID, reg.ClientSecret
	c.verifier = oauth2.GenerateVerifier()
	c.challenge = oauth2.S256ChallengeFromVerifier(c.verifier)
	return c, resp.StatusCode, nil
}

// via is the same client making its requests through h (from another
// address, say).
func (c *oauthClient) via(h *http.Client) *oauthClient {
	d := *c
	d.http = h
	return &d
}

// browser is a user agent signed in to the GitHub stand-in as one user.
// It is safe for concurrent use: consent is remembered in its cookie jar.
type browser struct {
	*fakegithub.Browser
	c *oauthClient
}

func (c *oauthClient) browser(login string, conns int) *browser {
	return c.browserVia(login, c.e.client(conns))
}

// browserVia is browser with a cookie jar of its own on h's connections.
func (c *oauthClient) browserVia(login string, h *http.Client) *browser {
	return &browser{Browser: fakegithub.NewBrowser(c.e.ghURL, login, h), c: c}
}

// authorizeURL is an authorization request of b's client with a fresh
// state.
func (b *browser) authorizeURL() string {
	var st [12]byte
	_, _ = rand.Read(st[:])
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {b.c.id},
		"redirect_uri":          {redirectURI},
		"code_challenge":        {b.c.challenge},
		"code_challenge_method": {"S256"},
		"state":                 {base64.RawURLEncoding.EncodeToString(st[:])},
	}
	return b.c.e.site + "/authorize?" + q.Encode()
}

// code runs one authorization request the way a user's browser does:
// /authorize, the consent page (only the first time), GitHub's authorize
// endpoint, /callback, and back to the client with a code.
func (b *browser) code() (string, error) {
	loc, err := b.Authorize(context.Background(), b.authorizeURL())
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(loc.String(), redirectURI) {
		return "", fmt.Errorf("redirected to %s, not to the client", loc.Redacted())
	}
	if c := loc.Query().Get("code"); c != "" {
		return c, nil
	}
	return "", fmt.Errorf("authorization refused: %s", loc.Query().Get("error"))
}

// tokens is a token endpoint answer.
type tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
}

// exchange trades a code for tokens.
func (c *oauthClient) exchange(code string) (tokens, error) {
	return c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
		"code_verifier": {c.verifier}, "client_id": {c.id}})
}

// refresh rotates a refresh token.
func (c *oauthClient) refresh(rt string) (tokens, error) {
	return c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.id}})
}

func (c *oauthClient) token(form url.Values) (tokens, error) {
	var t tokens
	status, body, err := c.post("/token", form)
	if err != nil {
		return t, err
	}
	if status != http.StatusOK {
		return t, &tokenError{status: status, body: body, grantType: form.Get("grant_type")}
	}
	if err := json.Unmarshal(body, &t); err != nil || t.Access == "" || t.Refresh == "" {
		return t, fmt.Errorf("token endpoint answered %s", body)
	}
	return t, nil
}

// post sends form to the endpoint at path, authenticated as the client
// (HTTP Basic for a confidential client, client_id in the form for a
// public one), and returns the answer's status and body.
func (c *oauthClient) post(path string, form url.Values) (int, []byte, error) {
	if c.secret != "" {
		form = maps.Clone(form)
		form.Del("client_id")
	}
	req, _ := http.NewRequest(http.MethodPost, c.e.site+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.secret != "" {
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, body, err
}

// tokenError is a token endpoint's refusal.
type tokenError struct {
	status    int
	body      []byte
	grantType string
}

func (e *tokenError) Error() string {
	return fmt.Sprintf("token endpoint (%s): %d %s: %s", e.grantType, e.status, http.StatusText(e.status), e.body)
}

// invalidGrant reports whether err is the token endpoint's invalid_grant:
// the code or refresh token is not (or no longer) good.
func invalidGrant(err error) bool {
	var te *tokenError
	return errors.As(err, &te) && te.status == http.StatusBadRequest && bytes.Contains(te.body, []byte(`"invalid_grant"`))
}

// revoke revokes a token (RFC 7009); revoking a refresh token revokes its
// grant.
func (c *oauthClient) revoke(tok string) error {
	status, body, err := c.post("/revoke", url.Values{"token": {tok}, "client_id": {c.id}})
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("revoke: %d %s: %.200s", status, http.StatusText(status), body)
	}
	return nil
}

// login runs the whole flow once and returns the tokens.
func (e *env) login() (*oauthClient, tokens, error) {
	c, err := e.register(4)
	if err != nil {
		return nil, tokens{}, err
	}
	code, err := c.browser(userLogin(0), 4).code()
	if err != nil {
		return nil, tokens{}, err
	}
	t, err := c.exchange(code)
	return c, t, err
}
