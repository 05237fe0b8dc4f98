package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8":             true,
		"2606:4700::1111":     true,
		"127.0.0.1":           false,
		"127.1.2.3":           false,
		"::1":                 false,
		"10.1.2.3":            false,
		"172.16.0.1":          false,
		"192.168.1.1":         false,
		"169.254.169.254":     false, // cloud metadata service
		"fd00:ec2::254":       false, // AWS metadata over IPv6 (unique local)
		"fe80::1":             false,
		"100.64.0.1":          false,
		"0.0.0.0":             false,
		"::":                  false,
		"224.0.0.1":           false,
		"255.255.255.255":     false,
		"::ffff:127.0.0.1":    false, // mapped loopback
		"::ffff:8.8.8.8":      true,
		"64:ff9b::7f00:1":     false, // NAT64 of 127.0.0.1
		"2002:7f00:1::1":      false, // 6to4 of 127.0.0.1
		"2001:0:4136:e378::1": false, // Teredo
		"192.0.2.1":           false,
		"198.18.0.1":          false,
		"fe80::1%eth0":        false,
	} {
		if got := publicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestFetcherRefusesBeforeDialing: the guard refuses an internal address
// whether named by IP or resolved from a name, and passes allow-listed
// hosts through to the dial.
func TestFetcherRefusesBeforeDialing(t *testing.T) {
	f := newPublicFetcher([]string{"Internal.Example"}, nil, time.Second)
	ctx := context.Background()
	for _, host := range []string{"127.0.0.1", "localhost", "10.0.0.1", "[::1]"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+":1/doc.json", nil)
		_, err := f.client.Do(req)
		if !errors.Is(err, errForbiddenAddress) {
			t.Errorf("%s: %v, want the address refused", host, err)
		}
	}
	if ips, err := f.resolve(ctx, "127.0.0.1", f.allowed("127.0.0.1", "443")); err == nil {
		t.Errorf("resolve(127.0.0.1) = %v", ips)
	}
	if !f.allowed("INTERNAL.example", "8443") {
		t.Errorf("allow-listed hosts are not case-insensitive, or not on every port")
	}
	ported := newPublicFetcher([]string{"127.0.0.1:8443", "[::1]:9443"}, nil, time.Second)
	for _, tc := range []struct {
		host, port string
		want       bool
	}{{"127.0.0.1", "8443", true}, {"127.0.0.1", "443", false}, {"::1", "9443", true}, {"::1", "8443", false}} {
		if got := ported.allowed(tc.host, tc.port); got != tc.want {
			t.Errorf("allowed(%s, %s) = %v with host:port entries", tc.host, tc.port, got)
		}
	}
	if ips, err := ported.resolve(ctx, "127.0.0.1", ported.allowed("127.0.0.1", "8443")); err != nil || len(ips) != 1 {
		t.Errorf("allow-listed resolve = %v, %v", ips, err)
	}
}

func TestCacheTTL(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                      time.Hour,
		"max-age=600":           10 * time.Minute,
		"public, max-age=5":     cimdMinTTL,
		"max-age=999999999999":  cimdMaxTTL,
		"max-age=-1":            time.Hour,
		"no-store":              cimdMinTTL,
		"max-age=600, no-cache": cimdMinTTL,
		`max-age="120"`:         2 * time.Minute,
		"max-age=abc":           time.Hour,
	} {
		h := http.Header{}
		if cc != "" {
			h.Set("Cache-Control", cc)
		}
		if got := cacheTTL(h); got != want {
			t.Errorf("cacheTTL(%q) = %v, want %v", cc, got, want)
		}
	}
}

func TestCheckClientIDURL(t *testing.T) {
	for id, ok := range map[string]bool{
		"https://app.example/client.json":                  true,
		"https://app.example:8443/c/meta.json":             true,
		"https://app.example/c?v=1":                        true,
		"https://app.example":                              false,
		"https://app.example/":                             false,
		"http://app.example/client.json":                   false,
		"https://user@app.example/c.json":                  false,
		"https://app.example/c.json#frag":                  false,
		"https://app.example/a/../c.json":                  false,
		"https://app.example/a/./c.json":                   false,
		"https://app.example/a/%2e%2e/c.json":              false,
		"https:opaque":                                     false,
		"https://аpp.example/c.json":                       false, // Cyrillic а
		"https://app.example/a/.%2e/c.json":                false,
		"https://app.example/a/%2E./c.json":                false,
		"https://:443/c.json":                              false,
		"https://app.example/" + strings.Repeat("a", 1100): false,
	} {
		if err := checkClientIDURL(id); (err == nil) != ok {
			t.Errorf("checkClientIDURL(%q) = %v, want ok %v", id, err, ok)
		}
	}
}

func TestRateLimiter(t *testing.T) {
	l := newRateLimiter(3, time.Minute)
	now := time.Unix(1_000_000, 0)
	for i := range 3 {
		if !l.allow("192.0.2.1", now) {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if l.allow("192.0.2.1", now) {
		t.Errorf("the burst was exceeded")
	}
	if !l.allow("192.0.2.2", now) {
		t.Errorf("another address shares the bucket")
	}
	if !l.allow("192.0.2.1", now.Add(time.Minute)) {
		t.Errorf("no token came back after a minute")
	}
	// One IPv6 host holds a /64: its addresses share a bucket.
	for i := range 3 {
		l.allow("2001:db8::"+string(rune('a'+i)), now)
	}
	if l.allow("2001:db8::ffff", now) {
		t.Errorf("addresses of one /64 have separate buckets")
	}
	// The map stays bounded.
	for i := range maxBuckets + 10 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(), now)
	}
	if len(l.buckets) > maxBuckets || len(l.buckets) < maxBuckets/3 {
		t.Errorf("%d buckets, want at most %d and not all forgotten at once", len(l.buckets), maxBuckets)
	}
}
