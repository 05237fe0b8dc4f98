package caddymcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// adminFixture is the admin API over real bbolt files, without Caddy.
type adminFixture struct {
	t      *testing.T
	api    *AdminAPI
	stores []namedStore
}

func newAdminFixture(t *testing.T, files int) *adminFixture {
	f := &adminFixture{t: t}
	for i := range files {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("state%d.db", i))
		st, err := bboltstore.Open(path, bboltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f.stores = append(f.stores, namedStore{path: path, st: st})
	}
	f.api = &AdminAPI{audit: zap.NewNop(), stores: func() []namedStore { return f.stores }, now: time.Now}
	return f
}

// do serves one request as Caddy's admin endpoint would and returns the
// status and the JSON body.
func (f *adminFixture) do(method, target, body string) (int, map[string]any) {
	f.t.Helper()
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	w := httptest.NewRecorder()
	status := http.StatusOK
	if err := f.api.serve(w, r); err != nil {
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatus == 0 {
			f.t.Fatalf("%s %s: a bare error (a 500 in Caddy): %v", method, target, err)
		}
		return apiErr.HTTPStatus, map[string]any{"error": apiErr.Err.Error()}
	}
	status = w.Code
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		f.t.Fatalf("%s %s: not JSON: %s", method, target, w.Body)
	}
	return status, out
}

func (f *adminFixture) want(method, target, body string, status int) map[string]any {
	f.t.Helper()
	got, out := f.do(method, target, body)
	if got != status {
		f.t.Errorf("%s %s: %d %v, want %d", method, target, got, out, status)
	}
	return out
}

