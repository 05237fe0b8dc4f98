package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// errForbiddenAddress is returned when a fetch would reach an address an
// outside party must not be able to make this server talk to.
var errForbiddenAddress = errors.New("the host resolves to a loopback, private, link-local or otherwise internal address")

// publicFetcher fetches documents that outside parties name by URL (Client
// ID Metadata Documents), so that naming one cannot make this server reach
// into its own network (SSRF). The check is made on the address actually
// dialed, after DNS resolution, so a name that resolves to 127.0.0.1, or
// that changes its answer between a check and the connection (DNS
// rebinding), is refused. Redirects are never followed.
type publicFetcher struct {
	client *http.Client
	// allowHosts may resolve to internal addresses: the operator's own
	// clients hosted inside their network, or a test server. An entry
	// is a host (any port) or host:port (that port only).
	allowHosts map[string]bool
	resolver   *net.Resolver
}

func newPublicFetcher(allowHosts []string, roots *x509.CertPool, timeout time.Duration) *publicFetcher {
	f := &publicFetcher{allowHosts: map[string]bool{}, resolver: net.DefaultResolver}
	for _, h := range allowHosts {
		f.allowHosts[strings.ToLower(h)] = true
	}
	dialer := &net.Dialer{Timeout: timeout}
	transport := &http.Transport{
		// Never an environment proxy: it would dial on our behalf,
		// past the address check.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := f.resolve(ctx, host, f.allowed(host, port))
			if err != nil {
				return nil, err
			}
			var lastErr error
			for _, ip := range ips {
				conn, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
				if err == nil {
					return conn, nil
				}
				lastErr = err
			}
			return nil, lastErr
		},
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
	}
	f.client = &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return f
}

// resolve returns the addresses of host that may be dialed: all of them
// for an allow-listed host, otherwise only public ones, and an error if
// any is not public (a name that mixes public and internal answers is
// refused outright rather than raced).
func (f *publicFetcher) resolve(ctx context.Context, host string, allowed bool) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		if !allowed && !publicAddr(ip) {
			return nil, errForbiddenAddress
		}
		return []netip.Addr{ip}, nil
	}
	ips, err := f.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolving the host: %w", err)
	}
	if len(ips) == 0 {
		return nil, errors.New("the host has no address")
	}
	if !allowed {
		for _, ip := range ips {
			if !publicAddr(ip) {
				return nil, errForbiddenAddress
			}
		}
	}
	return ips, nil
}

// globalUnicast6 is the IPv6 global unicast space (RFC 4291).
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// allowed reports whether the operator allow-listed host, on any port or
// on this one.
func (f *publicFetcher) allowed(host, port string) bool {
	host = strings.ToLower(host)
	return f.allowHosts[host] || f.allowHosts[net.JoinHostPort(host, port)]
}

// nonPublic lists ranges that are not globally reachable unicast space
// beyond what netip's predicates already cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT, also cloud-internal
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: could reach any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("2001::/32"),       // Teredo: embeds an IPv4 address
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (ORCHID, benchmarking, ...)
}

// publicAddr reports whether ip is a globally routable unicast address:
// not loopback, private (RFC 1918, unique-local), link-local (which holds
// the cloud metadata service at 169.254.169.254), multicast, unspecified
// or one of the special ranges above.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() && !globalUnicast6.Contains(ip.WithZone("")) {
		// Only 2000::/3 is assigned for global unicast; everything else
		// (IPv4-compatible ::a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d,
		// site-local fec0::/10, discard 100::/64, ...) is refused rather
		// than enumerated.
		return false
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}
