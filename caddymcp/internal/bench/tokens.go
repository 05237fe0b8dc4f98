package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// tokenFigures are the token endpoint's throughput and what it issued.
type tokenFigures struct {
	clients int
	// codes is how many codes were obtained through the full flow
	// beforehand, and codesPerSec how fast (not a target; context).
	codes       int
	codesPerSec float64
	// exchangePerSec is authorization_code grants per second.
	exchangePerSec float64
	exchangeP99    time.Duration
	// refreshes and refreshPerSec are refresh_token grants.
	refreshes     int
	refreshPerSec float64
	refreshP99    time.Duration
	// issued are all tokens handed out, each of which was distinct.
	issued int
}

// tokenBench obtains codes through the whole authorization flow, then
// exchanges them at the token endpoint with clients concurrent clients,
// then has each client refresh its own grant in a chain for d. Every
// answer must be a success and every token distinct; each chain's last
// refresh token must still work afterwards.
func (e *env) tokenBench(clients, codes int, d time.Duration) (*oauthClient, tokenFigures, error) {
	f := tokenFigures{clients: clients, codes: codes}
	c, err := e.register(clients)
	if err != nil {
		return nil, f, err
	}
	// Browsers of several users, each consenting once (serially).
	browsers := make([]*browser, min(codes, benchUsers))
	for i := range browsers {
		browsers[i] = c.browser(userLogin(i), clients)
	}

	// Codes, through the full flow, clients at a time.
	out := make([]string, codes)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	fail := func(err error) { firstErr.CompareAndSwap(nil, err) }
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= codes || firstErr.Load() != nil {
					return
				}
				code, err := browsers[i%len(browsers)].code()
				if err != nil {
					fail(fmt.Errorf("code %d: %w", i, err))
					return
				}
				out[i] = code
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return c, f, err
	}
	f.codesPerSec = float64(codes) / time.Since(start).Seconds()

	seen := newTokenSet()
	// authorization_code grants.
	chains := make([]string, codes)
	lat := make([][]time.Duration, clients)
	next.Store(0)
	stopProfile := e.startProfile("exchange", time.Second)
	start = time.Now()
	for w := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= codes || firstErr.Load() != nil {
					return
				}
				t0 := time.Now()
				t, err := c.exchange(out[i])
				if err != nil {
					fail(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
				if err := seen.add(t); err != nil {
					fail(err)
					return
				}
				chains[i] = t.Refresh
			}
		})
	}
	wg.Wait()
	f.exchangePerSec = float64(codes) / time.Since(start).Seconds()
	stopProfile()
	if err, _ := firstErr.Load().(error); err != nil {
		return c, f, err
	}
	f.exchangeP99 = pct(flatten(lat), 99)

	// refresh_token grants: each client its own chain.
	if len(chains) < clients {
		return c, f, fmt.Errorf("need at least %d codes for %d refresh chains", clients, clients)
	}
	var stop atomic.Bool
	var refreshes atomic.Int64
	lat = make([][]time.Duration, clients)
	stopProfile = e.startProfile("refresh", d)
	start = time.Now()
	for w := range clients {
		wg.Go(func() {
			rt := chains[w]
			for !stop.Load() && firstErr.Load() == nil {
				t0 := time.Now()
				t, err := c.refresh(rt)
				if err != nil {
					fail(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
				refreshes.Add(1)
				if err := seen.add(t); err != nil {
					fail(err)
					return
				}
				rt = t.Refresh
			}
			chains[w] = rt
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	stopProfile()
	if err, _ := firstErr.Load().(error); err != nil {
		return c, f, err
	}
	f.refreshes = int(refreshes.Load())
	f.refreshPerSec = float64(f.refreshes) / elapsed.Seconds()
	f.refreshP99 = pct(flatten(lat), 99)

	// No rotation was lost: every chain's last refresh token works once
	// more, and the access token it yields is accepted by the gate.
	for w := range clients {
		t, err := c.refresh(chains[w])
		if err != nil {
			return c, f, fmt.Errorf("chain %d lost its last rotation: %w", w, err)
		}
		if err := seen.add(t); err != nil {
			return c, f, err
		}
		if err := e.callTool(c.http, "/mcp", t.Access); err != nil {
			return c, f, fmt.Errorf("chain %d: the newest access token is refused: %w", w, err)
		}
	}
	f.issued = seen.len()
	return c, f, nil
}

// startProfile profiles Caddy for d if the run asked for profiles.
func (e *env) startProfile(name string, d time.Duration) func() {
	if e.profile == nil {
		return func() {}
	}
	return e.profile(name, d)
}

// tokenSet checks that no token is ever handed out twice.
type tokenSet struct {
	mu   sync.Mutex
	seen map[string]bool
}

func newTokenSet() *tokenSet { return &tokenSet{seen: map[string]bool{}} }

func (s *tokenSet) add(t tokens) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range []string{t.Access, t.Refresh} {
		if s.seen[v] {
			return fmt.Errorf("a token was issued twice")
		}
		s.seen[v] = true
	}
	return nil
}

func (s *tokenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func flatten(v [][]time.Duration) []time.Duration {
	var all []time.Duration
	for _, l := range v {
		all = append(all, l...)
	}
	slices.Sort(all)
	return all
}
