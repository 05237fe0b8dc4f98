package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// faultsConfig makes every sign-in and refresh read the user, their
// organizations and their teams (nobody is in the org; alice is in the
// team), so a fault on any of the three is met.
const faultsConfig = "allow_orgs nobody-is-here\n\t\tallow_teams acme/platform"

// patient is well above anything the server waits for GitHub (10 seconds
// at refresh, 15 at sign-in): a request to Caddy that outlives it hung.
const patient = 60 * time.Second

// ghFault is one way GitHub fails, as the stand-in plays it.
type ghFault struct {
	name  string
	fault fakegithub.Fault
	pause bool // refuse connections instead
	// hint is when GitHub says to come back, as the server bounds it
	// (at most 5 minutes); zero when GitHub does not say.
	hint time.Duration
}

// ghFaults are the faults of GitHub both flows must survive: slow (within
// the server's deadline; past it is githubidp's TestFaultsAt*), 5xx, the
// rate limits as GitHub sends them, and GitHub gone from the network.
var ghFaults = []ghFault{
	{name: "slow", fault: fakegithub.Fault{Delay: 300 * time.Millisecond}},
	{name: "502", fault: fakegithub.Fault{Fail: fakegithub.ServerError}},
	{name: "503 on teams", fault: fakegithub.Fault{Path: "/user/teams", Fail: fakegithub.ServerError, Status: 503}},
	{name: "primary rate limit", fault: fakegithub.Fault{Fail: fakegithub.PrimaryRateLimit}, hint: 5 * time.Minute}, // resets within the hour
	{name: "429 on orgs", fault: fakegithub.Fault{Path: "/user/orgs", Fail: fakegithub.TooManyRequests, RetryAfter: 40 * time.Second}, hint: 40 * time.Second},
	{name: "secondary rate limit", fault: fakegithub.Fault{Fail: fakegithub.SecondaryRateLimit, RetryAfter: 30 * time.Second}, hint: 30 * time.Second},
	{name: "connection refused", pause: true},
}

// inject starts f at the stand-in and returns what ends it.
func (f ghFault) inject(t *testing.T, gh *fakegithub.Server) func() {
	t.Helper()
	if f.pause {
		if err := gh.Pause(); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := gh.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}
	gh.SetFault(f.fault)
	return func() { gh.SetFault(fakegithub.Fault{}) }
}

// patientClient is an HTTP client of the site that waits long enough to
// tell a slow answer from a hung one.
func (e *env) patientClient(jar http.CookieJar) *http.Client {
	c := e.httpClient(jar)
	c.Timeout = patient
	return c
}

// refreshAnswer is a token endpoint's answer, whatever its status.
type refreshAnswer struct {
	status     int
	retryAfter string
	body       map[string]any
}

// refreshRaw refreshes with rt and returns the answer as it is: unlike
// oauthClient.refresh, a 503 is one of the answers expected here.
func (c *oauthClient) refreshRaw(t *testing.T, rt string) refreshAnswer {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.id}}
	resp, err := c.e.patientClient(nil).PostForm(c.e.site+"/token", form)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	defer resp.Body.Close()
	a := refreshAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a.body); err != nil {
		t.Fatalf("refresh answered %d with non-JSON %q", resp.StatusCode, b)
	}
	return a
}

// TestGitHubFaultsAtRefresh: while GitHub is slow, failing, rate limiting
// or unreachable, a refresh answers 200 (a new pair) or 503
// temporarily_unavailable with Retry-After, never invalid_grant; the
// access token in hand keeps working; and once GitHub is back the refresh
// token the client holds (the old one after a 503, the new one after a
// 200) refreshes: the grant was not revoked.
func TestGitHubFaultsAtRefresh(t *testing.T) {
	// By default a user GitHub confirmed at sign-in is served from that
	// check for twice the access-token lifetime: every refresh here
	// succeeds. With outage_grace 0, every refresh during a fault is
	// deferred with 503 (except the slow GitHub, which answers in time).
	for _, mode := range []struct {
		name, github string
		served       bool
	}{{"served from the last check", "", true}, {"no outage grace", "outage_grace 0", false}} {
		t.Run(mode.name, func(t *testing.T) { testGitHubFaultsAtRefresh(t, mode.github, mode.served) })
	}
}

