package oauth

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// rateLimiter is a token bucket per client address, for the endpoints that
// make this server do work on an anonymous request's behalf: registering a
// client (a stored record) and fetching a client metadata document (an
// outgoing request). It is in memory and per process: it bounds abuse, it
// is not an accounting.
type rateLimiter struct {
	burst float64       // tokens a fresh address starts with
	every time.Duration // one token comes back this often

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the memory of a limiter; when it is full, buckets that
// have refilled completely (and so carry no information) are dropped.
const maxBuckets = 10000

func newRateLimiter(burst int, every time.Duration) *rateLimiter {
	return &rateLimiter{burst: float64(burst), every: every, buckets: map[string]*bucket{}}
}

// allow takes a token for addr, reporting whether one was left.
func (l *rateLimiter) allow(addr string, now time.Time) bool {
	addr = limitKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.last))/float64(l.every))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune drops full buckets, which carry no information. If that frees
// too little (a flood from many addresses), it drops a random half: the
// map must not grow, and forgetting some addresses only gives them a new
// burst, which the server-wide limits still bound.
func (l *rateLimiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.last))/float64(l.every) >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < maxBuckets*9/10 {
		return
	}
	n := len(l.buckets) / 2
	for k := range l.buckets { // map order is random
		if n == 0 {
			break
		}
		delete(l.buckets, k)
		n--
	}
}

// remoteAddr is the default client address: the IP of the connection.
// Behind a proxy, Config.ClientAddr should name the real client.
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limitKey groups IPv6 addresses by their /64: one host usually holds a
// whole /64, so counting single addresses would not limit it at all.
func limitKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.String()
	}
	return ip.String()
}
