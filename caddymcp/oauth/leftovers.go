package oauth

import (
	"sync"
	"time"
)

// An anonymous caller can make this server store things: a client it
// registers, a sign-in it approves on the consent page and never brings
// back from GitHub. Those are what must be bounded, not how often anyone
// comes back: hosted clients (Claude.ai, ChatGPT) register from a handful
// of egress addresses for all of their users, and a company signs in from
// behind one NAT. So a leftovers ledger counts, per client address, the
// records that have not (yet) come to anything (a client with no grant, a
// sign-in with no callback), and forgets each the moment it does (the
// client obtains a grant, the callback arrives) or when the store would
// have collected it. A registration or sign-in that goes on to complete
// never counts against anyone.
//
// Past the bound of one address, that address is refused until its oldest
// record would have been collected. Past the server-wide bound, only
// addresses that already hold a few are refused: a newcomer from a fresh
// address is still served while others flood, so the total may exceed
// the bound by those few per address, up to a hard ceiling of twice the
// bound that only a flood from very many addresses reaches.
//
// The ledger is in memory and per process: a restart forgets it, and N
// instances each allow the bounds (the store's own sweeping still
// collects everything left behind).
type leftovers struct {
	perAddress int
	total      int
	ttl        time.Duration // how long the store keeps such a record

	mu       sync.Mutex
	byAddr   map[string]map[string]time.Time // address -> key -> expiry
	addrOf   map[string]string               // key -> address
	lastWalk time.Time                       // of expireAll
}

// LeftoverLimits bound what anonymous callers leave behind; see
// Config.RegistrationLimits and Config.PendingSignIns.
type LeftoverLimits struct {
	// PerAddress bounds the records from one client address (an IPv6
	// address counts as its /64).
	PerAddress int
	// Total bounds the records from all addresses together; addresses
	// that hold fewer than leftoverFloor are served past it.
	Total int
}

// leftoverFloor is how many records an address may hold even when the
// server-wide bound is reached, so that a flood from other addresses
// never locks a newcomer out.
const leftoverFloor = 5

// maxLeftoverWait caps the Retry-After of a refusal: the honest wait
// (until the address's oldest record expires) can be a day.
const maxLeftoverWait = time.Hour

func newLeftovers(l LeftoverLimits, ttl time.Duration) *leftovers {
	return &leftovers{
		perAddress: l.PerAddress,
		total:      l.Total,
		ttl:        ttl,
		byAddr:     map[string]map[string]time.Time{},
		addrOf:     map[string]string{},
	}
}

// add records key as left behind by addr, unless a bound refuses it; then
// it returns false and how long to wait before trying again.
func (l *leftovers) add(addr, key string, now time.Time) (ok bool, retryAfter time.Duration) {
	addr = limitKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.byAddr[addr]) >= l.perAddress {
		l.expire(addr, now)
		if items := l.byAddr[addr]; len(items) >= l.perAddress {
			return false, l.wait(items, now)
		}
	}
	if len(l.addrOf) >= l.total && len(l.byAddr[addr]) >= leftoverFloor || len(l.addrOf) >= 2*l.total {
		l.expireAll(now)
		held := len(l.byAddr[addr])
		if len(l.addrOf) >= l.total && held >= leftoverFloor || len(l.addrOf) >= 2*l.total {
			return false, time.Minute
		}
	}
	items := l.byAddr[addr]
	if items == nil {
		items = map[string]time.Time{}
		l.byAddr[addr] = items
	}
	items[key] = now.Add(l.ttl)
	l.addrOf[key] = addr
	return true, 0
}

// done forgets key: the record came to something (or was never stored).
// Unknown keys are ignored.
func (l *leftovers) done(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	addr, ok := l.addrOf[key]
	if !ok {
		return
	}
	delete(l.addrOf, key)
	items := l.byAddr[addr]
	delete(items, key)
	if len(items) == 0 {
		delete(l.byAddr, addr)
	}
}

// held returns how many records addr holds; for tests.
func (l *leftovers) held(addr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byAddr[limitKey(addr)])
}

// expire drops the records of addr that the store has collected by now.
func (l *leftovers) expire(addr string, now time.Time) {
	items := l.byAddr[addr]
	for k, exp := range items {
		if !now.Before(exp) {
			delete(items, k)
			delete(l.addrOf, k)
		}
	}
	if len(items) == 0 {
		delete(l.byAddr, addr)
	}
}

// expireAll drops every collected record. It walks the whole ledger, so
// under a flood that keeps the server-wide bound reached it runs at most
// once a second.
func (l *leftovers) expireAll(now time.Time) {
	if now.Sub(l.lastWalk) < time.Second && !now.Before(l.lastWalk) {
		return
	}
	l.lastWalk = now
	for addr := range l.byAddr {
		l.expire(addr, now)
	}
}

// wait is how long until the oldest of items expires, at least a second
// and at most maxLeftoverWait.
func (l *leftovers) wait(items map[string]time.Time, now time.Time) time.Duration {
	oldest := now.Add(l.ttl)
	for _, exp := range items {
		if exp.Before(oldest) {
			oldest = exp
		}
	}
	return min(max(oldest.Sub(now), time.Second), maxLeftoverWait)
}
