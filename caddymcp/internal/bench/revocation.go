package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

// The revocation phase measures how soon a revocation made at one instance
// is refused at another. Two Caddy children (A and B) run the same site on
// one throwaway PostgreSQL database, with their own ports and Caddy's
// storage (its local CA and certificate) shared, as a cluster behind a
// load balancer would; B is reached through the site's address with the
// connection sent to B's port, and its issuer is set to the site's, so
// that tokens A issued are B's too. For each grant, obtained beforehand
// through the whole flow at A, B serves the access token once (so it holds
// it in memory for up to pgstore.CacheTTL), A revokes it (RFC 7009, with
// the refresh token, which revokes the grant, or for every fourth with the
// access token itself), and B is asked with the token until it refuses it.

const (
	// revocationTarget is the delay a pushed revocation should stay under.
	revocationTarget = 100 * time.Millisecond
	// revocationGiveUp bounds the polling of B: a token still accepted
	// this long after its revocation is a failure of the run, since the
	// cache TTL alone refuses it within a second.
	revocationGiveUp = 3 * time.Second
	// revocationBusyPoll is how long B is polled back to back after a
	// revocation; afterwards (when the push was evidently missed) every
	// poll waits revocationPause first.
	revocationBusyPoll = 200 * time.Millisecond
	revocationPause    = 5 * time.Millisecond
)

// revocationFigures are what the revocation phase measured.
type revocationFigures struct {
	n        int // revocations
	byAccess int // of which with the access token itself
	// delays are, sorted, from the revocation's answer at A to B's first
	// 401 with the token.
	delays []time.Duration
	// over counts delays over revocationTarget; fallback the refusals B
	// answered only once its cached copy could have expired (at or after
	// pgstore.CacheTTL from the request that cached it), which the push
	// does not explain; firstPoll the revocations refused at B's first
	// request after them.
	over, fallback, firstPoll int
	// polls is how many requests B answered after the revocations, in
	// all (the refusals included).
	polls int
}

// revocationPhase runs the revocation phase with n revocations and writes
// its report to w.
func revocationPhase(dir string, n int, w io.Writer) error {
	if n < 1 {
		return errors.New("-revocations must be at least 1")
	}
	pg, err := pgtest.StartServer()
	if err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	defer pg.Close()
	fmt.Fprintf(w, "state: %s, shared by two Caddy processes\n", pg)
	a, err := newEnv(dir, "", pg.DSN())
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.startCaddy("caddy-revocation-a"); err != nil {
		return err
	}
	b, err := a.secondInstance()
	if err != nil {
		return err
	}
	if err := b.startCaddy("caddy-revocation-b"); err != nil {
		return err
	}
	defer b.stopCaddy()

	f, err := revocationBench(a, b, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "revocation: %d revocations at instance A (%d by refresh token, %d by access token), each token served once by instance B before (B keeps it up to %s):\n",
		f.n, f.n-f.byAccess, f.byAccess, pgstore.CacheTTL)
	fmt.Fprintf(w, "  revoked at A -> first 401 at B: min %s  p50 %s  p90 %s  p99 %s  max %s\n",
		ms2(f.delays[0]), ms2(pct(f.delays, 50)), ms2(pct(f.delays, 90)), ms2(pct(f.delays, 99)), ms2(f.delays[len(f.delays)-1]))
	fmt.Fprintf(w, "  over the %s target: %d; refused only when B's copy may have expired (the %s TTL fallback): %d; refused at B's first request after the revocation: %d (%d requests to B in all)\n",
		revocationTarget, f.over, pgstore.CacheTTL, f.fallback, f.firstPoll, f.polls)
	return nil
}

