package caddymcp

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// How clients may become known to the authorization server, and which
// users may be granted which scopes: the configuration behind the
// registration, client_id_metadata_documents, client and restrict_scope
// options of mcp_auth.

// CIMDConfig configures Client ID Metadata Documents: clients whose
// client_id is the https URL of a JSON document describing them, which the
// server fetches (at most 5 KB, within 5 s, never following redirects,
// cached by its Cache-Control between 1 minute and 24 hours).
type CIMDConfig struct {
	// Disabled turns metadata documents off; an https client_id is then
	// refused. Default: false (on).
	Disabled bool `json:"disabled,omitempty"`
	// AllowHosts may resolve to loopback, private or link-local
	// addresses: each a host (any port) or host:port (that port only).
	// Documents are otherwise fetched only from public addresses,
	// checked after DNS resolution, so that a client_id cannot make the
	// server reach into its own network. Default: none.
	AllowHosts []string `json:"allow_hosts,omitempty"`
	// TrustedCAFiles are PEM files of certificate authorities trusted for
	// the documents' servers instead of the system's. Default: the
	// system's trust store.
	TrustedCAFiles []string `json:"trusted_ca_files,omitempty"`
}

// StaticClient is a client the operator registers in the configuration,
// for clients that cannot register themselves.
type StaticClient struct {
	// ID is the client_id, without colons or spaces. Required.
	ID string `json:"id"`
	// Secret makes the client confidential (client_secret_basic or
	// client_secret_post). Placeholders such as {env.*} are replaced.
	// Default: none, a public client.
	Secret string `json:"secret,omitempty"`
	// Name is shown on the consent page. Default: none.
	Name string `json:"name,omitempty"`
	// RedirectURIs are the client's redirect URIs, with the same rules as
	// for registration. Required.
	RedirectURIs []string `json:"redirect_uris"`
}

// ScopeRestriction restricts a scope to some GitHub users, organization
// members and team members: only they are granted it. Other users get
// their tokens without it, and resources that require it answer them 403.
type ScopeRestriction struct {
	// Scope is the restricted scope. Required.
	Scope string `json:"scope"`
	// Audience's allow_users, allow_orgs and allow_teams name the GitHub
	// users, organizations and teams (org/team-slug) whose members may
	// be granted the scope. At least one is required.
	githubidp.Audience
}

// clientsConfig fills the parts of the oauth configuration about clients.
func (m *MCPAuth) clientsConfig(cfg *oauth.Config, repl *caddy.Replacer) error {
	switch m.Registration {
	case "", "open":
	case "closed":
		cfg.RegistrationClosed = true
	default:
		return fmt.Errorf("registration must be open or closed, not %q", m.Registration)
	}
	if c := m.ClientIDMetadataDocuments; c != nil {
		cfg.CIMD.Disabled = c.Disabled
		cfg.CIMD.AllowHosts = c.AllowHosts
		if len(c.TrustedCAFiles) > 0 {
			pool := x509.NewCertPool()
			for _, f := range c.TrustedCAFiles {
				pem, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("client_id_metadata_documents: %w", err)
				}
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("client_id_metadata_documents: %s holds no PEM certificate", f)
				}
			}
			cfg.CIMD.RootCAs = pool
		}
	}
	for _, c := range m.Clients {
		cfg.Clients = append(cfg.Clients, oauth.StaticClient{
			ID:           c.ID,
			Secret:       repl.ReplaceKnown(c.Secret, ""),
			Name:         c.Name,
			RedirectURIs: c.RedirectURIs,
		})
	}
	// Rate limits count the client Caddy sees, which honours the
	// server's trusted_proxies.
	cfg.ClientAddr = func(r *http.Request) string {
		if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
			return ip
		}
		// Without Caddy's variable (never in a served request): the
		// connection's address without its port, which would otherwise
		// give every connection a bucket of its own.
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			return host
		}
		return r.RemoteAddr
	}
	return nil
}

