package oauth

import (
	"net/http"
	"net/url"
	"time"
)

// ErrorCode is the value of an OAuth error response's "error" member, or
// of the "error" parameter of an authorization error response.
type ErrorCode string

// The error codes this server sends, with the HTTP status each usually
// carries (see ErrorCode.Status).
const (
	// RFC 6749 sections 4.1.2.1 and 5.2.
	ErrInvalidRequest          ErrorCode = "invalid_request"           // 400
	ErrInvalidClient           ErrorCode = "invalid_client"            // 401
	ErrInvalidGrant            ErrorCode = "invalid_grant"             // 400
	ErrUnauthorizedClient      ErrorCode = "unauthorized_client"       // 400
	ErrUnsupportedGrantType    ErrorCode = "unsupported_grant_type"    // 400
	ErrUnsupportedResponseType ErrorCode = "unsupported_response_type" // 400
	ErrInvalidScope            ErrorCode = "invalid_scope"             // 400
	ErrAccessDenied            ErrorCode = "access_denied"             // 403
	ErrTemporarilyUnavailable  ErrorCode = "temporarily_unavailable"   // 503
	// RFC 8707 section 2.
	ErrInvalidTarget ErrorCode = "invalid_target" // 400
	// RFC 7591 section 3.2.2.
	ErrInvalidRedirectURI    ErrorCode = "invalid_redirect_uri"    // 400
	ErrInvalidClientMetadata ErrorCode = "invalid_client_metadata" // 400
	// RFC 6750 section 3.1.
	ErrInvalidToken      ErrorCode = "invalid_token"      // 401
	ErrInsufficientScope ErrorCode = "insufficient_scope" // 403
	// ErrNotFound is no RFC's: the protected resource metadata of a path
	// that is not a protected resource.
	ErrNotFound ErrorCode = "not_found" // 404
)

// Status is the HTTP status the RFCs pair with the code: 400 unless they
// say otherwise.
func (c ErrorCode) Status() int {
	switch c {
	case ErrInvalidClient, ErrInvalidToken:
		return http.StatusUnauthorized
	case ErrAccessDenied, ErrInsufficientScope:
		return http.StatusForbidden
	case ErrTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	case ErrNotFound:
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

// Error is a refusal of the authorization server or of the gate: the one
// shape every OAuth error of this package takes, whether it is written as
// a JSON body (RFC 6749 section 5.2), sent to a client's redirect URI
// (section 4.1.2.1) or shown on a page.
type Error struct {
	Code        ErrorCode
	Description string
	// Status is the HTTP status of the response; newError sets the
	// code's usual one.
	Status int
	// RetryAfter, if set, is when to come back; a 503 without it gets
	// the server's usual Retry-After.
	RetryAfter time.Duration
	// Challenge, if set, is the WWW-Authenticate header: an RFC 6750
	// Bearer challenge at the gate, a Basic one at the token endpoint.
	Challenge string
}

// newError is an error with the code's usual status.
func newError(code ErrorCode, description string) *Error {
	return &Error{Code: code, Description: description, Status: code.Status()}
}

// withStatus is a copy of e with another status.
func (e *Error) withStatus(status int) *Error {
	c := *e
	c.Status = status
	return &c
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Description }

// basicChallenge is the challenge to a client that tried HTTP Basic
// authentication and failed (RFC 6749 section 5.2).
const basicChallenge = `Basic realm="mcp_auth"`

// errorBody is the RFC 6749 section 5.2 error body.
type errorBody struct {
	Error       ErrorCode `json:"error"`
	Description string    `json:"error_description,omitempty"`
}

// Write sends e as a JSON error response, uncacheable like every response
// of the authorization server.
func (e *Error) Write(w http.ResponseWriter) {
	h := w.Header()
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", retryAfterValue(e.RetryAfter))
	}
	retryAfter503(w, e.Status)
	writeJSON(w, e.Status, errorBody{Error: e.Code, Description: e.Description})
}

// query is e as the parameters of an authorization error response (RFC
// 6749 section 4.1.2.1), to send to a client's redirect URI.
func (e *Error) query() url.Values {
	return url.Values{"error": {string(e.Code)}, "error_description": {e.Description}}
}

// errUnavailable is a failure of ours, most often of the store.
var errUnavailable = newError(ErrTemporarilyUnavailable, "the server could not complete the request; try again")
