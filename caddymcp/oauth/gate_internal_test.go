package oauth

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
)

// TestAudienceOK: the gate's allocation-free audience check agrees with
// the issuer and resource URLs the rest of the server builds, for TLS and
// plain requests, mixed-case hosts, and a configured issuer.
func TestAudienceOK(t *testing.T) {
	res := &Resource{Path: "/mcp"}
	for _, issuer := range []string{"", "https://mcp.example.com"} {
		s := &Server{cfg: Config{Issuer: issuer}, log: zap.NewNop()}
		for _, host := range []string{"mcp.example.com", "MCP.Example.COM", "localhost:8443", "127.0.0.1:8443", "[::1]:8443", "Ünïcode.example"} {
			for _, secure := range []bool{true, false} {
				r := httptest.NewRequest("GET", "/mcp", nil)
				r.Host = host
				if !secure {
					r.TLS = nil
				} else {
					r.TLS = &tls.ConnectionState{}
				}
				for _, aud := range []string{s.issuer(r), s.resourceURL(r, res), s.issuer(r) + "/sse", s.issuer(r) + "/mcpx",
					"https://mcp.example.com", "https://mcp.example.com/mcp", "http://mcp.example.com/mcp", "http://localhost:8443/mcp",
					"https://other.example/mcp", "", "https://mcp.example.com.evil/mcp"} {
					want := aud == s.issuer(r) || aud == s.resourceURL(r, res)
					if got := s.audienceOK(r, res, aud); got != want {
						t.Errorf("issuer %q, host %q, TLS %v: audienceOK(%q) = %v, want %v", issuer, host, secure, aud, got, want)
					}
					if got, want := s.audienceOK(r, nil, aud), aud == s.issuer(r); got != want {
						t.Errorf("issuer %q, host %q, TLS %v: audienceOK(nil, %q) = %v, want %v", issuer, host, secure, aud, got, want)
					}
				}
			}
		}
	}
}