// scopeRules converts the scope restrictions for the identity provider.
func (m *MCPAuth) scopeRules() []githubidp.ScopeRule {
	rules := make([]githubidp.ScopeRule, len(m.RestrictScopes))
	for i, r := range m.RestrictScopes {
		rules[i] = githubidp.ScopeRule{Scope: r.Scope, Allow: r.Audience}
	}
	return rules
}

// unmarshalClientsOption parses the client-related options of mcp_auth,
// reporting false for an option that is not one of them:
//
//	registration open [{
//		per_address <n>
//		total       <n>
//	}] | closed
//	client_id_metadata_documents on|off [{
//		allow_hosts     <host...>
//		trusted_ca_file <pem-file...>
//	}]
//	client <id> {
//		secret        <secret>
//		name          <name>
//		redirect_uris <uri...>
//	}
//	restrict_scope <scope> {
//		allow_users <login...>
//		allow_orgs  <org...>
//		allow_teams <org/team-slug...>
//	}
func (m *MCPAuth) unmarshalClientsOption(d *caddyfile.Dispenser, opt string) (bool, error) {
	switch opt {
	case "registration":
		if err := oneArg(d, &m.Registration); err != nil {
			return true, err
		}
		if m.Registration != "open" && m.Registration != "closed" {
			return true, d.Errf("registration must be open or closed, not %q", m.Registration)
		}
		l, err := unmarshalLimits(d, "registration")
		if err != nil {
			return true, err
		}
		if *l != (LeftoverLimits{}) {
			if m.Registration != "open" {
				return true, d.Err("only registration open takes limits")
			}
			m.RegistrationLimits = l
		}
	case "client_id_metadata_documents":
		var onOff string
		if err := oneArgOrBlock(d, &onOff); err != nil {
			return true, err
		}
		if m.ClientIDMetadataDocuments != nil {
			return true, d.Err("client_id_metadata_documents may be given only once")
		}
		c := new(CIMDConfig)
		switch onOff {
		case "on", "":
		case "off":
			c.Disabled = true
		default:
			return true, d.Errf("client_id_metadata_documents must be on or off, not %q", onOff)
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "allow_hosts":
				if err := someArgs(d, &c.AllowHosts); err != nil {
					return true, err
				}
			case "trusted_ca_file":
				if err := someArgs(d, &c.TrustedCAFiles); err != nil {
					return true, err
				}
			default:
				return true, d.Errf("unrecognized client_id_metadata_documents option %q", d.Val())
			}
		}
		m.ClientIDMetadataDocuments = c
	case "client":
		var c StaticClient
		if err := oneArgOrBlock(d, &c.ID); err != nil {
			return true, err
		}
		if c.ID == "" {
			return true, d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "secret":
				if err := oneArg(d, &c.Secret); err != nil {
					return true, err
				}
			case "name":
				if err := oneArg(d, &c.Name); err != nil {
					return true, err
				}
			case "redirect_uris":
				if err := someArgs(d, &c.RedirectURIs); err != nil {
					return true, err
				}
			default:
				return true, d.Errf("unrecognized client option %q", d.Val())
			}
		}
		if len(c.RedirectURIs) == 0 {
			return true, d.Errf("client %s needs redirect_uris", c.ID)
		}
		m.Clients = append(m.Clients, c)
	case "restrict_scope":
		var r ScopeRestriction
		if err := oneArgOrBlock(d, &r.Scope); err != nil {
			return true, err
		}
		if r.Scope == "" {
			return true, d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			if ok, err := unmarshalAudienceOption(d, &r.Audience); err != nil {
				return true, err
			} else if !ok {
				return true, d.Errf("unrecognized restrict_scope option %q", d.Val())
			}
		}
		if r.Empty() {
			return true, d.Errf("restrict_scope %s needs allow_users, allow_orgs or allow_teams", r.Scope)
		}
		m.RestrictScopes = append(m.RestrictScopes, r)
	default:
		return false, nil
	}
	return true, nil
}

// oneArgOrBlock reads one optional argument on a line that may open a
// block.
func oneArgOrBlock(d *caddyfile.Dispenser, dst *string) error {
	if d.NextArg() {
		*dst = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}