// seed stores a client and a grant of user login for it.
func seed(t *testing.T, st store.Store, clientID, login string, userID int64) string {
	ctx := context.Background()
	if err := st.PutClient(ctx, &store.Client{ID: clientID, Name: "Client " + clientID, RedirectURIs: []string{"https://c.example/cb"},
		TokenEndpointAuthMethod: "none", CreatedAt: time.Now()}); err != nil && !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	grant := fmt.Sprintf("grant-%s-%s", clientID, login)
	code := []byte("code-" + grant)
	now := time.Now()
	if err := st.PutCode(ctx, &store.Code{Hash: code, ClientID: clientID, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	g := &store.Grant{ID: grant, ClientID: clientID, User: store.Identity{ID: userID, Login: login}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	at := &store.AccessToken{Hash: []byte("at-" + grant), GrantID: grant, ClientID: clientID, User: g.User, ExpiresAt: now.Add(time.Hour)}
	rt := &store.RefreshToken{Hash: []byte("rt-" + grant), GrantID: grant, ClientID: clientID, ExpiresAt: g.ExpiresAt}
	if err := st.CreateGrant(ctx, g, at, rt, code); err != nil {
		t.Fatal(err)
	}
	return grant
}

func TestAdminAPIListsAndRevokes(t *testing.T) {
	f := newAdminFixture(t, 1)
	st := f.stores[0].st
	a1 := seed(t, st, "client-a", "alice", 1)
	seed(t, st, "client-b", "alice", 1)
	b1 := seed(t, st, "client-a", "bob", 2)

	out := f.want("GET", "/mcp_auth/clients", "", 200)
	if cs := out["clients"].([]any); len(cs) != 2 || out["next"] != nil {
		t.Errorf("clients: %v", out)
	}
	if strings.Contains(fmt.Sprint(out), "secret") {
		t.Errorf("the client listing shows a secret field: %v", out)
	}
	out = f.want("GET", "/mcp_auth/clients?limit=1", "", 200)
	if out["next"] != "client-a" {
		t.Errorf("first page of one: next %v", out["next"])
	}
	out = f.want("GET", "/mcp_auth/clients?limit=1&after=client-a", "", 200)
	if cs := out["clients"].([]any); len(cs) != 1 || cs[0].(map[string]any)["id"] != "client-b" {
		t.Errorf("second page: %v", out)
	}

	out = f.want("GET", "/mcp_auth/grants?user=Alice", "", 200)
	gs := out["grants"].([]any)
	if len(gs) != 2 {
		t.Fatalf("alice's grants: %v", out)
	}
	g0 := gs[0].(map[string]any)
	if g0["client_name"] != "Client client-a" || g0["user"].(map[string]any)["login"] != "alice" || g0["github_token"] != nil {
		t.Errorf("grant view: %v", g0)
	}
	if gs := f.want("GET", "/mcp_auth/grants?client=client-a", "", 200)["grants"].([]any); len(gs) != 2 {
		t.Errorf("client-a's grants: %v", gs)
	}
	if gs := f.want("GET", "/mcp_auth/grants?user_id=2", "", 200)["grants"].([]any); len(gs) != 1 {
		t.Errorf("user 2's grants: %v", gs)
	}

	f.want("DELETE", "/mcp_auth/grants/"+b1, "", 200)
	f.want("DELETE", "/mcp_auth/grants/"+b1, "", 404)
	if _, err := st.GetAccessToken(context.Background(), []byte("at-"+b1), time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob's token after revoking his grant: %v", err)
	}

	out = f.want("POST", "/mcp_auth/revoke", `{"user":"alice"}`, 200)
	if out["revoked"] != float64(2) {
		t.Errorf("revoking alice: %v", out)
	}
	if gs := f.want("GET", "/mcp_auth/grants", "", 200)["grants"].([]any); len(gs) != 0 {
		t.Errorf("grants left: %v", gs)
	}
	if _, err := st.GetAccessToken(context.Background(), []byte("at-"+a1), time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("alice's token after revoking her: %v", err)
	}

	seed(t, st, "client-a", "carol", 3)
	out = f.want("DELETE", "/mcp_auth/clients/client-a", "", 200)
	if out["grants_revoked"] != float64(1) {
		t.Errorf("deleting client-a: %v", out)
	}
	f.want("DELETE", "/mcp_auth/clients/client-a", "", 404)
	if cs := f.want("GET", "/mcp_auth/clients", "", 200)["clients"].([]any); len(cs) != 1 {
		t.Errorf("clients after delete: %v", cs)
	}
}

// TestAdminAPIRevocationsPastAPage: an operator's revocation audits and
// withdraws the consents of every grant it lists, across pages, up to
// maxAuditedGrants; past that, one audit line says how many more went,
// and the counts returned are what was revoked, not what was listed.
func TestAdminAPIRevocationsPastAPage(t *testing.T) {
	defer func(page, most int) { auditPage, maxAuditedGrants = page, most }(auditPage, maxAuditedGrants)
	auditPage, maxAuditedGrants = 2, 3
	f := newAdminFixture(t, 1)
	core, logs := zapobserver.New(zapcore.InfoLevel)
	f.api.audit = zap.New(core)
	st := f.stores[0].st
	ctx := context.Background()
	now := time.Now()
	for u := int64(1); u <= 5; u++ {
		seed(t, st, "client-a", fmt.Sprintf("user%d", u), u)
		if err := st.PutConsent(ctx, &store.Consent{Key: []byte(fmt.Sprintf("consent-%d", u)), UserID: u, ClientID: "client-a",
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}

	out := f.want("POST", "/mcp_auth/revoke", `{"client_id":"client-a"}`, 200)
	if out["revoked"] != float64(5) {
		t.Errorf("revoking client-a's grants: %v, want 5 revoked", out)
	}
	if n := logs.FilterField(zap.String("event", string(oauth.EventGrantRevoked))).Len(); n != 3 {
		t.Errorf("%d grants audited one by one, want 3 (the bound)", n)
	}
	unlisted := logs.FilterField(zap.String("event", "grants_revoked_unlisted")).All()
	if len(unlisted) != 1 || unlisted[0].ContextMap()["revoked"] != int64(5) || unlisted[0].ContextMap()["listed"] != int64(3) {
		t.Errorf("the audit line for the unlisted grants: %v", unlisted)
	}
	withdrawn := 0
	for u := int64(1); u <= 5; u++ {
		if _, err := st.GetConsent(ctx, []byte(fmt.Sprintf("consent-%d", u)), now); errors.Is(err, store.ErrNotFound) {
			withdrawn++
		}
	}
	if withdrawn != 3 {
		t.Errorf("%d users' consents withdrawn, want the 3 listed", withdrawn)
	}

	// Deleting a client counts what it revoked, past the bound too; with
	// exactly the bound, over two pages, every grant has its line and
	// nothing is said of unlisted ones.
	for _, tc := range []struct {
		client         string
		grants, listed int
	}{{"client-b", 4, 3}, {"client-c", 3, 3}} {
		logs.TakeAll()
		for u := range int64(tc.grants) {
			seed(t, st, tc.client, fmt.Sprintf("user%d", 10+u), 10+u)
		}
		out = f.want("DELETE", "/mcp_auth/clients/"+tc.client, "", 200)
		if out["grants_revoked"] != float64(tc.grants) {
			t.Errorf("deleting %s: %v, want %d grants revoked", tc.client, out, tc.grants)
		}
		if n := logs.FilterField(zap.String("event", string(oauth.EventGrantRevoked))).Len(); n != tc.listed {
			t.Errorf("%s: %d grants audited one by one, want %d", tc.client, n, tc.listed)
		}
		if n := logs.FilterField(zap.String("event", "grants_revoked_unlisted")).Len(); n != min(1, tc.grants-tc.listed) {
			t.Errorf("%s: %d lines for unlisted grants, want %d", tc.client, n, min(1, tc.grants-tc.listed))
		}
	}
}

// TestAdminAPIBadInput: every bad request is a clear 4xx, never a 500,
// and never changes anything.
func TestAdminAPIBadInput(t *testing.T) {
	f := newAdminFixture(t, 1)
	seed(t, f.stores[0].st, "client-a", "alice", 1)
	for _, tc := range []struct {
		method, target, body string
		status               int
	}{
		{"POST", "/mcp_auth/clients", "", 405},
		{"PUT", "/mcp_auth/grants", "", 405},
		{"GET", "/mcp_auth/grants/grant-x", "", 405},
		{"GET", "/mcp_auth/revoke", "", 405},
		{"DELETE", "/mcp_auth/stores", "", 405},
		{"GET", "/mcp_auth/nothing", "", 404},
		{"GET", "/mcp_auth/clients/a/b", "", 405},
		{"DELETE", "/mcp_auth/clients/unknown", "", 404},
		{"DELETE", "/mcp_auth/clients/" + strings.Repeat("x", 5000), "", 404},
		{"DELETE", "/mcp_auth/grants/unknown", "", 404},
		{"GET", "/mcp_auth/grants?usr=alice", "", 400},
		{"GET", "/mcp_auth/grants?user=a&user=b", "", 400},
		{"GET", "/mcp_auth/grants?user_id=alice", "", 400},
		{"GET", "/mcp_auth/grants?user_id=-1", "", 400},
		{"GET", "/mcp_auth/grants?limit=0", "", 400},
		{"GET", "/mcp_auth/grants?limit=ten", "", 400},
		{"GET", "/mcp_auth/grants?after=" + strings.Repeat("x", 2000), "", 400},
		{"GET", "/mcp_auth/clients?store=/nowhere.db", "", 404},
		{"GET", "/mcp_auth/grants?%zz", "", 400},
		{"POST", "/mcp_auth/revoke", "", 400},
		{"POST", "/mcp_auth/revoke", "{", 400},
		{"POST", "/mcp_auth/revoke", "[]", 400},
		{"POST", "/mcp_auth/revoke", `{}`, 400},
		{"POST", "/mcp_auth/revoke", `{"user":""}`, 400},
		{"POST", "/mcp_auth/revoke", `{"login":"alice"}`, 400},
		{"POST", "/mcp_auth/revoke", `{"user_id":-5}`, 400},
		{"POST", "/mcp_auth/revoke", `{"user_id":"1"}`, 400},
		{"POST", "/mcp_auth/revoke", `{"user":"alice"} {"user":"bob"}`, 400},
		{"POST", "/mcp_auth/revoke", `{"user":"` + strings.Repeat("a", maxAdminBody) + `"}`, 400},
	} {
		if got, out := f.do(tc.method, tc.target, tc.body); got != tc.status {
			t.Errorf("%s %.60s %.40q: %d %v, want %d", tc.method, tc.target, tc.body, got, out, tc.status)
		}
	}
	if gs := f.want("GET", "/mcp_auth/grants", "", 200)["grants"].([]any); len(gs) != 1 {
		t.Errorf("bad requests changed the grants: %v", gs)
	}
}

// TestAdminAPILimits: a huge limit is clamped to store.MaxListLimit.
func TestAdminAPILimits(t *testing.T) {
	f := newAdminFixture(t, 1)
	ctx := context.Background()
	// Concurrent puts share bbolt's batched transactions.
	var wg sync.WaitGroup
	errs := make(chan error, store.MaxListLimit+5)
	for i := range store.MaxListLimit + 5 {
		wg.Go(func() {
			errs <- f.stores[0].st.PutClient(ctx, &store.Client{ID: fmt.Sprintf("c%05d", i), RedirectURIs: []string{"https://x/cb"}})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	out := f.want("GET", "/mcp_auth/clients?limit=999999999", "", 200)
	if n := len(out["clients"].([]any)); n != store.MaxListLimit || out["next"] == nil {
		t.Errorf("limit 999999999: %d clients, next %v; want %d and a next cursor", n, out["next"], store.MaxListLimit)
	}
	if n := len(f.want("GET", "/mcp_auth/clients", "", 200)["clients"].([]any)); n != store.DefaultListLimit {
		t.Errorf("no limit: %d clients, want %d", n, store.DefaultListLimit)
	}
}

// TestAdminAPISeveralStores: with several state files, a route must say
// which.
func TestAdminAPISeveralStores(t *testing.T) {
	f := newAdminFixture(t, 2)
	seed(t, f.stores[1].st, "client-b", "bob", 2)
	out := f.want("GET", "/mcp_auth/clients", "", 400)
	if !strings.Contains(fmt.Sprint(out["error"]), f.stores[1].path) {
		t.Errorf("the error does not list the files: %v", out)
	}
	if n := len(f.want("GET", "/mcp_auth/stores", "", 200)["stores"].([]any)); n != 2 {
		t.Errorf("stores: %d", n)
	}
	out = f.want("GET", "/mcp_auth/grants?store="+f.stores[1].path, "", 200)
	if gs := out["grants"].([]any); len(gs) != 1 {
		t.Errorf("grants of the second file: %v", out)
	}
	f.stores = nil
	f.want("GET", "/mcp_auth/grants", "", 404)
}
