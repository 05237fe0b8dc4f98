package oauth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestIssuerNeverPlainHTTP: with no issuer configured, a request that
// arrived over plain HTTP for a public host (a site behind a TLS proxy,
// or a misconfigured one) is given an https issuer and https endpoints
// (RFC 8414 section 2); only a loopback host, for local development, gets
// an http one.
func TestIssuerNeverPlainHTTP(t *testing.T) {
	e := newEnv(t)
	for host, want := range map[string]string{
		"mcp.example.com":      "https://mcp.example.com",
		"MCP.example.com:8080": "https://mcp.example.com:8080",
		"10.0.0.11:8080":       "https://10.0.0.11:8080",
		"localhost:8080":       "http://localhost:8080",
		"127.0.0.1:9000":       "http://127.0.0.1:9000",
		"[::1]:9000":           "http://[::1]:9000",
	} {
		r := httptest.NewRequest(http.MethodGet, "http://"+host+"/.well-known/oauth-authorization-server", nil)
		w := httptest.NewRecorder()
		e.srv.Endpoint(r.URL.Path)(w, r)
		var doc struct {
			Issuer        string `json:"issuer"`
			TokenEndpoint string `json:"token_endpoint"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", host, w.Code, w.Body)
		}
		if doc.Issuer != want || doc.TokenEndpoint != want+"/token" {
			t.Errorf("plain HTTP for %s: issuer %q, token endpoint %q; want %s", host, doc.Issuer, doc.TokenEndpoint, want)
		}
	}
}
