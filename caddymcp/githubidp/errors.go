package githubidp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v75/github"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// secondaryWait is how long to wait after a rate limit that did not say:
// GitHub's documentation asks for at least a minute.
const secondaryWait = time.Minute

// describe turns an error from a call to GitHub into one that says what we
// were doing, sorted three ways for the authorization server:
//
//   - GitHub refused the user's token (401): oauth.ErrUpstreamRevoked, the
//     only failure that ends a grant;
//   - GitHub could not be asked (too slow, unreachable, 5xx, rate limits):
//     an *oauth.UpstreamUnavailableError, with GitHub's retry hint;
//   - GitHub answered no (a bad code, a 403 or 404 of another kind): a
//     plain error.
//
// It never repeats a token: x/oauth2's RetrieveError carries the raw
// response body, which we drop in favour of its error code.
func describe(doing string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		if transient(re.Response, re.Body) {
			return unavailable(re.Response, fmt.Errorf("githubidp: GitHub answered HTTP %d while %s", re.Response.StatusCode, doing))
		}
		if re.ErrorCode != "" {
			return fmt.Errorf("githubidp: GitHub refused %s: %s", doing, re.ErrorCode)
		}
		return fmt.Errorf("githubidp: GitHub refused %s with HTTP %d", doing, re.Response.StatusCode)
	}
	var rl *github.RateLimitError
	if errors.As(err, &rl) {
		return oauth.NewUpstreamUnavailable(fmt.Errorf("githubidp: GitHub rate limit reached while %s", doing), max(time.Until(rl.Rate.Reset.Time), time.Second))
	}
	var al *github.AbuseRateLimitError
	if errors.As(err, &al) {
		wait := secondaryWait
		if al.RetryAfter != nil {
			wait = *al.RetryAfter
		}
		return oauth.NewUpstreamUnavailable(fmt.Errorf("githubidp: GitHub secondary rate limit reached while %s", doing), wait)
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		status := er.Response.StatusCode
		switch {
		case status == http.StatusUnauthorized:
			return fmt.Errorf("githubidp: GitHub refused %s: %w", doing, oauth.ErrUpstreamRevoked)
		case transient(er.Response, []byte(er.Message)):
			return unavailable(er.Response, fmt.Errorf("githubidp: GitHub answered HTTP %d while %s", status, doing))
		}
		return fmt.Errorf("githubidp: GitHub refused %s with HTTP %d: %s", doing, status, er.Message)
	}
	// go-github returns the context's error rather than the url.Error
	// when the deadline passed, so this comes first.
	if errors.Is(err, context.DeadlineExceeded) {
		return oauth.NewUpstreamUnavailable(fmt.Errorf("githubidp: GitHub did not answer in time while %s", doing), 0)
	}
	if errors.Is(err, context.Canceled) {
		// The request we serve was given up; whatever GitHub would have
		// said is unknown, so it must not count against the user.
		return oauth.NewUpstreamUnavailable(fmt.Errorf("githubidp: cancelled while %s", doing), 0)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The URL of a GitHub call carries no secret, but keep the
		// message short and about the cause.
		return oauth.NewUpstreamUnavailable(fmt.Errorf("githubidp: could not reach GitHub while %s: %v", doing, ue.Err), 0)
	}
	return fmt.Errorf("githubidp: %s: %v", doing, err)
}

// transient reports whether GitHub's answer says "not now" rather than
// "no": a server error, or one of its rate limits, which come as 429 or
// as 403 with X-RateLimit-Remaining: 0, a Retry-After, or (a secondary
// limit without Retry-After) only a message saying so.
func transient(resp *http.Response, body []byte) bool {
	switch status := resp.StatusCode; {
	case status >= 500, status == http.StatusTooManyRequests:
		return true
	case status == http.StatusForbidden:
		return resp.Header.Get("X-RateLimit-Remaining") == "0" || resp.Header.Get("Retry-After") != "" ||
			bytes.Contains(bytes.ToLower(body), []byte("rate limit"))
	}
	return false
}

// unavailable wraps cause as GitHub being unavailable, with the retry hint
// its answer resp carries.
func unavailable(resp *http.Response, cause error) error {
	return oauth.NewUpstreamUnavailable(cause, retryHint(resp, time.Now()))
}

// retryHint reads when GitHub said to come back: its Retry-After (seconds
// or a date), else the reset of an exhausted primary rate limit. A rate
// limit that did not say gets a minute, one whose time has passed (clocks
// differ) a second; a server error that did not say, zero: unknown.
func retryHint(resp *http.Response, now time.Time) time.Duration {
	d := secondaryWait
	if resp.StatusCode >= 500 {
		d = 0
	}
	h := resp.Header
	if ra := strings.TrimSpace(h.Get("Retry-After")); ra != "" {
		if secs, err := strconv.ParseInt(ra, 10, 32); err == nil && secs >= 0 {
			d = time.Duration(secs) * time.Second
		} else if at, err := http.ParseTime(ra); err == nil {
			d = at.Sub(now)
		}
	} else if h.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			d = time.Unix(reset, 0).Sub(now)
		}
	}
	if resp.StatusCode < 500 {
		d = max(d, time.Second)
	}
	return d
}
