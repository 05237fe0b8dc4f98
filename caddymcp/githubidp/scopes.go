package githubidp

import (
	"context"
	"fmt"
)

// ScopeRule restricts a scope of the authorization server to some GitHub
// users, organization members and team members: only they may be granted
// it. Scopes without a rule may be granted to every admitted user.
type ScopeRule struct {
	Scope string
	Allow Audience
}

// scopeRule is a ScopeRule with its audience compiled.
type scopeRule struct {
	scope string
	allow audience
}

func compileScopeRules(rules []ScopeRule) ([]scopeRule, error) {
	out := make([]scopeRule, 0, len(rules))
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Scope == "" || seen[r.Scope] {
			return nil, fmt.Errorf("githubidp: scope rule %q is empty or given twice", r.Scope)
		}
		seen[r.Scope] = true
		allow, err := r.Allow.compile()
		if err != nil {
			return nil, err
		}
		if allow.empty() {
			return nil, fmt.Errorf("githubidp: scope %q is restricted to nobody; name users, orgs or teams", r.Scope)
		}
		out = append(out, scopeRule{scope: r.Scope, allow: allow})
	}
	return out, nil
}

// withheldScopes returns the restricted scopes that member m may not be
// granted, asking GitHub for their organizations and teams only as far as
// the rules need (and reusing what the allow-lists already read). Rules
// naming users match the login GitHub reports now, which Admit read: a
// renamed user is matched by their new login, not the one stored at
// sign-in.
func (p *Provider) withheldScopes(ctx context.Context, m *member) ([]string, error) {
	var withheld []string
	for _, r := range p.scopeRules {
		ok, err := m.in(ctx, r.allow)
		if err != nil {
			return nil, err
		}
		if !ok {
			withheld = append(withheld, r.scope)
		}
	}
	return withheld, nil
}
