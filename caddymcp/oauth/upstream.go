package oauth

import (
	"errors"
	"strconv"
	"time"
)

// ErrUpstreamUnavailable means the upstream (GitHub) could not be asked:
// it did not answer in time, could not be reached, failed (5xx) or rate
// limited us. It says nothing about the user, so nothing may be revoked
// or refused on its strength: the same request may work in a minute.
//
// An IdentityProvider returns it as an *UpstreamUnavailableError, which
// matches it with errors.Is and may carry a retry hint.
var ErrUpstreamUnavailable = errors.New("the upstream cannot be asked right now")

// Bounds of a retry hint. GitHub's primary rate limit resets hourly: a
// client told to wait an hour would look broken, so it is told to come
// back within minutes and is told again if the limit still holds.
const (
	minRetryAfter = time.Second
	maxRetryAfter = 5 * time.Minute
)

// UpstreamUnavailableError is an ErrUpstreamUnavailable with its cause and,
// when the upstream said, when to try again.
type UpstreamUnavailableError struct {
	// RetryAfter is when the upstream said to try again (its Retry-After,
	// or the reset of its rate limit), zero if it did not say.
	// UpstreamRetryAfter reads it bounded.
	RetryAfter time.Duration
	// Err is the cause. It must hold no secret: it is logged.
	Err error
}

// NewUpstreamUnavailable returns an *UpstreamUnavailableError for cause
// with retryAfter bounded to what a client is told (zero stays zero).
func NewUpstreamUnavailable(cause error, retryAfter time.Duration) *UpstreamUnavailableError {
	return &UpstreamUnavailableError{RetryAfter: boundRetryAfter(retryAfter), Err: cause}
}

func (e *UpstreamUnavailableError) Error() string {
	if e.Err == nil {
		return ErrUpstreamUnavailable.Error()
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *UpstreamUnavailableError) Unwrap() error { return e.Err }

// Is makes every UpstreamUnavailableError match ErrUpstreamUnavailable.
func (e *UpstreamUnavailableError) Is(target error) bool { return target == ErrUpstreamUnavailable }

// UpstreamRetryAfter returns the retry hint err carries, between one
// second and five minutes, and whether it carries one: false for an
// error that is not an UpstreamUnavailableError or whose upstream did not
// say when to come back (a 5xx, a timeout, a refused connection).
func UpstreamRetryAfter(err error) (time.Duration, bool) {
	var ue *UpstreamUnavailableError
	if !errors.As(err, &ue) || ue.RetryAfter <= 0 {
		return 0, false
	}
	return boundRetryAfter(ue.RetryAfter), true
}

func boundRetryAfter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return min(max(d, minRetryAfter), maxRetryAfter)
}

// retryAfterValue is d as the value of a Retry-After header: whole
// seconds, rounded up, so a client never comes back early.
func retryAfterValue(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
