package oauth

import (
	"fmt"
	"strings"
)

// CheckProtectedPath validates a protected path prefix as configured (New
// checks every Resource with it), for the Caddy glue to refuse a bad one
// where it is written.
//
// A protected path is matched as a prefix, like Caddy's `path /mcp*`: the
// prefix /mcp/ would gate /mcp/x but not /mcp itself, which a
// `handle /mcp*` block still routes to the MCP server, so its most used URL
// would be served without a token. /mcp gates both.
func CheckProtectedPath(p string) error { return checkResourcePath(p) }

// checkPrefixEnd is checkResourcePath's rule against a trailing slash.
func checkPrefixEnd(p string) error {
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("oauth: protected path %q must not end in /: it is a prefix, so %q would leave %q itself (which `handle %s*` serves) without a token; write %q",
			p, p, strings.TrimRight(p, "/"), strings.TrimRight(p, "/"), strings.TrimRight(p, "/"))
	}
	return nil
}
