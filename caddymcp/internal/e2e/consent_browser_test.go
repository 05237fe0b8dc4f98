package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// The consent page in a real Chromium, against the double-clickjacking of
// issue 14 (finding 12): framing is forbidden, but a pop-under, or a page
// swapped in under the pointer between the two clicks of a double-click,
// could land the second click on Approve. The page's script makes Approve
// ignore a click until the pointer has come onto it from elsewhere on the
// visible, focused page; these tests drive Chromium's real input pipeline
// (Input.dispatchMouseEvent / dispatchKeyEvent: trusted events, hit-tested
// and routed like a user's) and watch what the browser sends.
//
// Chromium is Debian's package. The tests fail when it is missing rather
// than skip: a skipped browser test proves nothing and hides the gap.

// chromium returns the browser binary or fails saying how to install it.
func chromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the consent page's browser tests need Chromium, and there is no `chromium` on PATH (%v): "+
			"install Debian's package with `apt-get update && apt-get install -y chromium` (.ci/run does this when it is missing)", err)
	}
	return p
}

// caddySPKIs is how Chromium is made to trust Caddy's local CA: the
// SHA-256 of the public keys of its root and intermediate, in the form of
// --ignore-certificate-errors-spki-list. Chromium lets a chain through
// only if a certificate it was sent carries one of these keys: that is
// the intermediate (Caddy does not send the root; the root's key alone
// gives ERR_CERT_AUTHORITY_INVALID), so only certificates this CA issued
// pass, unlike with --ignore-certificate-errors. Chromium has no flag to
// add a root, and an NSS database would need certutil on top.
func caddySPKIs(t *testing.T, e *env) string {
	t.Helper()
	var hashes []string
	for _, name := range []string{"root.crt", "intermediate.crt"} {
		raw, err := os.ReadFile(filepath.Join(e.dir, "caddy", "pki", "authorities", "local", name))
		if err != nil {
			t.Fatalf("reading Caddy's local CA: %v", err)
		}
		block, _ := pem.Decode(raw)
		if block == nil {
			t.Fatalf("Caddy's %s is not PEM", name)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("Caddy's %s: %v", name, err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		hashes = append(hashes, base64.StdEncoding.EncodeToString(sum[:]))
	}
	return strings.Join(hashes, ",")
}

// browserTimeout bounds each browser test as a whole; every wait below
// is for a condition, under this deadline, never for a time.
const browserTimeout = 3 * time.Minute

// newChromium starts a headless Chromium that trusts e's local CA and
// returns a context for its first tab.
func newChromium(t *testing.T, e *env) context.Context {
	t.Helper()
	path := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// Tests run as root, and Chromium's sandbox refuses root.
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("ignore-certificate-errors-spki-list", caddySPKIs(t, e)),
		chromedp.WindowSize(1000, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	// Start the browser now, so a browser that cannot start fails here.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting Chromium (%s): %v", path, err)
	}
	return bctx
}

// tab is one browser tab and what it saw.
type tab struct {
	t    *testing.T
	ctx  context.Context
	site string
	mu   sync.Mutex
	// problems are console errors, uncaught exceptions and browser log
	// errors (CSP violations among them).
	problems []string
	// consentPosts counts requests to /consent.
	consentPosts int
}

// newTab opens a tab in the browser of parent and starts recording it.
// With no options the tab has its own browser context (cookies, and so
// approvals, of its own) and its own window, so that it is visible.
func newTab(t *testing.T, parent context.Context, e *env, opts ...chromedp.ContextOption) *tab {
	t.Helper()
	if len(opts) == 0 {
		opts = []chromedp.ContextOption{chromedp.WithNewBrowserContext()}
	}
	ctx, cancel := chromedp.NewContext(parent, opts...)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx, site: e.site}
	err := chromedp.Listen(ctx, func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				tb.problems = append(tb.problems, fmt.Sprintf("console.%s %s", ev.Type, remoteArgs(ev.Args)))
			}
		case *runtime.EventExceptionThrown:
			tb.problems = append(tb.problems, "exception: "+ev.ExceptionDetails.Text+exceptionDescription(ev.ExceptionDetails))
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError || ev.Entry.Level == cdplog.EntryLevelWarning {
				tb.problems = append(tb.problems, fmt.Sprintf("browser log (%s, %s): %s %s", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		case *network.EventRequestWillBeSent:
			if u, err := url.Parse(ev.Request.URL); err == nil && u.Scheme+"://"+u.Host == e.site && u.Path == "/consent" {
				tb.consentPosts++
			}
		}
	})
	if err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return tb
}

func remoteArgs(args []*runtime.RemoteObject) string {
	var parts []string
	for _, a := range args {
		if len(a.Value) > 0 {
			parts = append(parts, string(a.Value))
		} else {
			parts = append(parts, a.Description)
		}
	}
	return strings.Join(parts, " ")
}

func exceptionDescription(d *runtime.ExceptionDetails) string {
	if d.Exception != nil {
		return " " + d.Exception.Description
	}
	return ""
}

// seen returns what the tab recorded so far.
func (tb *tab) seen() (problems []string, consentPosts int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.problems...), tb.consentPosts
}