func testGitHubFaultsAtRefresh(t *testing.T, githubExtra string, served bool) {
	e := start(t, options{authExtra: faultsConfig, githubExtra: githubExtra})
	c := e.register(t, false)
	for _, f := range ghFaults {
		t.Run(f.name, func(t *testing.T) {
			tok := c.login(t, e.browser("alice"), e.site+"/mcp")
			end := f.inject(t, e.gh)
			a := c.refreshRaw(t, tok.RefreshToken)
			access := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken).StatusCode
			end()

			held := tok.RefreshToken
			switch {
			case a.status == http.StatusOK:
				at, _ := a.body["access_token"].(string)
				held, _ = a.body["refresh_token"].(string)
				e.logs.addSecret(at)
				e.logs.addSecret(held)
				if held == "" || held == tok.RefreshToken {
					t.Fatalf("a 200 without a new refresh token: %v", a.body)
				}
			case a.status == http.StatusServiceUnavailable && a.body["error"] == "temporarily_unavailable":
				// A client sent back sooner than GitHub asked would
				// only meet the same limit again.
				secs, err := strconv.Atoi(a.retryAfter)
				if err != nil || secs < 1 || time.Duration(secs)*time.Second < f.hint-time.Second {
					t.Errorf("503 with Retry-After %q, want whole seconds, at least GitHub's %v", a.retryAfter, f.hint)
				}
			default:
				t.Fatalf("refresh while GitHub fails: %d %v, want 200 or 503 temporarily_unavailable", a.status, a.body)
			}
			if access != http.StatusOK {
				t.Errorf("the access token in hand was refused (%d) while GitHub failed", access)
			}
			if want := served || f.name == "slow"; want != (a.status == http.StatusOK) {
				t.Errorf("refresh while GitHub fails: %d, want 200 %v", a.status, want)
			}

			b := c.refreshRaw(t, held)
			if b.status != http.StatusOK {
				t.Fatalf("refresh after GitHub came back: %d %v; the grant was lost", b.status, b.body)
			}
			at, _ := b.body["access_token"].(string)
			e.logs.addSecret(at)
			e.logs.addSecret(fmt.Sprint(b.body["refresh_token"]))
			if resp := e.mcpPost(t, "/mcp", "Bearer "+at); resp.StatusCode != http.StatusOK {
				t.Errorf("the refreshed token: %s", resp.Status)
			}
		})
	}
}

var signInAgain = regexp.MustCompile(`<a href="([^"]+)">Sign in again</a>`)

