package oauth_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// TestUpstreamUnavailable: the error matches its sentinel however deeply
// it is wrapped, keeps its cause, and its retry hint is bounded to what a
// client can sensibly be told.
func TestUpstreamUnavailable(t *testing.T) {
	cause := errors.New("GitHub answered HTTP 502")
	err := fmt.Errorf("refreshing: %w", oauth.NewUpstreamUnavailable(cause, 30*time.Second))
	if !errors.Is(err, oauth.ErrUpstreamUnavailable) || !errors.Is(err, cause) || errors.Is(err, oauth.ErrUpstreamRevoked) {
		t.Errorf("%v does not match as it should", err)
	}
	if err.Error() != "refreshing: GitHub answered HTTP 502" {
		t.Errorf("message %q", err)
	}
	for _, tc := range []struct {
		err  error
		hint time.Duration
		ok   bool
	}{
		{err, 30 * time.Second, true},
		{oauth.NewUpstreamUnavailable(cause, time.Hour), 5 * time.Minute, true},
		{oauth.NewUpstreamUnavailable(cause, time.Millisecond), time.Second, true},
		{&oauth.UpstreamUnavailableError{RetryAfter: 2 * time.Hour}, 5 * time.Minute, true}, // built by hand, still bounded
		{oauth.NewUpstreamUnavailable(cause, 0), 0, false},
		{oauth.NewUpstreamUnavailable(cause, -time.Minute), 0, false},
		{cause, 0, false},
		{nil, 0, false},
	} {
		if hint, ok := oauth.UpstreamRetryAfter(tc.err); hint != tc.hint || ok != tc.ok {
			t.Errorf("UpstreamRetryAfter(%v) = %v %v, want %v %v", tc.err, hint, ok, tc.hint, tc.ok)
		}
	}
	if (&oauth.UpstreamUnavailableError{}).Error() == "" {
		t.Error("an error without a cause has no message")
	}
}
