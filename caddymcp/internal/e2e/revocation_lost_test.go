package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

// TestRevocationLostNotification: two Caddy processes (A and B) on one
// PostgreSQL database, each connecting with an application_name of its
// own, so that their revocation listeners can be told apart in
// pg_stat_activity. B has checked an access token (it serves it from
// memory for up to pgstore.CacheTTL); the test terminates B's listener
// backend and at once revokes the grant at A, so that B is not listening
// when the revocation commits and never hears of it. B must still refuse
// the token, and before its cached copy could have expired: only the
// emptying of its caches that follows the listener's reconnection explains
// that. A new listener backend of B's must exist, A's must be the one it
// was, and a revocation made after the reconnection must be pushed to B
// again.
//
// Whether B's new listener came after the revocation is read from its
// backend_start (PostgreSQL's clock, the machine's): a reconnection faster
// than the revocation (B waits 50 to 100 ms before it reconnects) would
// have heard the notification, and proves nothing; the scenario is then
// run again, a few times at most.
func TestRevocationLostNotification(t *testing.T) {
	c := newCluster(t)
	base := c.dsn
	// The instances read c.dsn when they start.
	c.dsn = pgtest.WithParam(base, "application_name", "caddymcp-A")
	a := c.newInstance("A")
	c.dsn = pgtest.WithParam(base, "application_name", "caddymcp-B")
	b := c.newInstance("B")
	c.dsn = base
	eA, eB := a.env(), b.env()
	mcpResource := url.Values{"resource": {c.site + "/mcp"}}
	hcB := eB.httpClient(nil) // one connection to B for its requests

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, c.pg.DSN()) // the superuser, who may terminate backends
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	listenerA := waitListener(t, ctx, db, "caddymcp-A", 0)
	listenerB := waitListener(t, ctx, db, "caddymcp-B", 0)

	// grant goes through the whole flow at A and has B check the access
	// token, so that B holds it in memory from cachedAt on at least.
	grant := func(t *testing.T, user string) (cl *oauthClient, access, refresh string, cachedAt time.Time) {
		t.Helper()
		cl = eA.register(t, false)
		q, verifier := cl.authorizeAs(t, eA.browser(user), "st", mcpResource)
		tok := cl.exchange(t, q, verifier, mcpResource)
		cachedAt = time.Now()
		if got := gateVia(hcB, eB, tok.AccessToken); got.status != http.StatusOK {
			t.Fatalf("B refuses a fresh token: %+v", got)
		}
		return cl, tok.AccessToken, tok.RefreshToken, cachedAt
	}
	// refusedAt polls B with token until it refuses it, for 5 seconds at
	// most (the cache TTL refuses it within one), and returns when.
	refusedAt := func(t *testing.T, token string, revoked time.Time) time.Time {
		t.Helper()
		for {
			got := gateVia(hcB, eB, token)
			done := time.Now()
			switch {
			case got.status == http.StatusUnauthorized:
				return done
			case got.status != http.StatusOK:
				t.Fatalf("B after the revocation on A: %+v", got)
			case done.Sub(revoked) > 5*time.Second:
				t.Fatalf("B still accepts the token %v after A revoked it", done.Sub(revoked))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	t.Run("lost while the listener reconnects", func(t *testing.T) {
		const attempts = 5
		for attempt := 1; ; attempt++ {
			cl, access, refresh, cachedAt := grant(t, "alice")
			killed := time.Now()
			var ok bool
			if err := db.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, listenerB.pid).Scan(&ok); err != nil || !ok {
				t.Fatalf("terminating B's listener (pid %d): %v %v", listenerB.pid, ok, err)
			}
			if status, out := cl.form(t, "/revoke", url.Values{"token": {refresh}}); status != http.StatusOK {
				t.Fatalf("revoke on A: %d %v", status, out)
			}
			revoked := time.Now()
			refused := refusedAt(t, access, revoked)
			next := waitListener(t, ctx, db, "caddymcp-B", listenerB.pid)
			listenerB = next
			if got := gate(eA, access); got.status != http.StatusUnauthorized {
				t.Errorf("A after its own revocation: %+v, want 401", got)
			}
			if !next.start.After(revoked) {
				t.Logf("attempt %d: B's listener reconnected %v after it was terminated, before the revocation returned (%v after): it may have heard it",
					attempt, next.start.Sub(killed), revoked.Sub(killed))
				if attempt == attempts {
					t.Fatalf("in %d attempts B's listener always reconnected before A's revocation returned: no notification was lost", attempts)
				}
				continue
			}
			// B never heard of the revocation, and its copy of the token
			// lives until cachedAt+CacheTTL at least.
			if since := refused.Sub(cachedAt); since >= pgstore.CacheTTL {
				t.Fatalf("B refused the token only %v after caching it (%v after A revoked it), when its cache TTL (%v) may have expired it: its listener's reconnection did not empty its caches",
					since, refused.Sub(revoked), pgstore.CacheTTL)
			}
			t.Logf("attempt %d: B's listener (pid %d) reconnected %v after it was terminated, %v after A's revocation returned; B refused the token %v after the revocation, %v after caching it",
				attempt, next.pid, next.start.Sub(killed), next.start.Sub(revoked), refused.Sub(revoked), refused.Sub(cachedAt))
			break
		}
	})

	t.Run("pushed again after the reconnection", func(t *testing.T) {
		cl, access, _, cachedAt := grant(t, "bob")
		if status, out := cl.form(t, "/revoke", url.Values{"token": {access}, "token_type_hint": {"access_token"}}); status != http.StatusOK {
			t.Fatalf("revoke on A: %d %v", status, out)
		}
		revoked := time.Now()
		refused := refusedAt(t, access, revoked)
		// Only a refusal before B's copy could expire proves the push,
		// and only if B's listener did not reconnect (and empty the
		// caches) meanwhile.
		if since := refused.Sub(cachedAt); since >= pgstore.CacheTTL {
			t.Fatalf("B refused the token only %v after caching it (%v after A revoked it), when its cache TTL (%v) may have expired it: not pushed",
				since, refused.Sub(revoked), pgstore.CacheTTL)
		}
		if l := waitListener(t, ctx, db, "caddymcp-B", 0); l.pid != listenerB.pid {
			t.Fatalf("B's listener reconnected meanwhile (pid %d, now %d): the refusal proves no push", listenerB.pid, l.pid)
		}
		t.Logf("B refused the token %v after A's revocation returned", refused.Sub(revoked))
	})

	if l := waitListener(t, ctx, db, "caddymcp-A", 0); l.pid != listenerA.pid {
		t.Errorf("A's listener is pid %d, was %d: terminating B's listener touched A's", l.pid, listenerA.pid)
	}
}

// listenerBackend is a revocation listener's session in pg_stat_activity.
type listenerBackend struct {
	pid   int
	start time.Time // backend_start: when it connected
}

// waitListener waits, 20 seconds at most, until the instance connecting
// as app has exactly one revocation listener, other than the one with pid
// not (0: any), connected and idle after its LISTEN, and returns it.
func waitListener(t *testing.T, ctx context.Context, db *pgx.Conn, app string, not int) listenerBackend {
	t.Helper()
	name := app + pgstore.ListenerAppSuffix
	deadline := time.Now().Add(20 * time.Second)
	for {
		var found []listenerBackend
		var last string
		rows, err := db.Query(ctx, `SELECT pid, backend_start, coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity
WHERE application_name = $1 ORDER BY backend_start`, name)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var l listenerBackend
			var state, query string
			if err := rows.Scan(&l.pid, &l.start, &state, &query); err != nil {
				t.Fatal(err)
			}
			last = state + ": " + query
			if l.pid != not && state == "idle" && strings.HasPrefix(query, "LISTEN") {
				found = append(found, l)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(found) > 1 {
			t.Fatalf("%d sessions named %q listen", len(found), name)
		}
		if len(found) == 1 {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session named %q (other than pid %d) has listened within 20s (last seen: %q)", name, not, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
