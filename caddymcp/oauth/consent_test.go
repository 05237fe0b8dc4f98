package oauth_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

const (
	cookieBrowser  = "__Host-mcp_browser"
	cookieApproved = "__Host-mcp_approved"
)

func TestConsentPage(t *testing.T) {
	e := newEnv(t)
	c := e.register(map[string]any{
		"redirect_uris":              []string{"https://evil-looking.example:8443/oauth/cb?x=1"},
		"token_endpoint_auth_method": "none",
		"client_name":                `<script>alert(1)</script>`,
		"client_uri":                 `https://client.example.com/"><img src=x>`,
	})
	p := newPKCE()
	b := e.newBrowser("alice")
	r := b.authorize(authzQuery(c, p, set("resource", e.issuer+"/sse"), set("state", `"><b>state</b>`)))
	consentForm(t, r)

	h := r.Header
	for name, want := range map[string]string{
		"X-Frame-Options":        "DENY",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Errorf("Content-Type %q", h.Get("Content-Type"))
	}

	for _, raw := range []string{"<script>", "<img src=x>", "<b>state</b>"} {
		if strings.Contains(r.Body, raw) {
			t.Errorf("the page contains unescaped %q", raw)
		}
	}
	if !strings.Contains(r.Body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the page does not show the escaped client name: %s", r.Body)
	}
	if !strings.Contains(r.Body, `<p class="host">https://evil-looking.example:8443</p>`) {
		t.Errorf("the page does not show the redirect host: %s", r.Body)
	}
	if !strings.Contains(r.Body, c.ID) || !strings.Contains(r.Body, e.issuer+"/sse") || !strings.Contains(r.Body, "<code>tools</code>") {
		t.Errorf("the page does not name the client id, the resource and the scopes: %s", r.Body)
	}

	// The browser got its binding cookie, with every attribute that
	// makes it a proper __Host- cookie.
	var bc *http.Cookie
	for _, ck := range r.Cookies {
		if ck.Name == cookieBrowser {
			bc = ck
		}
	}
	if bc == nil {
		t.Fatalf("no %s cookie set", cookieBrowser)
	}
	checkHostCookie(t, bc)
}

func checkHostCookie(t *testing.T, c *http.Cookie) {
	t.Helper()
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie %s: Secure %v HttpOnly %v SameSite %v Path %q Domain %q", c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
	}
}

func TestConsentUnnamedClient(t *testing.T) {
	e := newEnv(t)
	c := e.register(map[string]any{"redirect_uris": []string{clientRedirect}, "token_endpoint_auth_method": "none"})
	r := e.newBrowser("alice").authorize(authzQuery(c, newPKCE()))
	consentForm(t, r)
	if !strings.Contains(r.Body, "An unnamed client") || !strings.Contains(r.Body, "every protected path") {
		t.Errorf("page: %s", r.Body)
	}
}

