package fakegithub

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// A Fault makes the stand-in answer the way GitHub does when it is in
// trouble, so tests can check that nobody is logged out by it. Set one
// with SetFault; the zero Fault is a healthy GitHub.
//
// Faults touch the REST API and the OAuth token endpoint only, never the
// authorize page: a browser that could not reach GitHub's sign-in page
// would never come back to the server under test, so there is nothing to
// test there.
type Fault struct {
	// On says which endpoints misbehave; the zero value is both.
	On FaultTarget
	// Path, if set, limits the fault to the API calls of one path in its
	// github.com shape, such as "/user/teams": GitHub failing halfway
	// through reading someone's memberships. The token endpoint is then
	// spared.
	Path string
	// Delay holds every answer in scope for this long before it is
	// written, failed or not: a slow GitHub. A client that gives up
	// earlier ends the wait.
	Delay time.Duration
	// Fail is how answers in scope fail; NoFailure answers normally.
	Fail FaultKind
	// Status is the status of a ServerError, 500 to 599; 502 if zero.
	Status int
	// RetryAfter is the Retry-After of a SecondaryRateLimit or
	// TooManyRequests (in whole seconds; 60 if zero), and how far in the
	// future the X-RateLimit-Reset of a PrimaryRateLimit lies (if zero,
	// the end of the caller's hour-long window, as on GitHub).
	RetryAfter time.Duration
}

// FaultTarget names the endpoints a Fault affects.
type FaultTarget int

const (
	// OnAll faults the REST API and the OAuth token endpoint.
	OnAll FaultTarget = iota
	// OnAPI faults the REST API only: the code exchange still works, the
	// reading of the user that follows it does not.
	OnAPI
	// OnTokenEndpoint faults POST /login/oauth/access_token only.
	OnTokenEndpoint
)

// FaultKind is how a faulted answer fails.
type FaultKind int

const (
	// NoFailure answers normally (after the Fault's Delay).
	NoFailure FaultKind = iota
	// ServerError answers Status with an HTML page, as GitHub's edge
	// does when the service behind it is down.
	ServerError
	// PrimaryRateLimit answers as GitHub does when the hourly limit is
	// used up: 403, X-RateLimit-Remaining: 0, X-RateLimit-Reset, and
	// "API rate limit exceeded for ...". On the API it comes after
	// authentication, as on GitHub, so a revoked token still gets 401.
	PrimaryRateLimit
	// SecondaryRateLimit answers as GitHub's abuse protection does: 403
	// with Retry-After and "You have exceeded a secondary rate limit".
	// After authentication, like PrimaryRateLimit.
	SecondaryRateLimit
	// TooManyRequests answers 429 with Retry-After, the other status
	// GitHub documents for its rate limits. After authentication.
	TooManyRequests
)

// docsSecondaryRateLimit is the documentation_url GitHub sends with a
// secondary rate limit; go-github recognises one by its suffix.
const docsSecondaryRateLimit = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"

// SetFault makes the stand-in misbehave as f says, until the next call;
// SetFault(Fault{}) makes it healthy again. It replaces SetRateLimited's
// setting too.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// faultFor returns the fault that applies to the endpoints target (OnAPI
// or OnTokenEndpoint) at path (root-shaped; "" for the token endpoint),
// or the zero Fault.
func (s *Server) faultFor(target FaultTarget, path string) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault
	if (f.On != OnAll && f.On != target) || (f.Path != "" && f.Path != path) {
		return Fault{}
	}
	return f
}

// wait holds the answer for f.Delay. It reports false if the client went
// away first (or the server was closed), when there is no one to answer.
func (f Fault) wait(r *http.Request) bool {
	if f.Delay <= 0 {
		return true
	}
	t := time.NewTimer(f.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// retryAfterSeconds is f's Retry-After in whole seconds, at least 1.
func (f Fault) retryAfterSeconds() int {
	if f.RetryAfter <= 0 {
		return 60
	}
	return max(1, int((f.RetryAfter+time.Second-1)/time.Second))
}

// writeFailure answers as f.Fail says, for the failures that need no rate
// window: ServerError, SecondaryRateLimit and TooManyRequests. It reports
// whether it wrote an answer. PrimaryRateLimit is takeRate's.
func (s *Server) writeFailure(w http.ResponseWriter, f Fault) bool {
	h := w.Header()
	switch f.Fail {
	case ServerError:
		status := f.Status
		if status < 500 || status > 599 {
			status = http.StatusBadGateway
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>Unicorn! &middot; GitHub</title></head>"+
			"<body><p>%d: No server is currently available to service your request.</p></body></html>\n", status)
		return true
	case SecondaryRateLimit, TooManyRequests:
		status := http.StatusForbidden
		if f.Fail == TooManyRequests {
			status = http.StatusTooManyRequests
		}
		h.Set("Retry-After", strconv.Itoa(f.retryAfterSeconds()))
		msg := "You have exceeded a secondary rate limit. Please wait a few minutes before you try again." +
			" If you reach out to GitHub Support for help, please include the request ID " + h.Get("X-GitHub-Request-Id") + "."
		writeJSON(w, status, apiError{Message: msg, DocumentationURL: docsSecondaryRateLimit, Status: strconv.Itoa(status)})
		return true
	}
	return false
}