// TestGitHubFaultsAtSignIn: a GitHub fault while the callback exchanges
// the code and reads the user is, for the browser, a page saying GitHub
// is not answering (502, or 503 with Retry-After when GitHub said when),
// never a 500, a redirect ending the client's flow or a word about
// tokens; it is counted as a github_error denial; and the page's link,
// once GitHub is back, completes the same sign-in: the client gets a code
// for its original state that redeems with its original verifier. A slow
// GitHub within the deadline signs the user in as usual.
func TestGitHubFaultsAtSignIn(t *testing.T) {
	e := start(t, options{authExtra: faultsConfig})
	c := e.register(t, false)
	for _, f := range ghFaults {
		t.Run(f.name, func(t *testing.T) {
			b := e.browser("alice")
			b.Client.Timeout = patient
			verifier := oauth2.GenerateVerifier()
			e.logs.addSecret(verifier)
			authURL := c.config().AuthCodeURL("st-faults", oauth2.S256ChallengeOption(verifier),
				oauth2.SetAuthURLParam("resource", e.site+"/mcp"))
			cb := b.toCallback(t, authURL)
			e.logs.addSecret(cb.Query().Get("code"))
			e.logs.addSecret(cb.Query().Get("state"))

			m0 := e.metrics(t)
			end := f.inject(t, e.gh)
			resp, err := b.Client.Get(cb.String())
			end()
			if err != nil {
				t.Fatalf("callback: %v", err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()

			final := (*url.URL)(nil)
			if f.name == "slow" {
				if resp.StatusCode != http.StatusFound {
					t.Fatalf("callback with a slow GitHub: %s: %s", resp.Status, page)
				}
				final, _ = resp.Location()
			} else {
				wantGitHubDownPage(t, resp, string(page), cb, f.hint)
				wantMetric(t, m0, e.metrics(t), `caddymcp_authorizations_total{reason="github_error",result="denied"}`, 1)
				m := signInAgain.FindStringSubmatch(string(page))
				if m == nil {
					t.Fatalf("no link to sign in again: %s", page)
				}
				link, err := url.Parse(html.UnescapeString(m[1]))
				if err != nil {
					t.Fatal(err)
				}
				if final, err = b.Authorize(context.Background(), e.site+link.String()); err != nil {
					t.Fatalf("signing in again: %v", err)
				}
			}
			q := final.Query()
			if !strings.HasPrefix(final.String(), c.redirect+"?") || q.Get("code") == "" || q.Get("state") != "st-faults" || q.Get("iss") != e.site {
				t.Fatalf("the sign-in ended at %s", final)
			}
			e.logs.addSecret(q.Get("code"))
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.patientClient(nil))
			tok, err := c.config().Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier),
				oauth2.SetAuthURLParam("resource", e.site+"/mcp"))
			if err != nil {
				t.Fatalf("redeeming the code with the original verifier: %v", err)
			}
			e.logs.addSecret(tok.AccessToken)
			e.logs.addSecret(tok.RefreshToken)
			if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
				t.Errorf("the token of the completed sign-in: %s", resp.Status)
			}
		})
	}
}

// wantGitHubDownPage checks the callback's answer while GitHub failed:
// 503 with GitHub's hint as Retry-After if it gave one, else 502.
func wantGitHubDownPage(t *testing.T, resp *http.Response, page string, cb *url.URL, hint time.Duration) {
	t.Helper()
	ra := resp.Header.Get("Retry-After")
	if hint == 0 {
		if resp.StatusCode != http.StatusBadGateway || ra != "" {
			t.Fatalf("callback while GitHub fails: %s (Retry-After %q), want 502 without: %s", resp.Status, ra, page)
		}
	} else {
		secs, err := strconv.Atoi(ra)
		if got := time.Duration(secs) * time.Second; resp.StatusCode != http.StatusServiceUnavailable || err != nil || got > hint || got < hint-time.Second {
			t.Fatalf("callback while GitHub is rate limited: %s (Retry-After %q), want 503 and %v: %s", resp.Status, ra, hint, page)
		}
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Errorf("the callback redirected to %s", loc)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(page, "GitHub is not answering right now; try signing in again in a minute.") {
		t.Errorf("the page does not say what happened: %s", page)
	}
	if strings.Contains(strings.ToLower(page), "token") || strings.Contains(page, cb.Query().Get("code")) || strings.Contains(page, cb.Query().Get("state")) {
		t.Errorf("the page mentions a token, GitHub's code or our state: %s", page)
	}
}

// toCallback plays the user from authURL through consent and GitHub, and
// stops where GitHub sends the browser back to the site's callback,
// returning that URL unvisited.
func (b *browser) toCallback(t *testing.T, authURL string) *url.URL {
	t.Helper()
	cb, err := b.Follow(t.Context(), authURL, func(u *url.URL) bool {
		return strings.HasPrefix(u.String(), b.e.site+"/callback?")
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cb.String(), b.e.site+"/callback?") {
		t.Fatalf("the browser went to %s, not the callback", cb)
	}
	return cb
}
