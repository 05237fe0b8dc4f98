package caddymcp

import (
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// LeftoverLimits bound what anonymous callers can make the server store
// and leave behind: clients registered that never obtain a grant, or
// sign-ins approved on the consent page that never come back from
// GitHub. What comes to something (a client that obtains a grant, a
// sign-in that completes) stops counting at once, so these never limit
// how often legitimate clients come back. Counted in the state store, so
// instances sharing it enforce one bound.
type LeftoverLimits struct {
	// PerAddress bounds the records left by one client address (an IPv6
	// address counts as its /64). Past it, that address gets 429 with
	// Retry-After. Default: 1000 unused clients, 200 unfinished sign-ins.
	PerAddress int `json:"per_address,omitempty"`
	// Total bounds the records left by all addresses together. Past it,
	// addresses that already hold a few are refused; a newcomer is still
	// served. Default: 20000 unused clients, 10000 unfinished sign-ins.
	Total int `json:"total,omitempty"`
}

func (l *LeftoverLimits) oauth() oauth.LeftoverLimits {
	if l == nil {
		return oauth.LeftoverLimits{}
	}
	return oauth.LeftoverLimits{PerAddress: l.PerAddress, Total: l.Total}
}

// refreshConfig fills the oauth configuration's rules for refreshes that
// come back (retries, GitHub outages) and its bounds on leftovers.
func (m *MCPAuth) refreshConfig(cfg *oauth.Config) {
	if m.RefreshReuseGrace != nil {
		cfg.RefreshReuseGrace = time.Duration(*m.RefreshReuseGrace)
		if cfg.RefreshReuseGrace == 0 {
			cfg.RefreshReuseGrace = -1 // explicitly none: the strict rule
		}
	}
	cfg.RefreshReuseRetries = m.RefreshReuseRetries
	if m.GitHub != nil && m.GitHub.OutageGrace != nil {
		cfg.GitHubOutageGrace = time.Duration(*m.GitHub.OutageGrace)
		if cfg.GitHubOutageGrace == 0 {
			cfg.GitHubOutageGrace = -1 // explicitly none
		}
	}
	cfg.RegistrationLimits = m.RegistrationLimits.oauth()
	cfg.PendingSignIns = m.PendingSignIns.oauth()
}

// unmarshalLimits parses the block of `registration open` or of
// `pending_sign_ins`:
//
//	{
//		per_address <n>
//		total       <n>
//	}
func unmarshalLimits(d *caddyfile.Dispenser, opt string) (*LeftoverLimits, error) {
	l := new(LeftoverLimits)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var dst *int
		switch d.Val() {
		case "per_address":
			dst = &l.PerAddress
		case "total":
			dst = &l.Total
		default:
			return nil, d.Errf("unrecognized %s option %q", opt, d.Val())
		}
		if err := positiveInt(d, dst); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// unmarshalLimitsOption parses the options of this file, reporting
// whether opt was one of them:
//
//	pending_sign_ins {
//		per_address <n>
//		total       <n>
//	}
//	refresh_reuse_grace   <duration>
//	refresh_reuse_retries <n>
func (m *MCPAuth) unmarshalLimitsOption(d *caddyfile.Dispenser, opt string) (bool, error) {
	switch opt {
	case "pending_sign_ins":
		if d.NextArg() {
			return true, d.ArgErr()
		}
		if m.PendingSignIns != nil {
			return true, d.Err("pending_sign_ins may be given only once")
		}
		l, err := unmarshalLimits(d, opt)
		m.PendingSignIns = l
		return true, err
	case "refresh_reuse_grace":
		var s string
		if err := oneArg(d, &s); err != nil {
			return true, err
		}
		if m.RefreshReuseGrace != nil {
			return true, d.Err("refresh_reuse_grace may be given only once")
		}
		dur, err := caddy.ParseDuration(s)
		if err != nil || dur < 0 {
			return true, d.Errf("refresh_reuse_grace: %q is not a duration of zero or more", s)
		}
		g := caddy.Duration(dur)
		m.RefreshReuseGrace = &g
		return true, nil
	case "refresh_reuse_retries":
		if m.RefreshReuseRetries != 0 {
			return true, d.Err("refresh_reuse_retries may be given only once")
		}
		return true, positiveInt(d, &m.RefreshReuseRetries)
	}
	return false, nil
}

// positiveInt reads exactly one positive whole number into dst.
func positiveInt(d *caddyfile.Dispenser, dst *int) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return d.Errf("%s: %q is not a positive whole number", opt, s)
	}
	*dst = n
	return nil
}
