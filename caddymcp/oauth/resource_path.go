package oauth

import (
	"fmt"
	"strings"
)

// CheckProtectedPath validates a protected path prefix as configured: the
// rules of checkResourcePath, and no trailing slash.
//
// A protected path is matched as a prefix, like Caddy's `path /mcp*`: the
// prefix /mcp/ would gate /mcp/x but not /mcp itself, which a
// `handle /mcp*` block still routes to the MCP server, so its most used URL
// would be served without a token. /mcp gates both.
func CheckProtectedPath(p string) error {
	if err := checkResourcePath(p); err != nil {
		return err
	}
	return checkPrefixEnd(p)
}

// checkPrefixEnd is the trailing-slash rule of CheckProtectedPath, for
// checkResourcePath to call once it may (then CheckProtectedPath is
// checkResourcePath).
func checkPrefixEnd(p string) error {
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("oauth: protected path %q must not end in /: it is a prefix, so %q would leave %q itself (which `handle %s*` serves) without a token; write %q",
			p, p, strings.TrimRight(p, "/"), strings.TrimRight(p, "/"), strings.TrimRight(p, "/"))
	}
	return nil
}
