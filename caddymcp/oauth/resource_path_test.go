package oauth_test

import (
	"strings"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// TestCheckProtectedPath: a protected path is a prefix, so one ending in
// a slash would leave the path itself ungated; it is refused with a
// message that says why and what to write instead.
func TestCheckProtectedPath(t *testing.T) {
	for _, ok := range []string{"/mcp", "/github/mcp", "/a.b-c_d"} {
		if err := oauth.CheckProtectedPath(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for p, want := range map[string]string{
		"/mcp/":        `write "/mcp"`,
		"/github/mcp/": `leave "/github/mcp" itself`,
		"/mcp//":       "clean path prefix",
		"/":            "clean path prefix",
		"/mcp*":        "clean path prefix",
		"/token":       "overlaps an endpoint",
	} {
		if err := oauth.CheckProtectedPath(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", p, err, want)
		}
	}
}
