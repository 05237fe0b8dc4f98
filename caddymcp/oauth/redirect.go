package oauth

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"unicode"
)

// maxRedirectURIs bounds how many redirect URIs one client may register.
const maxRedirectURIs = 20

// forbiddenSchemes can never be redirect targets: they run code or read
// local data in the browser, or are not redirect schemes at all.
var forbiddenSchemes = map[string]bool{
	"javascript": true, "data": true, "vbscript": true, "file": true,
	"about": true, "blob": true, "filesystem": true, "view-source": true,
	"ftp": true, "ws": true, "wss": true, "mailto": true, "tel": true,
	"urn": true, // covers urn:ietf:wg:oauth:2.0:oob, which OAuth 2.1 removed
}

// checkRedirectURI enforces the redirect URI rules of the security model:
// https; or http on a loopback host (RFC 8252 section 7.3); or, for a
// native application, a private-use scheme (RFC 8252 section 7.1; any
// scheme outside forbiddenSchemes, as real clients use cursor:// and
// vscode://). No fragments, no credentials.
func checkRedirectURI(raw, applicationType string) error {
	if raw == "" || len(raw) > maxParamLen {
		return fmt.Errorf("redirect URI must be 1 to %d characters", maxParamLen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("redirect URI %q is not an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q must not contain a fragment", raw)
	}
	if u.User != nil {
		return fmt.Errorf("redirect URI %q must not contain credentials", raw)
	}
	for _, r := range u.Host {
		if r > unicode.MaxASCII {
			// The consent page names this host; a look-alike such as a
			// Cyrillic "с" in claude.ai must show as its xn-- form.
			return fmt.Errorf("redirect URI %q must write its host in ASCII (punycode)", raw)
		}
	}
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "https":
		if u.Host == "" || u.Hostname() == "" {
			return fmt.Errorf("redirect URI %q has no host", raw)
		}
	case scheme == "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("redirect URI %q must use https (http is only allowed on a loopback address)", raw)
		}
	case forbiddenSchemes[scheme]:
		return fmt.Errorf("redirect URI scheme %q is not allowed", u.Scheme)
	default:
		if applicationType != appTypeNative {
			return fmt.Errorf("redirect URI %q uses a private-use scheme, which only a native application may register (application_type \"native\")", raw)
		}
		// RFC 8252 section 7.1 recommends reverse-domain schemes
		// (com.example.app) but real clients use cursor:// and vscode://,
		// so any scheme outside the forbidden list is accepted.
	}
	q := u.Query()
	for _, reserved := range []string{"code", "state", "iss", "error", "error_description"} {
		if q.Has(reserved) {
			return fmt.Errorf("redirect URI %q must not carry the %s parameter the response adds", raw, reserved)
		}
	}
	return nil
}

// matchRedirectURI finds the registered redirect URI that the requested
// one matches: exactly, or for a loopback http URI, with any port (RFC 8252
// section 7.3: native apps get an ephemeral port from the OS).
func matchRedirectURI(registered []string, requested string) bool {
	for _, reg := range registered {
		if reg == requested {
			return true
		}
	}
	req, err := url.Parse(requested)
	if err != nil || req.Scheme != "http" || !isLoopbackHost(req.Hostname()) {
		return false
	}
	for _, reg := range registered {
		ru, err := url.Parse(reg)
		if err != nil || ru.Scheme != "http" {
			continue
		}
		if ru.Hostname() == req.Hostname() && ru.EscapedPath() == req.EscapedPath() &&
			ru.RawQuery == req.RawQuery && req.User == nil && req.Fragment == "" {
			return true
		}
	}
	return false
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
