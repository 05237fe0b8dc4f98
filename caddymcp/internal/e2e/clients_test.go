package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// How clients become known: pre-registered in the Caddyfile, with
// registration closed; and dynamic registration's repeat and rate rules.
// The SDK client's dynamic registration mode is TestSDKClientFullFlow.

// postRegister sends a registration request and returns the status, the
// headers and the decoded JSON answer.
func (e *env) postRegister(t *testing.T, body string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := e.httpClient(nil).Post(e.site+"/register", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("/register answered non-JSON %s: %s", resp.Status, raw)
	}
	if s, _ := out["client_secret"].(string); s != "" {
		e.logs.addSecret(s)
	}
	return resp.StatusCode, resp.Header, out
}

// sdkHandlerWith is the SDK client configured as cfg says, signing in
// through b and trusting Caddy's CA.
func (e *env) sdkHandlerWith(t *testing.T, b *browser, cfg auth.AuthorizationCodeHandlerConfig) *auth.AuthorizationCodeHandler {
	t.Helper()
	cfg.AuthorizationCodeFetcher = b.fetcher()
	cfg.Client = e.httpClient(nil)
	h, err := auth.NewAuthorizationCodeHandler(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// preregisteredHandler is the SDK client with credentials the operator
// gave it.
func (e *env) preregisteredHandler(t *testing.T, b *browser, creds *oauthex.ClientCredentials, redirect string) *auth.AuthorizationCodeHandler {
	return e.sdkHandlerWith(t, b, auth.AuthorizationCodeHandlerConfig{PreregisteredClient: creds, RedirectURL: redirect})
}

// tokensIn reads the tokens of a token endpoint answer, and keeps them
// out of the logs.
func (e *env) tokensIn(out map[string]any) (access, refresh string) {
	access, _ = out["access_token"].(string)
	refresh, _ = out["refresh_token"].(string)
	e.logs.addSecret(access)
	e.logs.addSecret(refresh)
	return access, refresh
}

// whoami calls the upstream's whoami tool.
func whoami(ctx context.Context, t *testing.T, session *mcp.ClientSession) (user, client string) {
	t.Helper()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		t.Fatalf("calling whoami: %v", err)
	}
	var who whoamiResult
	structured(t, res, &who)
	return who.User, who.Client
}

const preSecret = "e2e-preregistered-client-secret-value"

// TestPreregisteredClientsWithRegistrationClosed: with registration
// closed, the SDK client in its dynamic registration mode cannot start and
// says why, /register answers 403, the metadata has no
// registration_endpoint; the SDK client in its pre-registered mode signs
// in, as a confidential client with its secret and as a public one on a
// loopback redirect with any port.
func TestPreregisteredClientsWithRegistrationClosed(t *testing.T) {
	t.Setenv("E2E_PRE_SECRET", preSecret)
	e := start(t, options{authExtra: `registration closed
		client e2e-confidential {
			secret {env.E2E_PRE_SECRET}
			name "Pre-registered confidential"
			redirect_uris http://127.0.0.1:33418/callback
		}
		client e2e-public {
			name "Pre-registered public"
			redirect_uris http://127.0.0.1/callback
		}`})
	e.logs.addSecret(preSecret)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var as map[string]any
	if status := e.getJSON(t, e.site+"/.well-known/oauth-authorization-server", &as); status != http.StatusOK {
		t.Fatalf("AS metadata: %d", status)
	}
	if v, ok := as["registration_endpoint"]; ok {
		t.Errorf("registration_endpoint = %v with registration closed, want it absent", v)
	}
	status, _, out := e.postRegister(t, `{"client_name":"x","redirect_uris":["http://127.0.0.1:9999/cb"],"token_endpoint_auth_method":"none"}`)
	if status != http.StatusForbidden || out["error"] != "access_denied" {
		t.Errorf("/register with registration closed: %d %v, want 403 access_denied", status, out)
	}

	b := e.browser("alice")
	_, err := e.connect(ctx, t, "/mcp", e.sdkHandler(t, b))
	if err == nil || !strings.Contains(err.Error(), "no configured client registration methods are supported") {
		t.Errorf("SDK client registering dynamically: %v, want a clear refusal", err)
	}
	if b.ConsentPages() != 0 {
		t.Errorf("a consent page was shown to a client that cannot register")
	}

	for _, tc := range []struct {
		name     string
		creds    *oauthex.ClientCredentials
		redirect string
	}{
		{"confidential", &oauthex.ClientCredentials{ClientID: "e2e-confidential", Issuer: e.site,
			ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: preSecret}}, "http://127.0.0.1:33418/callback"},
		{"public", &oauthex.ClientCredentials{ClientID: "e2e-public", Issuer: e.site}, "http://127.0.0.1:40123/callback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			session, err := e.connect(ctx, t, "/mcp", e.preregisteredHandler(t, b, tc.creds, tc.redirect))
			if err != nil {
				t.Fatalf("connecting as a pre-registered client: %v", err)
			}
			defer session.Close()
			if user, client := whoami(ctx, t, session); user != "alice" || client != tc.creds.ClientID {
				t.Errorf("upstream saw user %q client %q, want alice %s", user, client, tc.creds.ClientID)
			}
		})
	}

	// A wrong secret does not get a token.
	wrong := &oauthex.ClientCredentials{ClientID: "e2e-confidential", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: "not-the-secret"}}
	_, err = e.connect(ctx, t, "/mcp", e.preregisteredHandler(t, e.browser("alice"), wrong, "http://127.0.0.1:33418/callback"))
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("pre-registered client with a wrong secret: %v, want invalid_client", err)
	}
}

