package oauth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

func TestErrorCodeStatus(t *testing.T) {
	for code, want := range map[oauth.ErrorCode]int{
		oauth.ErrInvalidRequest:         http.StatusBadRequest,
		oauth.ErrInvalidGrant:           http.StatusBadRequest,
		oauth.ErrInvalidClientMetadata:  http.StatusBadRequest,
		oauth.ErrInvalidClient:          http.StatusUnauthorized,
		oauth.ErrInvalidToken:           http.StatusUnauthorized,
		oauth.ErrAccessDenied:           http.StatusForbidden,
		oauth.ErrInsufficientScope:      http.StatusForbidden,
		oauth.ErrTemporarilyUnavailable: http.StatusServiceUnavailable,
		oauth.ErrNotFound:               http.StatusNotFound,
	} {
		if got := code.Status(); got != want {
			t.Errorf("%s: status %d, want %d", code, got, want)
		}
	}
}

func TestErrorWrite(t *testing.T) {
	for _, tc := range []struct {
		name             string
		err              oauth.Error
		retryAfter, auth string
	}{
		{"plain", oauth.Error{Code: oauth.ErrInvalidGrant, Description: "no", Status: http.StatusBadRequest}, "", ""},
		{"503 gets the usual Retry-After", oauth.Error{Code: oauth.ErrTemporarilyUnavailable, Description: "later", Status: http.StatusServiceUnavailable}, "5", ""},
		{"its own Retry-After", oauth.Error{Code: oauth.ErrTemporarilyUnavailable, Description: "later", Status: http.StatusServiceUnavailable, RetryAfter: 1500 * time.Millisecond}, "2", ""},
		{"challenge", oauth.Error{Code: oauth.ErrInvalidClient, Description: "who", Status: http.StatusUnauthorized, Challenge: `Basic realm="mcp_auth"`}, "", `Basic realm="mcp_auth"`},
	} {
		rec := httptest.NewRecorder()
		tc.err.Write(rec)
		h := rec.Header()
		if rec.Code != tc.err.Status || h.Get("Cache-Control") != "no-store" || h.Get("Content-Type") != "application/json" ||
			h.Get("Retry-After") != tc.retryAfter || h.Get("WWW-Authenticate") != tc.auth {
			t.Errorf("%s: %d %v", tc.name, rec.Code, h)
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body) != 2 ||
			body["error"] != string(tc.err.Code) || body["error_description"] != tc.err.Description {
			t.Errorf("%s: body %s", tc.name, rec.Body)
		}
	}
}
