package caddymcp

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// TestRefreshConfig: an unset grace takes the default, an explicit 0 is
// the strict rule (which oauth spells as negative), and the limits pass
// through as configured.
func TestRefreshConfig(t *testing.T) {
	zero, ten := caddy.Duration(0), caddy.Duration(10*time.Second)
	for _, tc := range []struct {
		name  string
		grace *caddy.Duration
		want  time.Duration
	}{
		{"unset", nil, 0},
		{"zero", &zero, -1},
		{"ten seconds", &ten, 10 * time.Second},
	} {
		m := &MCPAuth{RefreshReuseGrace: tc.grace, RefreshReuseRetries: 3, GitHub: &GitHubConfig{OutageGrace: tc.grace},
			RegistrationLimits: &LeftoverLimits{PerAddress: 7}, PendingSignIns: &LeftoverLimits{Total: 9}}
		var cfg oauth.Config
		m.refreshConfig(&cfg)
		if cfg.RefreshReuseGrace != tc.want || cfg.RefreshReuseRetries != 3 || cfg.GitHubOutageGrace != tc.want {
			t.Errorf("%s: grace %v outage grace %v retries %d, want %v, %[5]v and 3", tc.name, cfg.RefreshReuseGrace, cfg.GitHubOutageGrace, cfg.RefreshReuseRetries, tc.want)
		}
		if cfg.RegistrationLimits != (oauth.LeftoverLimits{PerAddress: 7}) || cfg.PendingSignIns != (oauth.LeftoverLimits{Total: 9}) {
			t.Errorf("%s: limits %+v %+v", tc.name, cfg.RegistrationLimits, cfg.PendingSignIns)
		}
	}
}
