package oauth

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// challengeSyntax is one RFC 6750 Bearer challenge and nothing else:
// auth-params whose values are quoted-strings without escapes (the gate
// writes none), separated by commas.
var challengeSyntax = regexp.MustCompile(`^Bearer [a-z_]+="[^"\\\x00-\x1f\x7f]*"(, [a-z_]+="[^"\\\x00-\x1f\x7f]*")*$`)

// TestChallengeWellFormed: whatever the request's host and path hold
// (quotes, commas, backslashes, spaces), the challenge stays one
// well-formed challenge, and its resource_metadata is a URL that names
// the request's own host.
func TestChallengeWellFormed(t *testing.T) {
	res := &Resource{Path: "/mcp", Scopes: []string{"tools"}}
	s := &Server{cfg: Config{}}
	for _, tc := range []struct{ host, path string }{
		{"mcp.example.com", "/mcp"},
		{"mcp.example.com", `/mcp/a"b`},
		{"mcp.example.com", "/mcp/a,b"},
		{"mcp.example.com", `/mcp/a", error="x`},
		{"mcp.example.com", `/mcp/a\b`},
		{`mcp.example.com", Basic realm="x`, "/mcp"},
		{`a\`, "/mcp/x"},
		{"a b,c", "/mcp/y"},
		{"mcp.example.com\r\nX-Injected: 1", "/mcp"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		r.TLS = &tls.ConnectionState{}
		r.Host = tc.host
		r.URL = &url.URL{Path: tc.path, RawPath: tc.path}
		for _, code := range []ErrorCode{"", ErrInvalidToken, ErrInsufficientScope} {
			f := s.challenged(r, res, &Error{Code: code, Description: "the access token is invalid or revoked", Status: http.StatusUnauthorized})
			if !challengeSyntax.MatchString(f.Challenge) {
				t.Errorf("host %q path %q: challenge %q is not one well-formed challenge", tc.host, tc.path, f.Challenge)
				continue
			}
			m := regexp.MustCompile(`^Bearer resource_metadata="([^"]*)"`).FindStringSubmatch(f.Challenge)
			decoded, err := url.PathUnescape(m[1])
			if want := "https://" + strings.ToLower(tc.host) + "/.well-known/oauth-protected-resource/mcp"; err != nil || !strings.HasPrefix(decoded, want) {
				t.Errorf("host %q path %q: resource_metadata %q (%q, %v), want it to start with %q", tc.host, tc.path, m[1], decoded, err, want)
			}
		}
	}
}
