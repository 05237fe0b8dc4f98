package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestTwoInstancesOnePostgres runs the scenarios on two Caddy
// processes (A and B) sharing one PostgreSQL database, in one test so that
// the processes and the database start once:
//
//  1. DCR on A, authorize and consent on A, token exchange on B, tool call
//     on A, refresh on B, revoke on A: refused on A at once, and on B
//     within 1 s (B serves a token it read from memory for up to
//     pgstore.CacheTTL).
//  2. The same refresh token sent to A and B at once: exactly one succeeds,
//     and the reuse revokes the grant on both.
//  3. A is killed between consent and GitHub's callback: the user finishes
//     on B (the browser's cookies are signed with the key both share).
//  4. PostgreSQL stops under load: both instances answer 503 with
//     Retry-After on the gate, the token endpoint and registration, never
//     a token they could not check; when it is back, both recover by
//     themselves, and the refresh refused during the outage still works.
func TestTwoInstancesOnePostgres(t *testing.T) {
	c := newCluster(t)
	a := c.newInstance("A")
	b := c.newInstance("B")
	eA, eB := a.env(), b.env()

	t.Log("1: every step on another instance")
	cl := eA.register(t, false)
	mcpResource := url.Values{"resource": {c.site + "/mcp"}}
	q, verifier := cl.authorizeAs(t, eA.browser("alice"), "st", mcpResource)
	tok := cl.at(eB).exchange(t, q, verifier, mcpResource)
	if got := callUserInfo(t, eA, tok); !strings.Contains(got, "@alice") {
		t.Errorf("get_user_info on A: %s", got)
	}
	status, out := cl.at(eB).refresh(t, tok.RefreshToken)
	if status != http.StatusOK {
		t.Fatalf("refresh on B: %d %v", status, out)
	}
	access, refresh := eB.tokensIn(out)
	if got := gate(eB, access); got.status != http.StatusOK {
		t.Fatalf("B refuses the access token it issued: %+v", got)
	}
	if got := gate(eA, access); got.status != http.StatusOK {
		t.Fatalf("A refuses the access token B issued: %+v", got)
	}
	if status, out := cl.form(t, "/revoke", url.Values{"token": {refresh}}); status != http.StatusOK {
		t.Fatalf("revoke on A: %d %v", status, out)
	}
	revoked := time.Now()
	if got := gate(eA, access); got.status != http.StatusUnauthorized {
		t.Errorf("A after its own revocation: %+v, want 401 at once", got)
	}
	for _, tk := range []string{access, tok.AccessToken} {
		for {
			got := gate(eB, tk)
			if got.status == http.StatusUnauthorized {
				break
			}
			if since := time.Since(revoked); got.status != http.StatusOK || since > time.Second {
				t.Fatalf("B %v after the revocation on A: %+v, want 401 within 1 s", since, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Log("2: one refresh token on both instances at once")
	// Two processes sharing one token store refresh through the balancer
	// at the same moment: both are answered (the reuse grace), either
	// answer's token refreshes on either instance, and once one was
	// used, the old token coming back revokes the grant everywhere.
	cl2 := eA.register(t, false)
	q, verifier = cl2.authorizeAs(t, eA.browser("alice"), "st", mcpResource)
	tok2 := cl2.exchange(t, q, verifier, mcpResource)
	results := make(chan refreshResult, 2)
	for _, e := range []*env{eA, eB} {
		go func() { results <- rawRefresh(e, cl2.id, tok2.RefreshToken) }()
	}
	var won []refreshResult
	for range 2 {
		r := <-results
		c.secrets.addSecret(r.access)
		c.secrets.addSecret(r.refresh)
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("refresh race: %d %s %v, want both answered", r.status, r.body, r.err)
		}
		won = append(won, r)
	}
	for i, e := range []*env{eA, eB} {
		if got := gate(e, won[i].access); got.status != http.StatusOK {
			t.Errorf("a racer's access token: %+v, want 200", got)
		}
	}
	next := rawRefresh(eB, cl2.id, won[0].refresh)
	c.secrets.addSecret(next.access)
	c.secrets.addSecret(next.refresh)
	if next.status != http.StatusOK {
		t.Fatalf("refreshing a racer's token on B: %d %s", next.status, next.body)
	}
	if r := rawRefresh(eA, cl2.id, tok2.RefreshToken); r.status != http.StatusBadRequest || !strings.Contains(r.body, "invalid_grant") {
		t.Fatalf("the old token after its successor was used: %d %s, want 400 invalid_grant", r.status, r.body)
	}
	for _, e := range []*env{eA, eB} {
		if got := gate(e, next.access); got.status != http.StatusUnauthorized {
			t.Errorf("access token of the revoked grant: %+v, want 401", got)
		}
	}

	t.Log("3: A dies mid-flow; the user finishes on B")
	lb := &route{}
	lb.to(a)
	eLB := c.envVia(lb.get)
	cl3 := eLB.register(t, false)
	br := eLB.browser("alice")
	verifier = oauth2.GenerateVerifier()
	authURL := cl3.config().AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", c.site+"/mcp"))
	toGitHub := br.approveToGitHub(t, authURL) // on A
	a.kill()
	lb.to(b)
	br.Client.CloseIdleConnections()
	cl3.http.CloseIdleConnections()
	final, err := br.Authorize(t.Context(), toGitHub)
	if err != nil {
		t.Fatalf("finishing the sign-in on B: %v", err)
	}
	tok3 := cl3.exchange(t, final.Query(), verifier, mcpResource)
	if got := callUserInfo(t, eLB, tok3); !strings.Contains(got, "@alice") {
		t.Errorf("get_user_info on B: %s", got)
	}
	a.start()

	t.Log("4: PostgreSQL restarts under load")
	loadRestart(t, c, []*env{eA, eB}, eB.register(t, false))

	t.Log("5: an instance with another secret_key refuses to start")
	other := c.configure("C", "secret_key {env.OTHER_MCP_AUTH_KEY}")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := other.command(ctx)
	otherKey := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	cmd.Env = append(cmd.Env, "OTHER_MCP_AUTH_KEY="+otherKey)
	stderr, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("an instance with another key: err %v (context %v)\n%s", err, ctx.Err(), stderr)
	}
	// Caddy writes the error to the log the config sets up.
	log, _ := os.ReadFile(other.logPath())
	if !strings.Contains(string(log), "secret key differs from the one the other instances on this database use") ||
		!strings.Contains(string(log), "configure the same secret_key on every instance") {
		t.Errorf("the refusal does not say why:\n%s", log)
	}
	c.secrets.addSecret(otherKey)
	c.secrets.assertNoSecretsIn(t, other.logPath(), "instance C's log")
}

// loadRestart stops PostgreSQL while clients keep calling both instances,
// checks the answers during the outage, and waits for both to recover.
func loadRestart(t *testing.T, c *cluster, envs []*env, cl *oauthClient) {
	mcpResource := url.Values{"resource": {c.site + "/mcp"}}
	q, verifier := cl.authorizeAs(t, envs[1].browser("alice"), "st", mcpResource)
	tok := cl.exchange(t, q, verifier, mcpResource)

	var mu sync.Mutex
	seen := map[int]int{}
	var bad []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(25 * time.Millisecond):
				}
				r := gate(envs[i%len(envs)], tok.AccessToken)
				mu.Lock()
				seen[r.status]++
				// A valid token is either accepted (the database
				// answered within the last second) or 503 with Retry-After: never called
				// invalid, never a transport failure.
				if r.err != nil || (r.status != http.StatusOK && (r.status != http.StatusServiceUnavailable || r.retryAfter == "")) {
					bad = append(bad, fmt.Sprintf("%+v", r))
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)

	c.pg.Stop()
	stopped := time.Now()
	for i, e := range envs {
		// A token verified less than pgstore.CacheTTL ago may still be
		// served from memory; after that, the gate cannot verify it and
		// says so.
		for {
			r := gate(e, tok.AccessToken)
			if r.status == http.StatusServiceUnavailable && r.retryAfter != "" {
				break
			}
			if since := time.Since(stopped); r.status != http.StatusOK || since > time.Second {
				t.Fatalf("instance %d gate %v after the database went down: %+v, want 503 with Retry-After within 1 s", i, since, r)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if r := rawRefresh(e, cl.id, tok.RefreshToken); r.status != http.StatusServiceUnavailable || r.retryAfter == "" {
			t.Errorf("instance %d refresh with the database down: %d %q (Retry-After %q), want 503 with Retry-After", i, r.status, r.body, r.retryAfter)
		}
		if r := rawPost(e, "/register", "application/json", `{"redirect_uris":["http://127.0.0.1:9/cb"]}`); r.status != http.StatusServiceUnavailable || r.retryAfter == "" {
			t.Errorf("instance %d registration with the database down: %+v, want 503 with Retry-After", i, r)
		}
	}
	c.pg.Restart(t)
	for i, e := range envs {
		var r result
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if r = gate(e, tok.AccessToken); r.status == http.StatusOK {
				break
			}
		}
		if r.status != http.StatusOK {
			t.Errorf("instance %d did not recover after PostgreSQL came back: %+v", i, r)
		}
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d answers under load were neither 200 nor 503 with Retry-After, such as %s", len(bad), bad[0])
	}
	t.Logf("gate answers under load across the restart: %v", seen)
	// The refresh refused during the outage changed nothing: the token
	// still rotates, on the other instance.
	if status, out := cl.at(envs[0]).refresh(t, tok.RefreshToken); status != http.StatusOK {
		t.Errorf("refresh after the outage: %d %v", status, out)
	} else {
		envs[0].tokensIn(out)
	}
}

// refreshResult is a raw refresh answer with the tokens it issued.
type refreshResult struct {
	result
	access, refresh string
}

// rawRefresh refreshes as public client clientID, without failing the test.
func rawRefresh(e *env, clientID, refreshToken string) refreshResult {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}, "client_id": {clientID}}
	r := refreshResult{result: rawPost(e, "/token", "application/x-www-form-urlencoded", form.Encode())}
	if r.status == http.StatusOK {
		var out map[string]any
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			r.err = err
		}
		r.access, _ = out["access_token"].(string)
		r.refresh, _ = out["refresh_token"].(string)
	}
	return r
}