// checkNoProblems fails the test on any console error, exception or CSP
// violation the tab saw.
func (tb *tab) checkNoProblems() {
	tb.t.Helper()
	problems, _ := tb.seen()
	for _, p := range problems {
		tb.t.Errorf("the browser reported: %s", p)
	}
}

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression in the page (DevTools
// evaluation, which the page's CSP does not govern: it reads state, it is
// not the page's own script).
func eval[T any](tb *tab, expr string) (T, error) {
	return chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
}

// waitFor polls cond until it holds, or fails when the tab's deadline
// passes. cond may fail the test itself (a navigation that must not
// happen).
func (tb *tab) waitFor(what string, cond func() bool) {
	tb.t.Helper()
	for !cond() {
		select {
		case <-tb.ctx.Done():
			tb.t.Fatalf("waiting for %s: %v", what, tb.ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// point is a position in the page's viewport, in CSS pixels.
type point struct{ X, Y float64 }

// approveBox returns the Approve button's centre, and a point on the page
// well above it (on the page's text, not on any control).
func (tb *tab) approveBox() (centre, outside point) {
	tb.t.Helper()
	var r struct{ X, Y, W, H float64 }
	raw, err := eval[[]byte](tb, `JSON.stringify((()=>{const r=document.getElementById("approve").getBoundingClientRect();return {X:r.x,Y:r.y,W:r.width,H:r.height}})())`)
	if err == nil {
		var s string
		if err = json.Unmarshal(raw, &s); err == nil {
			err = json.Unmarshal([]byte(s), &r)
		}
	}
	if err != nil || r.W == 0 || r.H == 0 {
		tb.t.Fatalf("locating Approve: %v %+v", err, r)
	}
	return point{r.X + r.W/2, r.Y + r.H/2}, point{r.X + r.W/2, r.Y - 60}
}

func mouse(typ input.DispatchMouseEventType, p point, opts ...chromedp.MouseOption) chromedp.Action[chromedp.Void] {
	return chromedp.MouseEvent(typ, p.X, p.Y, opts...)
}

// click presses and releases the left button at p, with no move first:
// the pointer is wherever it was, as in the second click of a double-
// click that a swapped window receives.
func click(p point) []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{
		mouse(chromedp.MousePressed, p, chromedp.ButtonLeft, chromedp.ClickCount(1)),
		mouse(chromedp.MouseReleased, p, chromedp.ButtonLeft, chromedp.ClickCount(1)),
	}
}

// clientCallback is the MCP client's redirect URI: a loopback server that
// records where the browser comes back.
type clientCallback struct {
	url  string
	hits chan url.Values
}

func startClientCallback(t *testing.T) *clientCallback {
	t.Helper()
	c := &clientCallback{hits: make(chan url.Values, 10)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cb":
			c.hits <- r.URL.Query()
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<!doctype html><title>back at the client</title><p>Signed in.</p>")
		case "/favicon.ico":
			// Chromium asks every page's site for one; a 404 would be a
			// console error of the client's, not of the consent page.
			w.WriteHeader(http.StatusNoContent)
		case "/frame":
			// An attacker's page framing the consent page.
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = framePage.Execute(w, r.URL.Query().Get("u"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL + "/cb"
	return c
}

// framePage frames a URL and, once the frame has loaded (an error page
// included), says so in its title.
var framePage = template.Must(template.New("frame").Parse(`<!doctype html><title>framing</title>
<iframe id="victim" src="{{.}}" width="900" height="700"></iframe>
<script>document.getElementById("victim").addEventListener("load", function () { document.title = "frame loaded"; });</script>`))

// browserClient registers a public client whose redirect URI is cb, and
// returns it with a fresh authorization request of it. A public loopback
// client is never spared the consent page, so every request shows it.
func browserClient(t *testing.T, e *env, cb *clientCallback) *oauthClient {
	t.Helper()
	return e.registerAs(t, `{"client_name":"Browser Test Client","redirect_uris":["`+cb.url+`"],"token_endpoint_auth_method":"none"}`)
}

// request is one authorization request and its PKCE verifier.
type request struct {
	url, state, verifier string
}

func (c *oauthClient) newRequest() request {
	r := request{state: oauth2.GenerateVerifier()[:16], verifier: oauth2.GenerateVerifier()}
	r.url = c.config().AuthCodeURL(r.state, oauth2.S256ChallengeOption(r.verifier),
		oauth2.SetAuthURLParam("resource", c.e.site+"/mcp"))
	c.e.logs.addSecret(r.verifier)
	return r
}

// openConsent navigates tb to the consent page of req and checks what the
// browser received: the page, unframeable, with Approve held back by the
// script from the start.
func (tb *tab) openConsent(req request) {
	tb.t.Helper()
	resp, err := chromedp.Run(tb.ctx, chromedp.NavigateResponse(req.url))
	if err != nil {
		tb.t.Fatalf("opening the consent page: %v", err)
	}
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.URL, tb.site+"/authorize?") {
		tb.t.Fatalf("want the consent page, got %d %s", resp.Status, resp.URL)
	}
	headers := map[string]string{}
	for k, v := range resp.Headers {
		if s, ok := v.(string); ok {
			headers[strings.ToLower(k)] = s
		}
	}
	if got := headers["x-frame-options"]; got != "DENY" {
		tb.t.Errorf("X-Frame-Options = %q, want DENY", got)
	}
	if csp := headers["content-security-policy"]; !strings.Contains(csp, "frame-ancestors 'none'") {
		tb.t.Errorf("Content-Security-Policy %q lacks frame-ancestors 'none'", csp)
	}
	held, err := eval[string](tb, `String(document.getElementById("approve").getAttribute("aria-disabled"))`)
	if err != nil || held != "true" {
		problems, _ := tb.seen()
		tb.t.Fatalf("after load Approve's aria-disabled is %q (%v): the guard did not run; the browser reported %q", held, err, problems)
	}
}

// expectRefused waits until the page shows that it ignored a click on
// Approve (its hint appears), failing at once if the browser submits the
// form instead.
func (tb *tab) expectRefused(what string) {
	tb.t.Helper()
	tb.waitFor("the page to ignore "+what, func() bool {
		if _, posts := tb.seen(); posts > 0 {
			tb.t.Fatalf("%s submitted the consent form", what)
		}
		hidden, err := eval[bool](tb, `document.getElementById("approve-hint").hidden`)
		return err == nil && !hidden
	})
	// The refusal is synchronous with the click event, so once the hint
	// shows, a submission would already have started.
	if _, posts := tb.seen(); posts > 0 {
		tb.t.Fatalf("%s submitted the consent form", what)
	}
	loc, err := chromedp.Run(tb.ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, tb.site+"/authorize?") {
		tb.t.Fatalf("after %s the browser is at %q (%v), want still the consent page", what, loc, err)
	}
}

// waitArmed waits until the guard lets Approve take clicks.
func (tb *tab) waitArmed() {
	tb.t.Helper()
	tb.waitFor("Approve to be armed", func() bool {
		armed, err := eval[bool](tb, `!document.getElementById("approve").hasAttribute("aria-disabled")`)
		return err == nil && armed
	})
}

// expectApproved waits until the browser is back at the client with a
// code for req, and trades it, as the client would.
func expectApproved(t *testing.T, tb *tab, c *oauthClient, cb *clientCallback, req request) {
	t.Helper()
	var q url.Values
	tb.waitFor("the browser to come back to the client", func() bool {
		select {
		case q = <-cb.hits:
			return true
		default:
		}
		// Fail at once, not at the deadline, if the page held the
		// click back (while the page is still there to ask).
		refused, err := eval[bool](tb, `location.pathname === "/authorize" && !document.getElementById("approve-hint").hidden`)
		if err == nil && refused {
			t.Fatal("the consent page ignored the click")
		}
		return false
	})
	if q.Get("error") != "" || q.Get("code") == "" || q.Get("state") != req.state {
		t.Fatalf("the client got %v, want a code for state %q", q, req.state)
	}
	if _, posts := tb.seen(); posts != 1 {
		t.Errorf("the browser sent %d consent requests, want the one approval", posts)
	}
	if tok := c.exchange(t, q, req.verifier, url.Values{"resource": {c.e.site + "/mcp"}}); tok.AccessToken == "" {
		t.Error("no access token for the approved code")
	}
}

// TestConsentBrowserClickGate: in Chromium, a click on Approve right after
// the page loads, or after the pointer only jittered on the button, does
// nothing; a click after the pointer came onto Approve from the page
// approves, and the browser goes through the GitHub stand-in back to the
// client; so does a tap after a tap elsewhere on the page; a page that was
// hidden behind another tab is disarmed; Tab and Enter approve without
// any pointer. No step logs a
// console error, an exception or a CSP violation (a CSP that did not
// allow the guard would leave Approve unguarded, and say so here).
func TestConsentBrowserClickGate(t *testing.T) {
	e := start(t, options{})
	e.gh.SetDefaultLogin("alice")
	browser := newChromium(t, e)
	// Each case has a client of its own, so that where the browser comes
	// back to belongs to that case alone.
	client := func(t *testing.T) (*oauthClient, *clientCallback) {
		cb := startClientCallback(t)
		return browserClient(t, e, cb), cb
	}

	t.Run("click at once after load", func(t *testing.T) {
		c, _ := client(t)
		tb := newTab(t, browser, e)
		tb.openConsent(c.newRequest())
		centre, _ := tb.approveBox()
		tb.do(click(centre)...)
		tb.expectRefused("a click right after load")
		tb.checkNoProblems()
	})

	t.Run("pointer jitter on Approve", func(t *testing.T) {
		c, _ := client(t)
		// A pointer that was resting where Approve appears moves a
		// little between the two clicks of a double-click: that must
		// not count as coming onto the button.
		tb := newTab(t, browser, e)
		tb.openConsent(c.newRequest())
		centre, _ := tb.approveBox()
		for _, dx := range []float64{0, 1, 2, 1} {
			tb.do(mouse(chromedp.MouseMoved, point{centre.X + dx, centre.Y + dx/2}))
		}
		tb.do(click(centre)...)
		tb.expectRefused("a click after jitter on Approve")
		tb.checkNoProblems()
	})

	t.Run("pointer comes onto Approve, then click", func(t *testing.T) {
		c, cb := client(t)
		tb := newTab(t, browser, e)
		req := c.newRequest()
		tb.openConsent(req)
		centre, outside := tb.approveBox()
		// First the refused click, then the user's deliberate one: the
		// page recovers from a refusal.
		tb.do(click(centre)...)
		tb.expectRefused("a click right after load")
		tb.do(mouse(chromedp.MouseMoved, outside), mouse(chromedp.MouseMoved, centre))
		tb.waitArmed()
		tb.do(click(centre)...)
		expectApproved(t, tb, c, cb, req)
		tb.checkNoProblems()
	})

	t.Run("another tab in front disarms", func(t *testing.T) {
		c, cb := client(t)
		// The pop-under: the user had the pointer on Approve, another
		// page comes in front (the page is hidden), goes away, and a
		// click arrives at the same spot with no move in between.
		tb := newTab(t, browser, e)
		req := c.newRequest()
		tb.openConsent(req)
		centre, outside := tb.approveBox()
		tb.do(mouse(chromedp.MouseMoved, outside), mouse(chromedp.MouseMoved, centre))
		tb.waitArmed()
		// A tab in the same window hides this one, as Chromium does
		// for any tab that is not in front.
		front := newTab(t, tb.ctx, e, chromedp.WithNewWindow(false))
		front.do(chromedp.Navigate("about:blank"))
		tb.waitFor("the consent page to be hidden", func() bool {
			hidden, err := eval[bool](tb, `document.visibilityState === "hidden"`)
			return err == nil && hidden
		})
		// visibilitychange runs in the task that hides the page, so
		// the guard has had its say.
		if held, err := eval[string](tb, `String(document.getElementById("approve").getAttribute("aria-disabled"))`); err != nil || held != "true" {
			t.Fatalf("hidden, Approve's aria-disabled is %q (%v): still armed", held, err)
		}
		if _, err := chromedp.CallBrowser(tb.ctx, target.CloseTarget, target.CloseTargetParams{TargetID: chromedp.FromContext(front.ctx).Target.TargetID}); err != nil {
			t.Fatalf("closing the tab in front: %v", err)
		}
		if _, err := chromedp.CallBrowser(tb.ctx, target.ActivateTarget, target.ActivateTargetParams{TargetID: chromedp.FromContext(tb.ctx).Target.TargetID}); err != nil {
			t.Fatalf("bringing the consent page back: %v", err)
		}
		tb.waitFor("the consent page to be visible again", func() bool {
			visible, err := eval[bool](tb, `document.visibilityState === "visible" && document.hasFocus()`)
			return err == nil && visible
		})
		tb.do(click(centre)...)
		tb.expectRefused("a click after the page was hidden")
		tb.do(mouse(chromedp.MouseMoved, outside), mouse(chromedp.MouseMoved, centre))
		tb.waitArmed()
		tb.do(click(centre)...)
		expectApproved(t, tb, c, cb, req)
		tb.checkNoProblems()
	})

	t.Run("touch", func(t *testing.T) {
		// A touch has no hover: a tap on the page first stands for the
		// pointer coming onto Approve, so a lone tap (the second of a
		// double-tap) does nothing and tap elsewhere, tap Approve works.
		c, cb := client(t)
		tb := newTab(t, browser, e)
		req := c.newRequest()
		tb.openConsent(req)
		centre, outside := tb.approveBox()
		tb.do(chromedp.TapXY(centre.X, centre.Y))
		tb.expectRefused("a lone tap")
		tb.do(chromedp.TapXY(outside.X, outside.Y), chromedp.TapXY(centre.X, centre.Y))
		expectApproved(t, tb, c, cb, req)
		tb.checkNoProblems()
	})

	t.Run("keyboard", func(t *testing.T) {
		c, cb := client(t)
		tb := newTab(t, browser, e)
		req := c.newRequest()
		tb.openConsent(req)
		// Nothing focuses Approve by default; Tab does, and Enter
		// activates it with no pointer at all.
		tb.do(chromedp.KeyEvent("\t"))
		tb.waitFor("Tab to focus Approve", func() bool {
			id, err := eval[string](tb, `document.activeElement ? document.activeElement.id : ""`)
			return err == nil && id == "approve"
		})
		tb.do(chromedp.KeyEvent("\r"))
		expectApproved(t, tb, c, cb, req)
		tb.checkNoProblems()
	})
}

// TestConsentNoScriptApproves: a client without JavaScript (here Go's
// HTTP client, reading the form and POSTing it as is, as every other
// end-to-end test does) still approves: the guard lives only in the script.
func TestConsentNoScriptApproves(t *testing.T) {
	e := start(t, options{})
	cb := startClientCallback(t)
	c := browserClient(t, e, cb)
	b := e.browser("alice")
	req := c.newRequest()
	final, err := b.Authorize(context.Background(), req.url)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	if b.ConsentPages() != 1 {
		t.Fatalf("%d consent pages shown, want the one approved by the plain POST", b.ConsentPages())
	}
	q := final.Query()
	if q.Get("code") == "" || q.Get("state") != req.state {
		t.Fatalf("back at the client with %v, want a code", q)
	}
	if tok := c.exchange(t, q, req.verifier, url.Values{"resource": {e.site + "/mcp"}}); tok.AccessToken == "" {
		t.Error("no access token for the approved code")
	}
}

// TestConsentBrowserNoFraming: an attacker's page (another origin) that
// frames the consent page gets nothing: Chromium renders an error page in
// the frame instead, for frame-ancestors 'none'.
func TestConsentBrowserNoFraming(t *testing.T) {
	e := start(t, options{})
	e.gh.SetDefaultLogin("alice")
	cb := startClientCallback(t)
	c := browserClient(t, e, cb)
	browser := newChromium(t, e)
	tb := newTab(t, browser, e)
	attacker := strings.TrimSuffix(cb.url, "/cb") + "/frame?u=" + url.QueryEscape(c.newRequest().url)
	tb.do(chromedp.Navigate(attacker))
	tb.waitFor("the frame to load", func() bool {
		title, err := chromedp.Run(tb.ctx, chromedp.Title())
		return err == nil && title == "frame loaded"
	})
	// What the frame holds: Chromium puts a frame of another site in a
	// target of its own (site isolation), so attach to it and look.
	targets, err := chromedp.Targets(tb.ctx)
	if err != nil {
		t.Fatal(err)
	}
	frames := 0
	for _, ti := range targets {
		if ti.Type != "iframe" || !strings.HasPrefix(ti.URL, e.site) {
			continue
		}
		frames++
		fctx, cancel := chromedp.NewContext(tb.ctx, chromedp.WithTargetID(ti.TargetID), chromedp.WithDetachOnCancel())
		inside, err := chromedp.Run(fctx, chromedp.Evaluate[string](`location.href + (document.getElementById("approve") ? " with an Approve button" : "")`))
		cancel()
		if err != nil {
			t.Fatalf("looking into the frame: %v", err)
		}
		if !strings.HasPrefix(inside, "chrome-error:") || strings.Contains(inside, "Approve") {
			t.Errorf("the frame holds %s, want Chromium's error page", inside)
		}
	}
	if frames != 1 {
		t.Fatalf("found %d frames of the consent page's site, want the attacker's one: %+v", frames, targets)
	}
	// And why: the CSP, which modern browsers obey (X-Frame-Options
	// DENY, checked with the other headers in openConsent, is for older
	// ones, and would block with a message of its own).
	var refusal string
	tb.waitFor("Chromium to report the refused frame", func() bool {
		problems, _ := tb.seen()
		for _, p := range problems {
			if strings.Contains(p, "frame") && strings.Contains(p, strings.TrimPrefix(e.site, "https://")) {
				refusal = p
				return true
			}
		}
		return false
	})
	if !strings.Contains(refusal, "frame-ancestors 'none'") {
		t.Errorf("Chromium refused the frame, but not for frame-ancestors 'none': %s", refusal)
	}
}
