package caddymcp

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mcp_auth", parseCaddyfile)
	// With the other authentication directives: before any handle,
	// reverse_proxy or file_server that could serve a protected path.
	httpcaddyfile.RegisterDirectiveOrder("mcp_auth", httpcaddyfile.After, "basic_auth")

	httpcaddyfile.RegisterHandlerDirective("mcp_server", parseMCPServer)
	// A terminal handler, like reverse_proxy, which it sits next to.
	httpcaddyfile.RegisterDirectiveOrder("mcp_server", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(MCPAuth)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mcp_auth {
//		issuer            <url>
//		github {
//			client_id      <id>
//			client_secret  <secret>
//			enterprise_url <url>
//			scopes         <scope...>
//			outage_grace   <duration>
//		}
//		allow_users       <login...>
//		allow_orgs        <org...>
//		allow_teams       <org/team-slug...>
//		protect           <path...> [{
//			scopes               <scope...>
//			forward_github_token <header>
//		}]
//		scopes_supported  <scope...>
//		storage           <backend> [<args...>]
//		access_token_ttl  <duration>
//		refresh_token_ttl <duration>
//		refresh_reuse_grace   <duration>
//		refresh_reuse_retries <n>
//		secret_key        <base64> [<previous base64>...]
//		health_path       <path>
//		registration      open [{
//			per_address <n>
//			total       <n>
//		}] | closed
//		pending_sign_ins {
//			per_address <n>
//			total       <n>
//		}
//		client_id_metadata_documents on|off [{
//			allow_hosts     <host...>
//			trusted_ca_file <pem-file...>
//		}]
//		client <id> {
//			secret        <secret>
//			name          <name>
//			redirect_uris <uri...>
//		}
//		restrict_scope <scope> {
//			allow_users <login...>
//			allow_orgs  <org...>
//			allow_teams <org/team-slug...>
//		}
//	}
//
// The list options may be repeated; their values add up. Each protect line
// adds its paths, with the scopes of its block, if any.
func (m *MCPAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "issuer":
			if err := oneArg(d, &m.Issuer); err != nil {
				return err
			}
		case "github":
			if d.NextArg() {
				return d.ArgErr()
			}
			if m.GitHub != nil {
				return d.Err("github may be given only once")
			}
			m.GitHub = new(GitHubConfig)
			if err := m.GitHub.unmarshal(d); err != nil {
				return err
			}
		case "allow_users", "allow_orgs", "allow_teams":
			if _, err := unmarshalAudienceOption(d, &m.Audience); err != nil {
				return err
			}
		case "protect":
			var paths []string
			if err := someArgs(d, &paths); err != nil {
				return err
			}
			for _, p := range paths {
				if err := oauth.CheckProtectedPath(p); err != nil {
					return d.Errf("protect: %v", err)
				}
			}
			var opts ProtectedPath
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "scopes":
					if err := someArgs(d, &opts.Scopes); err != nil {
						return err
					}
				case "forward_github_token":
					if err := oneArg(d, &opts.ForwardGitHubToken); err != nil {
						return err
					}
				default:
					return d.Errf("unrecognized protect option %q", d.Val())
				}
			}
			for _, p := range paths {
				opts.Path = p
				m.Protect = append(m.Protect, opts)
			}
		case "scopes_supported":
			if err := someArgs(d, &m.ScopesSupported); err != nil {
				return err
			}
		case "storage":
			if m.StorageRaw != nil {
				return d.Err("storage may be given only once")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			mod, err := caddyfile.UnmarshalModule(d, "mcp_auth.storage."+name)
			if err != nil {
				return err
			}
			m.StorageRaw = caddyconfig.JSONModuleObject(mod, "backend", name, nil)
		case "access_token_ttl":
			if err := positiveDuration(d, &m.AccessTokenTTL); err != nil {
				return err
			}
		case "refresh_token_ttl":
			if err := positiveDuration(d, &m.RefreshTokenTTL); err != nil {
				return err
			}
		case "secret_key":
			var keys []string
			if err := someArgs(d, &keys); err != nil {
				return err
			}
			if m.SecretKey != "" {
				return d.Err("secret_key may be given only once")
			}
			m.SecretKey, m.PreviousSecretKeys = keys[0], keys[1:]
		case "health_path":
			if err := oneArg(d, &m.HealthPath); err != nil {
				return err
			}
		default:
			ok, err := m.unmarshalClientsOption(d, opt)
			if err != nil {
				return err
			}
			if !ok {
				ok, err = m.unmarshalLimitsOption(d, opt)
				if err != nil {
					return err
				}
			}
			if !ok {
				return d.Errf("unrecognized mcp_auth option %q", opt)
			}
		}
	}
	return nil
}