// TestConsentRefusals covers consent forms that were not issued to this
// browser for this exact request.
func TestConsentRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient(clientRedirect, "https://client.example.com/other")
	other := e.publicClient()
	p := newPKCE()

	// start shows the consent page in a fresh browser and returns its form.
	start := func(e *env, mods ...func(url.Values)) (*browser, url.Values) {
		b := e.newBrowser("alice")
		form := consentForm(e.t, b.authorize(authzQuery(c, p, mods...)))
		form.Set("action", "approve")
		return b, form
	}
	tampered := []struct {
		name  string
		field string
		value string
	}{
		{"csrf altered", "csrf", "AAAA"},
		{"csrf emptied", "csrf", ""},
		{"redirect_uri swapped for another registered one", "redirect_uri", "https://client.example.com/other"},
		{"code_challenge swapped", "code_challenge", newPKCE().Challenge},
		{"state changed", "state", "attacker-state"},
		{"scope widened", "scope", "admin read tools"},
		{"resource added", "resource", e.issuer + "/mcp"},
	}
	for _, tc := range tampered {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			b, form := start(e)
			form.Set(tc.field, tc.value)
			expectPage(t, b.postForm("/consent", form), http.StatusForbidden)
		})
	}
	t.Run("csrf missing", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		form.Del("csrf")
		expectPage(t, b.postForm("/consent", form), http.StatusForbidden)
	})
	t.Run("client swapped", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		form.Set("client_id", other.ID)
		expectPage(t, b.postForm("/consent", form), http.StatusForbidden)
	})
	t.Run("csrf of browser A with the cookie of browser B", func(t *testing.T) {
		e := e.sub(t)
		_, formA := start(e)
		b, _ := start(e)
		expectPage(t, b.postForm("/consent", formA), http.StatusForbidden)
	})
	t.Run("csrf of another request in the same browser", func(t *testing.T) {
		e := e.sub(t)
		b, form1 := start(e)
		form2 := consentForm(t, b.authorize(authzQuery(c, p, set("state", "second"))))
		form1.Set("csrf", form2.Get("csrf"))
		expectPage(t, b.postForm("/consent", form1), http.StatusForbidden)
	})
	t.Run("no browser cookie", func(t *testing.T) {
		e := e.sub(t)
		_, form := start(e)
		stranger := e.newBrowser("alice")
		expectPage(t, stranger.postForm("/consent", form), http.StatusForbidden)
	})
	t.Run("forged browser cookie", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		b.setCookie(cookieBrowser, strings.Repeat("A", 43))
		expectPage(t, b.postForm("/consent", form), http.StatusForbidden)
	})
	t.Run("redirect_uri swapped for an unregistered one", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		form.Set("redirect_uri", "https://evil.example/cb")
		expectPage(t, b.postForm("/consent", form), http.StatusBadRequest)
	})
	t.Run("no action", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		form.Del("action")
		expectPage(t, b.postForm("/consent", form), http.StatusBadRequest)
	})
	t.Run("GET", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		expectPage(t, b.get(e.issuer+"/consent?"+form.Encode()), http.StatusMethodNotAllowed)
	})
	t.Run("not a form", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		resp, err := b.Client.Post(e.issuer+"/consent", "application/json", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		expectPage(t, readResponse(t, resp), http.StatusBadRequest)
	})
	t.Run("oversize form", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		form.Set("padding", strings.Repeat("x", 100<<10))
		expectPage(t, b.postForm("/consent", form), http.StatusBadRequest)
	})
	t.Run("refusals leave no approval behind", func(t *testing.T) {
		e := e.sub(t)
		b, form := start(e)
		form.Set("csrf", "AAAA")
		b.postForm("/consent", form)
		consentForm(t, b.authorize(authzQuery(c, p)))
	})
}

func TestConsentDeny(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	b := e.newBrowser("alice")
	q := authzQuery(c, newPKCE())
	form := consentForm(t, b.authorize(q))
	form.Set("action", "deny")
	r := b.postForm("/consent", form)
	e.expectClientRedirect(r, clientRedirect, "access_denied", "client-state-123")
	if b.cookie(cookieApproved) != "" {
		t.Errorf("denying set an approval cookie")
	}
	// Denied is not remembered: the next request asks again.
	consentForm(t, b.authorize(q))
}