// TestRegistrationRepeatsAndLimit: a public client that registers the
// same metadata again (with another loopback port) gets the same client
// back, free of charge; confidential clients always get a new one; one
// address may leave 20 clients without a grant (as configured), then gets
// 429 with Retry-After, until one of them obtains a grant.
func TestRegistrationRepeatsAndBound(t *testing.T) {
	e := start(t, options{authExtra: "registration open {\n\t\t\tper_address 20\n\t\t}"})
	public := func(name, redirect string) string {
		return fmt.Sprintf(`{"client_name":%q,"redirect_uris":[%q],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`, name, redirect)
	}
	created := 0 // new client records, each charged to this address

	status, _, first := e.postRegister(t, public("repeating client", "http://127.0.0.1:50001/callback"))
	if status != http.StatusCreated {
		t.Fatalf("first registration: %d %v", status, first)
	}
	created++
	status, _, again := e.postRegister(t, public("repeating client", "http://127.0.0.1:50002/callback"))
	if status != http.StatusCreated || again["client_id"] != first["client_id"] || again["client_id_issued_at"] != first["client_id_issued_at"] {
		t.Errorf("same public metadata again: %d id %v issued %v, want %v issued %v", status,
			again["client_id"], again["client_id_issued_at"], first["client_id"], first["client_id_issued_at"])
	}
	if uris, _ := again["redirect_uris"].([]any); len(uris) != 1 || uris[0] != "http://127.0.0.1:50002/callback" {
		t.Errorf("redirect_uris in the repeated registration's answer = %v, want the client's own", again["redirect_uris"])
	}
	_, _, other := e.postRegister(t, public("another client", "http://127.0.0.1:50001/callback"))
	created++
	if other["client_id"] == first["client_id"] {
		t.Error("different metadata got the same client_id")
	}

	conf := `{"client_name":"confidential","redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`
	_, _, c1 := e.postRegister(t, conf)
	_, _, c2 := e.postRegister(t, conf)
	created += 2
	if c1["client_id"] == nil || c1["client_id"] == c2["client_id"] || c1["client_secret"] == c2["client_secret"] {
		t.Errorf("two confidential registrations: ids %v %v, want distinct clients with distinct secrets", c1["client_id"], c2["client_id"])
	}

	for ; created < 20; created++ {
		status, _, out := e.postRegister(t, public(fmt.Sprintf("client %d", created), "http://127.0.0.1/callback"))
		if status != http.StatusCreated {
			t.Fatalf("registration %d of 20: %d %v", created+1, status, out)
		}
	}
	status, header, out := e.postRegister(t, public("one too many", "http://127.0.0.1/callback"))
	if status != http.StatusTooManyRequests || out["error"] == nil {
		t.Fatalf("registration 21: %d %v, want 429", status, out)
	}
	if s, err := strconv.Atoi(header.Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("Retry-After %q, want a positive number of seconds", header.Get("Retry-After"))
	}
	// Registering again what is already registered costs nothing.
	status, _, again = e.postRegister(t, public("repeating client", "http://127.0.0.1:50003/callback"))
	if status != http.StatusCreated || again["client_id"] != first["client_id"] {
		t.Errorf("a repeated registration after the limit: %d %v, want the existing client", status, again)
	}
	// The bound is on what is left unused, not on using: a registered
	// client still signs in, and then no longer counts.
	c := &oauthClient{e: e, http: e.httpClient(nil), id: first["client_id"].(string), redirect: "http://127.0.0.1:50004/callback"}
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Errorf("token of the repeated client at /mcp: %s", resp.Status)
	}
	if status, _, out := e.postRegister(t, public("after a grant", "http://127.0.0.1/callback")); status != http.StatusCreated {
		t.Errorf("registration after one client obtained a grant: %d %v, want 201", status, out)
	}
}

// TestSDKClientRegistersOnce: the SDK client registering dynamically on
// every start sends the same metadata, so it is the same client each
// time. It is a public client with a loopback redirect, which any local
// program could pose as, so the user sees the consent page each time
// (RFC 8252 section 8.6).
func TestSDKClientRegistersOnce(t *testing.T) {
	e := start(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := e.browser("alice")
	var clients []string
	for run := range 2 {
		session, err := e.connect(ctx, t, "/mcp", e.sdkHandler(t, b))
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		_, client := whoami(ctx, t, session)
		session.Close()
		clients = append(clients, client)
	}
	if clients[0] == "" || clients[0] != clients[1] {
		t.Errorf("client ids of two runs: %v, want one client", clients)
	}
	if b.ConsentPages() != 2 {
		t.Errorf("consent pages: %d, want 2 (a public loopback client is asked for every time)", b.ConsentPages())
	}
}
