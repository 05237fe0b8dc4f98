package fakegithub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
)

// Consent page actions a Browser can click.
const (
	Approve = "approve"
	Deny    = "deny"
)

// consentAction is the form of the authorization server's consent page:
// the page that has it is a consent page.
const consentAction = `action="/consent"`

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// ConsentForm returns the hidden fields of the authorization server's
// consent page (its request parameters and CSRF token), and whether body
// is that page at all. The caller sets "action" to Approve or Deny and
// posts the form to /consent.
func ConsentForm(body string) (url.Values, bool) {
	if !strings.Contains(body, consentAction) {
		return nil, false
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(body, -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return form, true
}

// Browser is a user agent for tests of an authorization server that signs
// its users in through the stand-in: an HTTP client with a cookie jar of
// its own, signed in to the stand-in as one login, that follows no
// redirects on its own. It is safe for concurrent use; the authorization
// server remembers consent in its cookie jar.
type Browser struct {
	// Client is the browser's HTTP client; it does not follow redirects.
	Client *http.Client
	// Jar is Client's cookie jar.
	Jar *cookiejar.Jar
	// Consent is what the user clicks on a consent page: Approve (the
	// default, when empty) or Deny.
	Consent string

	github *url.URL
	pages  atomic.Int64
}

// NewBrowser returns a browser signed in as login ("" for nobody) to the
// stand-in at githubURL, making its requests with base's transport and
// timeout.
func NewBrowser(githubURL, login string, base *http.Client) *Browser {
	jar, _ := cookiejar.New(nil) // cookiejar.New never fails without options
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	gh, err := url.Parse(githubURL)
	if err != nil {
		panic(fmt.Sprintf("fakegithub: bad stand-in URL %q: %v", githubURL, err))
	}
	b := &Browser{Client: c, Jar: jar, github: gh}
	b.SignIn(login)
	return b
}

// SignIn makes login the user signed in to the stand-in in this browser
// ("" signs nobody in).
func (b *Browser) SignIn(login string) {
	if login == "" {
		b.Jar.SetCookies(b.github, []*http.Cookie{{Name: LoginCookie, Path: "/", MaxAge: -1}})
		return
	}
	b.Jar.SetCookies(b.github, []*http.Cookie{{Name: LoginCookie, Value: login, Path: "/"}})
}

// ConsentPages is how many consent pages the browser has been shown.
func (b *Browser) ConsentPages() int { return int(b.pages.Load()) }

// Authorize plays the user: it follows the authorization URL through the
// consent page (clicking b.Consent) and the stand-in's sign-in back to
// the client's redirect URI, and returns that final URL unvisited. authURL
// may also be a later hop (the stand-in's authorization URL, say). The
// stand-in redirects only to the authorization server's callback; a
// redirect from anywhere else to a host that is neither its own nor the
// stand-in's is to the client.
func (b *Browser) Authorize(ctx context.Context, authURL string) (*url.URL, error) {
	return b.Follow(ctx, authURL, nil)
}

// Follow is Authorize that also stops, unvisited, at the first URL stop
// (if not nil) reports true for: the authorization server's callback, say.
func (b *Browser) Follow(ctx context.Context, authURL string, stop func(*url.URL) bool) (*url.URL, error) {
	next, err := url.Parse(authURL)
	if err != nil {
		return nil, err
	}
	for range 10 {
		status, loc, body, err := b.do(ctx, http.MethodGet, next.String(), nil)
		if err != nil {
			return nil, err
		}
		if form, ok := ConsentForm(body); ok && status == http.StatusOK {
			b.pages.Add(1)
			action := b.Consent
			if action == "" {
				action = Approve
			}
			form.Set("action", action)
			if status, loc, body, err = b.do(ctx, http.MethodPost, next.ResolveReference(&url.URL{Path: "/consent"}).String(), form); err != nil {
				return nil, err
			}
			if status != http.StatusFound {
				return nil, fmt.Errorf("consent POST: %d %s: %.300s", status, http.StatusText(status), body)
			}
		}
		if status != http.StatusFound || loc == nil {
			return nil, fmt.Errorf("GET %s: %d %s: %.300s", next, status, http.StatusText(status), body)
		}
		toClient := next.Host != b.github.Host && loc.Host != next.Host && loc.Host != b.github.Host
		if toClient || (stop != nil && stop(loc)) {
			return loc, nil
		}
		next = loc
	}
	return nil, errors.New("too many redirects")
}

// do makes one request (a form POST if form is not nil) and returns the
// answer's status, Location (nil if none) and body.
func (b *Browser) do(ctx context.Context, method, target string, form url.Values) (int, *url.URL, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return 0, nil, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(resp.Body, 1<<20)); err != nil {
		return 0, nil, "", err
	}
	loc, err := resp.Location()
	if err != nil && !errors.Is(err, http.ErrNoLocation) {
		return 0, nil, "", err
	}
	return resp.StatusCode, loc, buf.String(), nil
}