func TestConsentRemembered(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	other := e.publicClient()
	b := e.newBrowser("alice")

	form := consentForm(t, b.authorize(authzQuery(c, newPKCE())))
	form.Set("action", "approve")
	r := b.postForm("/consent", form)
	if r.Status != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), e.ghURL+"/login/oauth/authorize?") {
		t.Fatalf("approve: %d to %q", r.Status, r.Header.Get("Location"))
	}
	var ac *http.Cookie
	for _, ck := range r.Cookies {
		if ck.Name == cookieApproved {
			ac = ck
		}
	}
	if ac == nil {
		t.Fatalf("approving set no %s cookie", cookieApproved)
	}
	checkHostCookie(t, ac)
	if ac.MaxAge <= 0 {
		t.Errorf("approval cookie MaxAge %d", ac.MaxAge)
	}

	// Until the sign-in completes, the approval skips nothing: it is
	// bound to the user who signs in, and recorded for them.
	consentForm(t, b.authorize(authzQuery(c, newPKCE(), set("state", "early"))))
	b.get(b.atGitHub(r.loc(t)).String())

	// Same browser, same client: straight to GitHub, with a new request.
	r = b.authorize(authzQuery(c, newPKCE(), set("state", "again")))
	if r.Status != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), e.ghURL+"/login/oauth/authorize?") {
		t.Fatalf("second authorize: %d to %q, want GitHub", r.Status, r.Header.Get("Location"))
	}
	// ...and the whole flow completes from there, with the new state.
	u := b.login(authzQuery(c, newPKCE(), set("state", "third")))
	if u.Query().Get("state") != "third" {
		t.Errorf("state %q", u.Query().Get("state"))
	}
	// Bad requests are still refused, approval or not.
	r = b.authorize(authzQuery(c, newPKCE(), del("code_challenge")))
	e.expectClientRedirect(r, clientRedirect, "invalid_request", "client-state-123")

	// Another client, another browser: the page again.
	consentForm(t, b.authorize(authzQuery(other, newPKCE())))
	consentForm(t, e.newBrowser("alice").authorize(authzQuery(c, newPKCE())))

	// The approval lapses after 30 days.
	e.clock.Advance(31 * 24 * time.Hour)
	consentForm(t, b.authorize(authzQuery(c, newPKCE())))
}

// TestConsentForgedApproval: an approval cookie that our key did not sign
// is ignored.
func TestConsentForgedApproval(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	victim := e.publicClient()
	b := e.newBrowser("alice")
	b.login(authzQuery(c, newPKCE()))
	genuine := b.cookie(cookieApproved)
	dot := strings.LastIndexByte(genuine, '.')
	if dot < 0 {
		t.Fatalf("approval cookie %q has no signature", genuine)
	}
	payload, sig := genuine[:dot], genuine[dot+1:]

	// Forgeries carry the genuine approvals, which would skip the
	// consent page for c, changed by a second of expiry: only the
	// signature check stands between them and the page.
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	var entries []map[string]any
	if err := json.Unmarshal(raw, &entries); err != nil || len(entries) == 0 {
		t.Fatalf("approval payload %s: %v", raw, err)
	}
	for _, en := range entries {
		en["e"] = en["e"].(float64) + 1
	}
	changed, _ := json.Marshal(entries)
	forged := base64.RawURLEncoding.EncodeToString(changed)
	for name, value := range map[string]string{
		"changed payload, real signature": forged + "." + sig,
		"real payload, bad signature":     payload + "." + strings.Repeat("A", len(sig)),
		"unsigned payload":                forged,
		"empty signature":                 forged + ".",
		"garbage":                         "%%%not-base64%%%",
		"oversize":                        strings.Repeat("A", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			e := e.sub(t)
			fb := e.newBrowser("alice")
			fb.setCookie(cookieApproved, value)
			consentForm(t, fb.authorize(authzQuery(victim, newPKCE())))
			consentForm(t, fb.authorize(authzQuery(c, newPKCE())))
		})
	}
	// The real cookie still works in another browser (it is a bearer
	// value), proving the forgeries failed on their signature alone.
	ob := e.newBrowser("alice")
	ob.setCookie(cookieApproved, genuine)
	if r := ob.authorize(authzQuery(c, newPKCE())); r.Status != http.StatusFound {
		t.Fatalf("the real approval cookie was not honoured: %d", r.Status)
	}
}

