package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
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
	verifier  string
	challenge string
}

// register registers a public client through RFC 7591 dynamic
// registration, as an MCP client does.
func (e *env) register(conns int) (*oauthClient, error) {
	body, _ := json.Marshal(map[string]any{
		"client_name":                "mcp-auth-bench",
		"redirect_uris":              []string{redirectURI},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
	})
	c := &oauthClient{e: e, http: e.client(conns)}
	resp, err := c.http.Post(e.site+"/register", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil || resp.StatusCode != http.StatusCreated || reg.ClientID == "" {
		return nil, fmt.Errorf("register: %s (%v)", resp.Status, err)
	}
	c.id = reg.ClientID
	c.verifier = oauth2.GenerateVerifier()
	c.challenge = oauth2.S256ChallengeFromVerifier(c.verifier)
	return c, nil
}

// browser is a user agent signed in to the GitHub stand-in as one user.
// It is safe for concurrent use: consent is remembered in its cookie jar.
type browser struct {
	c    *oauthClient
	http *http.Client
}

func (c *oauthClient) browser(login string, conns int) *browser {
	jar, _ := cookiejar.New(nil)
	gh, _ := url.Parse(c.e.ghURL)
	jar.SetCookies(gh, []*http.Cookie{{Name: fakegithub.LoginCookie, Value: login, Path: "/"}})
	h := c.e.client(conns)
	h.Jar = jar
	return &browser{c: c, http: h}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// code runs one authorization request the way a user's browser does:
// /authorize, the consent page (only the first time), GitHub's authorize
// endpoint, /callback, and back to the client with a code.
func (b *browser) code() (string, error) {
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
	next := b.c.e.site + "/authorize?" + q.Encode()
	for hop := 0; hop < 10; hop++ {
		resp, err := b.http.Get(next)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`action="/consent"`)) {
			form := url.Values{}
			for _, m := range hiddenInput.FindAllSubmatch(body, -1) {
				form.Set(string(m[1]), html.UnescapeString(string(m[2])))
			}
			form.Set("action", "approve")
			resp, err = b.http.PostForm(b.c.e.site+"/consent", form)
			if err != nil {
				return "", err
			}
			resp.Body.Close()
		}
		if resp.StatusCode != http.StatusFound {
			return "", fmt.Errorf("GET %s: %s", strings.SplitN(next, "?", 2)[0], resp.Status)
		}
		loc, err := resp.Location()
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(loc.String(), redirectURI) {
			if c := loc.Query().Get("code"); c != "" {
				return c, nil
			}
			return "", fmt.Errorf("authorization refused: %s", loc.Query().Get("error"))
		}
		next = loc.String()
	}
	return "", errors.New("too many redirects")
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
	resp, err := c.http.PostForm(c.e.site+"/token", form)
	if err != nil {
		return t, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return t, fmt.Errorf("token endpoint (%s): %s: %s", form.Get("grant_type"), resp.Status, body)
	}
	if err := json.Unmarshal(body, &t); err != nil || t.Access == "" || t.Refresh == "" {
		return t, fmt.Errorf("token endpoint answered %s", body)
	}
	return t, nil
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
