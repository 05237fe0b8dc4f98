package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// step makes one request in the browser and returns status, Location and
// body, without following redirects.
func (b *browser) step(t *testing.T, method, target string, form url.Values) (int, string, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = b.Client.PostForm(target, form)
	} else {
		resp, err = b.Client.Get(target)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 500 {
		t.Errorf("%s %s: %s", method, target, resp.Status)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// consentForm extracts the hidden fields of a consent page, failing the
// test if body is none.
func consentForm(t *testing.T, body string) url.Values {
	t.Helper()
	form, ok := fakegithub.ConsentForm(body)
	if !ok {
		t.Fatalf("expected the consent page, got %.300s", body)
	}
	return form
}

// isConsentPage reports whether body is the consent page.
func isConsentPage(body string) bool {
	_, ok := fakegithub.ConsentForm(body)
	return ok
}

// approveToGitHub opens authURL in the browser, approves the consent page
// it is shown and returns where the approval sends it at the stand-in,
// failing the test on any other answer.
func (b *browser) approveToGitHub(t *testing.T, authURL string) string {
	t.Helper()
	status, _, body := b.step(t, http.MethodGet, authURL, nil)
	if status != http.StatusOK || !isConsentPage(body) {
		t.Fatalf("authorize: %d, want the consent page", status)
	}
	form := consentForm(t, body)
	form.Set("action", fakegithub.Approve)
	status, toGitHub, _ := b.step(t, http.MethodPost, b.e.site+"/consent", form)
	if status != http.StatusFound || !strings.HasPrefix(toGitHub, b.e.ghURL) {
		t.Fatalf("approval: %d to %q, want a redirect to GitHub", status, toGitHub)
	}
	return toGitHub
}

// authURL is an authorization request of client c.
func (c *oauthClient) authURL(resource string) string {
	return c.config().AuthCodeURL("attacker-state",
		oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
		oauth2.SetAuthURLParam("resource", resource))
}

// TestConfusedDeputy is the attack consent exists for: Mallory registers a
// client with her own redirect URI, walks through consent herself, and
// sends the victim the resulting link to GitHub. GitHub would sign the
// victim in silently (they approved the GitHub app before), so without the
// browser binding Mallory's redirect URI would receive a code for the
// victim. It must not.
func TestConfusedDeputy(t *testing.T) {
	e := start(t, options{})
	mallory := e.register(t, false)
	attacker, victim := e.browser("bob"), e.browser("alice")

	toGitHub := attacker.approveToGitHub(t, mallory.authURL(e.site+"/mcp"))

	// The victim opens Mallory's link to GitHub and is signed in there.
	status, toCallback, _ := victim.step(t, http.MethodGet, toGitHub, nil)
	if status != http.StatusFound || !strings.HasPrefix(toCallback, e.site+"/callback") {
		t.Fatalf("GitHub stand-in: %d %s", status, toCallback)
	}
	status, loc, body := victim.step(t, http.MethodGet, toCallback, nil)
	if status != http.StatusForbidden || loc != "" {
		t.Fatalf("callback in the victim's browser: %d, Location %q, want 403 and no redirect", status, loc)
	}
	if !strings.Contains(body, "another browser") {
		t.Errorf("the refusal does not explain itself: %s", body)
	}

	// The state is spent: Mallory cannot finish with it either.
	status, loc, _ = attacker.step(t, http.MethodGet, toCallback, nil)
	if status != http.StatusBadRequest || loc != "" {
		t.Errorf("reusing the state: %d %q, want 400 and no redirect", status, loc)
	}
}

// TestConsentCSRF: a consent form issued to one browser cannot be submitted
// from another, and an edited form is refused.
func TestConsentCSRF(t *testing.T) {
	e := start(t, options{})
	c := e.register(t, false)
	attacker, victim := e.browser("bob"), e.browser("alice")

	_, _, body := attacker.step(t, http.MethodGet, c.authURL(e.site+"/mcp"), nil)
	form := consentForm(t, body)
	if form.Get("csrf") == "" {
		t.Fatal("the consent form has no CSRF token")
	}
	form.Set("action", "approve")

	// The victim has a browser cookie of its own, from any earlier visit.
	victim.step(t, http.MethodGet, c.authURL(e.site+"/mcp"), nil)
	if status, loc, _ := victim.step(t, http.MethodPost, e.site+"/consent", form); status != http.StatusForbidden || loc != "" {
		t.Errorf("another browser's consent form: %d %q, want 403", status, loc)
	}
	fresh := e.browser("alice")
	if status, _, _ := fresh.step(t, http.MethodPost, e.site+"/consent", form); status != http.StatusForbidden {
		t.Errorf("consent form from a browser without cookies: %d, want 403", status)
	}
	edited := url.Values{}
	for k, v := range form {
		edited[k] = v
	}
	// Another protected resource: valid on its own, but not what the
	// user was shown.
	edited.Set("resource", e.site+"/sse")
	if status, _, _ := attacker.step(t, http.MethodPost, e.site+"/consent", edited); status != http.StatusForbidden {
		t.Errorf("edited consent form: %d, want 403", status)
	}
	if status, loc, _ := attacker.step(t, http.MethodPost, e.site+"/consent", form); status != http.StatusFound || !strings.HasPrefix(loc, e.ghURL) {
		t.Errorf("the genuine form in its own browser: %d %q", status, loc)
	}
}

func TestConsentPageAndDenial(t *testing.T) {
	e := start(t, options{})
	resp, err := e.httpClient(nil).Post(e.site+"/register", "application/json",
		strings.NewReader(`{"client_name":"<script>alert(1)</script>","redirect_uris":["https://client.example/cb"],"token_endpoint_auth_method":"none"}`))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if err := jsonDecode(resp, &reg); err != nil {
		t.Fatal(err)
	}
	c := &oauthClient{e: e, http: e.httpClient(nil), id: reg.ClientID, redirect: "https://client.example/cb"}
	b := e.browser("alice")

	req, _ := http.NewRequest(http.MethodGet, c.authURL(e.site+"/mcp"), nil)
	resp, err = b.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for h, want := range map[string]string{
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "frame-ancestors 'none'",
		"Cache-Control":           "no-store",
	} {
		if !strings.Contains(resp.Header.Get(h), want) {
			t.Errorf("consent page %s = %q, want it to contain %q", h, resp.Header.Get(h), want)
		}
	}
	page := string(body)
	if strings.Contains(page, "<script>alert(1)</script>") || !strings.Contains(page, "&lt;script&gt;") {
		t.Error("the client name is not escaped on the consent page")
	}
	if !strings.Contains(page, "https://client.example") {
		t.Error("the consent page does not name the redirect host")
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-mcp_browser" {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Domain != "" {
		t.Errorf("browser cookie attributes: %+v", cookie)
	}

	form := consentForm(t, page)
	form.Set("action", "deny")
	status, loc, _ := b.step(t, http.MethodPost, e.site+"/consent", form)
	u, _ := url.Parse(loc)
	if status != http.StatusFound || u.Host != "client.example" {
		t.Fatalf("deny: %d %q", status, loc)
	}
	q := u.Query()
	if q.Get("error") != "access_denied" || q.Get("iss") != e.site || q.Get("state") != "attacker-state" || q.Get("code") != "" {
		t.Errorf("deny redirect query %v", q)
	}
}

// TestAllowListsAndRecheck: only allow-listed users get in, and a user who
// leaves the organization loses access at the next refresh.
func TestAllowListsAndRecheck(t *testing.T) {
	e := start(t, options{authExtra: "allow_orgs acme\n\t\tallow_teams acme/platform"})
	c := e.register(t, false)

	// bob is in no allowed org or team.
	final, err := e.browser("bob").Authorize(t.Context(), c.authURL(e.site+"/mcp"))
	if err != nil {
		t.Fatal(err)
	}
	if q := final.Query(); q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("bob was not refused: %v", q)
	} else if strings.Contains(q.Get("error_description"), "bob") {
		t.Errorf("the refusal names the refused user to the client: %q", q.Get("error_description"))
	}

	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's token: %s", resp.Status)
	}
	before := e.gh.Calls("/user/orgs")
	status, out := c.refresh(t, tok.RefreshToken)
	if status != http.StatusOK {
		t.Fatalf("refresh while still a member: %d %v", status, out)
	}
	if e.gh.Calls("/user/orgs") == before {
		t.Error("refresh did not re-check the organization with GitHub")
	}
	access, refresh := out["access_token"].(string), out["refresh_token"].(string)
	e.logs.addSecret(access)
	e.logs.addSecret(refresh)

	e.gh.SetUserOrgs("alice", nil)
	e.gh.SetUserTeams("alice", nil)
	status, out = c.refresh(t, refresh)
	if status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("refresh after leaving the org: %d %v, want 400 invalid_grant", status, out)
	}
	if resp := e.mcpPost(t, "/mcp", "Bearer "+access); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("access token of a user who left the org: %s, want 401 (grant revoked)", resp.Status)
	}
}