// TestSharedBrowserAnotherUser: alice's remembered approval skips the
// consent page in her browser, but when bob signs in to GitHub in that
// browser, the sign-in is refused instead of recording a consent bob
// never saw, and the next attempt shows bob the page.
func TestSharedBrowserAnotherUser(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	b := e.newBrowser("alice")
	b.login(authzQuery(c, newPKCE()))
	gh := b.toGitHub(authzQuery(c, newPKCE())) // skipped: alice's approval

	b.SignIn("bob")
	back := b.get(b.atGitHub(gh).String())
	q := e.expectClientRedirect(back, clientRedirect, "access_denied", "client-state-123")
	if !strings.Contains(q.Get("error_description"), "another GitHub user approved") {
		t.Errorf("error_description %q", q.Get("error_description"))
	}
	form := consentForm(t, b.authorize(authzQuery(c, newPKCE())))
	form.Set("action", "approve")
	r := b.postForm("/consent", form)
	u := b.get(b.atGitHub(r.loc(t)).String()).loc(t)
	if u.Query().Get("code") == "" {
		t.Fatalf("bob's own consent did not sign him in: %s", u)
	}
}

// TestApprovalCoversWhatWasShown: an approval skips consent only for the
// exact redirect URI, resource and scope the user saw.
func TestApprovalCoversWhatWasShown(t *testing.T) {
	e := newEnv(t)
	const other = "https://evil.example.com/cb"
	c := e.publicClient(clientRedirect, other)
	b := e.newBrowser("alice")
	b.login(authzQuery(c, newPKCE()))

	if r := b.authorize(authzQuery(c, newPKCE())); r.Status != http.StatusFound {
		t.Fatalf("the approved request again: %d, want straight to GitHub", r.Status)
	}
	for name, mod := range map[string]func(map[string][]string){
		"the client's other redirect URI": func(q map[string][]string) { q["redirect_uri"] = []string{other} },
		"another resource":                func(q map[string][]string) { q["resource"] = []string{e.issuer + "/sse"} },
		"one resource of the site":        func(q map[string][]string) { q["resource"] = []string{e.issuer + "/mcp"} },
		"another scope":                   func(q map[string][]string) { q["scope"] = []string{"read"} },
	} {
		q := authzQuery(c, newPKCE())
		mod(q)
		r := b.authorize(q)
		if _, ok := fakegithub.ConsentForm(r.Body); r.Status != http.StatusOK || !ok {
			t.Errorf("%s: %d, want the consent page", name, r.Status)
		}
	}
	// A confidential client proves itself at the token endpoint, so its
	// approved loopback redirect URI holds whatever port the app gets.
	conf := e.confidentialClient("http://127.0.0.1:1234/cb")
	b.login(authzQuery(conf, newPKCE()))
	q := authzQuery(conf, newPKCE())
	q.Set("redirect_uri", "http://127.0.0.1:5678/cb")
	if r := b.authorize(q); r.Status != http.StatusFound {
		t.Errorf("approved loopback redirect of a confidential client on another port: %d, want straight to GitHub", r.Status)
	}
}

// TestConsentAlwaysForUnverifiableClients: a public client whose redirect
// goes to a program on this computer (a loopback port, an app scheme) sees
// the consent page every time, however often it was approved: any local
// program can pose as it, and its client_id is no secret (RFC 8252
// section 8.6). A web client's https redirect keeps its remembered
// approval.
func TestConsentAlwaysForUnverifiableClients(t *testing.T) {
	e := newEnv(t)
	b := e.newBrowser("alice")
	for _, redirect := range []string{"http://127.0.0.1:1234/cb", "http://localhost:9876/callback", "cursor://anysphere.cursor-retrieval/oauth/callback"} {
		c := e.publicClient(redirect)
		for i := range 3 {
			consentForm(t, b.authorize(authzQuery(c, newPKCE()))) // fails unless the page is shown
			if i == 0 {
				b.login(authzQuery(c, newPKCE()))
			}
		}
	}
	web := e.publicClient(clientRedirect)
	b.login(authzQuery(web, newPKCE()))
	if r := b.authorize(authzQuery(web, newPKCE())); r.Status != http.StatusFound {
		t.Errorf("an approved web client: %d, want straight to GitHub", r.Status)
	}
}