func (g *GitHubConfig) unmarshal(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "client_id":
			if err := oneArg(d, &g.ClientID); err != nil {
				return err
			}
		case "client_secret":
			if err := oneArg(d, &g.ClientSecret); err != nil {
				return err
			}
		case "enterprise_url":
			if err := oneArg(d, &g.EnterpriseURL); err != nil {
				return err
			}
		case "scopes":
			if err := someArgs(d, &g.Scopes); err != nil {
				return err
			}
		case "outage_grace":
			var s string
			if err := oneArg(d, &s); err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil || dur < 0 || g.OutageGrace != nil {
				return d.Errf("outage_grace: %q must be given once, as a duration of zero or more", s)
			}
			od := caddy.Duration(dur)
			g.OutageGrace = &od
		default:
			return d.Errf("unrecognized github option %q", opt)
		}
	}
	if g.ClientID == "" || g.ClientSecret == "" {
		return d.Err("github needs client_id and client_secret")
	}
	return nil
}

// oneArg reads exactly one argument into dst; giving an option twice is an
// error rather than a silent override.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	if *dst != "" {
		return d.Errf("%s may be given only once", opt)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// positiveDuration reads exactly one argument, a duration greater than
// zero, into dst. Like the other options that take one value, giving it
// again replaces the value.
func positiveDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur <= 0 {
		return d.Errf("%s: %q is not a positive duration", opt, s)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// unmarshalAudienceOption parses the option d is on into a, if it is one
// of an audience's, reporting false otherwise: mcp_auth's allow-lists
// and restrict_scope's share them.
//
//	allow_users <login|id:n...>
//	allow_orgs  <org...>
//	allow_teams <org/team-slug...>
func unmarshalAudienceOption(d *caddyfile.Dispenser, a *githubidp.Audience) (bool, error) {
	var dst *[]string
	switch d.Val() {
	case "allow_users":
		dst = &a.Users
	case "allow_orgs":
		dst = &a.Orgs
	case "allow_teams":
		dst = &a.Teams
	default:
		return false, nil
	}
	return true, someArgs(d, dst)
}

// someArgs appends one or more arguments to dst.
func someArgs(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	for _, a := range args {
		if strings.TrimSpace(a) == "" {
			return d.Errf("%s: empty value", d.Val())
		}
	}
	*dst = append(*dst, args...)
	return nil
}

func parseMCPServer(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(MCPServer)
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return s, err
}

// UnmarshalCaddyfile sets up the MCP server from Caddyfile tokens. Syntax:
//
//	mcp_server [{
//		allowed_origins      <origin...>
//		max_request_body     <size>
//		session_idle_timeout <duration>
//	}]
func (s *MCPServer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "allowed_origins":
			if err := someArgs(d, &s.AllowedOrigins); err != nil {
				return err
			}
		case "max_request_body":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size == 0 || size > 1<<30 {
				return d.Errf("max_request_body: %q is not a size between 1B and 1GiB", v)
			}
			s.MaxRequestBody = int64(size)
		case "session_idle_timeout":
			if err := positiveDuration(d, &s.SessionIdleTimeout); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mcp_server option %q", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*MCPAuth)(nil)
	_ caddyfile.Unmarshaler = (*MCPServer)(nil)
)