// secondInstance returns an env for a second Caddy serving e's site on the
// same state: the same Caddyfile with its own admin, HTTP and HTTPS ports,
// e's site as its issuer, and clients that connect to its port. It shares
// e's GitHub stand-in, upstream and Caddy storage; stop it with stopCaddy
// (not close, which would stop what it shares).
func (e *env) secondInstance() (*env, error) {
	var ports [3]string
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	site, admin, httpPort := ports[0], "127.0.0.1:"+ports[1], ports[2]
	cf := string(e.caddyfile)
	for _, r := range []struct{ old, new string }{
		{"\tadmin " + e.admin + "\n", "\tadmin " + admin + "\n"},
		{"\thttps_port " + e.sitePort + "\n", "\thttps_port " + site + "\n"},
		{"\nlocalhost:" + e.sitePort + " {\n", "\nlocalhost:" + site + " {\n"},
		{"\tmcp_auth {\n", "\tmcp_auth {\n\t\tissuer " + e.site + "\n"},
	} {
		if strings.Count(cf, r.old) != 1 {
			return nil, fmt.Errorf("second instance: the Caddyfile does not have %q once", r.old)
		}
		cf = strings.Replace(cf, r.old, r.new, 1)
	}
	if len(httpPortLine.FindAllString(cf, -1)) != 1 {
		return nil, errors.New("second instance: the Caddyfile does not have one http_port line")
	}
	cf = httpPortLine.ReplaceAllString(cf, "\thttp_port "+httpPort)
	b := *e
	b.admin, b.caddyfile, b.dialPort, b.caddy, b.profile = admin, []byte(cf), site, nil, nil
	return &b, nil
}

var httpPortLine = regexp.MustCompile(`(?m)^\thttp_port \d+$`)

// revocationBench obtains n grants through the whole flow at a, then
// revokes each at a after b has served its access token, and times b's
// refusal.
func revocationBench(a, b *env, n int) (revocationFigures, error) {
	f := revocationFigures{n: n}
	const workers = 4
	cl, err := a.register(workers)
	if err != nil {
		return f, err
	}
	grants, err := obtainGrants(cl, n, workers)
	if err != nil {
		return f, err
	}
	hb := b.client(1) // one connection: each poll costs a request, not a handshake
	defer hb.CloseIdleConnections()

	for i, t := range grants {
		byAccess := i%4 == 3
		cachedAt := time.Now()
		if status, err := gateStatus(hb, b, t.Access); err != nil || status != http.StatusOK {
			return f, fmt.Errorf("revocation %d: B does not serve a fresh token: %d %v", i, status, err)
		}
		revoke := t.Refresh
		if byAccess {
			revoke = t.Access
			f.byAccess++
		}
		if err := cl.revoke(revoke); err != nil {
			return f, fmt.Errorf("revocation %d at A: %w", i, err)
		}
		revoked := time.Now()
		for polls := 1; ; polls++ {
			status, err := gateStatus(hb, b, t.Access)
			done := time.Now()
			if err != nil {
				return f, fmt.Errorf("revocation %d: B: %w", i, err)
			}
			f.polls++
			since := done.Sub(revoked)
			if status == http.StatusUnauthorized {
				f.delays = append(f.delays, since)
				if since > revocationTarget {
					f.over++
				}
				if done.Sub(cachedAt) >= pgstore.CacheTTL {
					f.fallback++
				}
				if polls == 1 {
					f.firstPoll++
				}
				break
			}
			if status != http.StatusOK {
				return f, fmt.Errorf("revocation %d: B answered %d", i, status)
			}
			if since > revocationGiveUp {
				return f, fmt.Errorf("revocation %d: B still accepts the token %v after A revoked it (%d requests)", i, since, polls)
			}
			if since > revocationBusyPoll {
				time.Sleep(revocationPause)
			}
		}
		if status, err := gateStatus(cl.http, a, t.Access); err != nil || status != http.StatusUnauthorized {
			return f, fmt.Errorf("revocation %d: A after its own revocation answered %d %v, want 401", i, status, err)
		}
	}
	slices.Sort(f.delays)
	return f, nil
}

// obtainGrants runs the whole flow n times with cl, workers at a time,
// spread over the stand-in's users, and returns the tokens.
func obtainGrants(cl *oauthClient, n, workers int) ([]tokens, error) {
	browsers := make([]*browser, min(n, benchUsers))
	for i := range browsers {
		browsers[i] = cl.browser(userLogin(i), workers)
	}
	out := make([]tokens, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for firstErr.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				code, err := browsers[i%len(browsers)].code()
				if err == nil {
					out[i], err = cl.exchange(code)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("grant %d: %w", i, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return out, nil
}

// gateStatus POSTs tools/call to e's /mcp with token and returns the
// status; a 200 must carry the tool's result.
func gateStatus(client *http.Client, e *env, token string) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, e.site+"/mcp", strings.NewReader(toolCall))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode == http.StatusOK && !bytes.Contains(body, []byte(`"sum":5`)) {
		return 0, fmt.Errorf("200 without the tool's result: %.200s", body)
	}
	return resp.StatusCode, nil
}

func ms2(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
