package githubidp_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestWithheldScopes: at sign-in (Admit), each user is withheld exactly the restricted scopes
// no rule grants them, and GitHub is asked for organizations and teams
// once each however many rules need them.
func TestWithheldScopes(t *testing.T) {
	gh, base := fake(t)
	p, rec := provider(t, base, func(c *githubidp.Config) {
		c.ScopeRules = []githubidp.ScopeRule{
			{Scope: "admin", Allow: githubidp.Audience{Teams: []string{"Acme/Platform"}}},
			{Scope: "write", Allow: githubidp.Audience{Orgs: []string{"ACME"}, Users: []string{"carol"}}},
			{Scope: "billing", Allow: githubidp.Audience{Teams: []string{"acme/sales"}}},
			{Scope: "ops", Allow: githubidp.Audience{Orgs: []string{"nobody-org"}}},
		}
	})
	ctx := context.Background()
	for login, want := range map[string][]string{
		"alice": {"billing", "ops"},          // acme, acme/platform
		"bob":   {"admin", "write", "ops"},   // other, acme/sales
		"carol": {"admin", "billing", "ops"}, // named for write
	} {
		before := len(rec.requests())
		_, got, err := p.Admit(ctx, token(t, gh, login))
		if err != nil {
			t.Fatalf("%s: %v", login, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: withheld %v, want %v", login, got, want)
		}
		calls := strings.Join(rec.requests()[before:], ",")
		if strings.Count(calls, "/user/orgs") > 1 || strings.Count(calls, "/user/teams") > 1 {
			t.Errorf("%s: lists read more than once: %s", login, calls)
		}
	}

	none, _ := provider(t, base, nil)
	before := gh.Calls("/user/orgs")
	if _, got, err := none.Admit(ctx, token(t, gh, "bob")); got != nil || err != nil {
		t.Errorf("without rules: %v, %v", got, err)
	}
	if gh.Calls("/user/orgs") != before {
		t.Errorf("without rules, GitHub was asked")
	}

	// A revoked GitHub token is an error, not "withhold everything".
	gh.RevokeUserTokens("alice")
	tok := token(t, gh, "alice")
	gh.RevokeToken(tok.AccessToken)
	if _, _, err := p.Admit(ctx, tok); err == nil {
		t.Errorf("a revoked token gave an answer")
	}
}

func TestScopeRulesChecked(t *testing.T) {
	for name, rules := range map[string][]githubidp.ScopeRule{
		"nobody":   {{Scope: "admin"}},
		"twice":    {{Scope: "admin", Allow: githubidp.Audience{Users: []string{"a"}}}, {Scope: "admin", Allow: githubidp.Audience{Users: []string{"b"}}}},
		"no scope": {{Allow: githubidp.Audience{Users: []string{"a"}}}},
		"bad team": {{Scope: "admin", Allow: githubidp.Audience{Teams: []string{"platform"}}}},
	} {
		_, err := githubidp.New(githubidp.Config{ClientID: "a", ClientSecret: "b", ScopeRules: rules})
		if err == nil {
			t.Errorf("%s: rules %+v accepted", name, rules)
		}
	}
}

// TestWithheldScopesFollowRenames: a rule naming users matches the login
// GitHub reports now, not the one the grant stored at sign-in.
func TestWithheldScopesFollowRenames(t *testing.T) {
	gh, base := fake(t)
	p, _ := provider(t, base, func(c *githubidp.Config) {
		c.ScopeRules = []githubidp.ScopeRule{{Scope: "admin", Allow: githubidp.Audience{Users: []string{"alice"}}}}
	})
	ctx := context.Background()
	tok := token(t, gh, "alice")
	stored := store.Identity{ID: 1001, Login: "alice"}
	if _, got, err := p.Recheck(ctx, tok, stored); err != nil || len(got) != 0 {
		t.Fatalf("alice: %v %v, want nothing withheld", got, err)
	}
	gh.RenameUser("alice", "alice-left")
	if _, got, err := p.Recheck(ctx, tok, stored); err != nil || !slices.Equal(got, []string{"admin"}) {
		t.Errorf("after renaming away from alice: %v %v, want admin withheld", got, err)
	}
	bobTok := token(t, gh, "bob")
	gh.RenameUser("bob", "alice")
	if _, got, err := p.Recheck(ctx, bobTok, store.Identity{ID: 1002, Login: "bob"}); err != nil || len(got) != 0 {
		t.Errorf("bob renamed to alice: %v %v, want nothing withheld (the rule names the login)", got, err)
	}
}

// TestAllowListsAndScopeRulesShareOneReading: when the allow-lists and
// the scope rules both need a user's organizations and teams, a sign-in
// and a refresh each read the user and each list from GitHub once.
func TestAllowListsAndScopeRulesShareOneReading(t *testing.T) {
	gh, base := fake(t)
	p, rec := provider(t, base, func(c *githubidp.Config) {
		c.Allow.Orgs = []string{"acme"}
		c.Allow.Teams = []string{"acme/sales"}
		c.ScopeRules = []githubidp.ScopeRule{
			{Scope: "admin", Allow: githubidp.Audience{Teams: []string{"acme/platform"}}},
			{Scope: "write", Allow: githubidp.Audience{Orgs: []string{"acme"}}},
		}
	})
	ctx := context.Background()
	tok := token(t, gh, "bob") // other, acme/sales: admitted by team
	for _, step := range []string{"sign-in", "refresh"} {
		before := len(rec.requests())
		var withheld []string
		var err error
		if step == "sign-in" {
			_, withheld, err = p.Admit(ctx, tok)
		} else {
			_, withheld, err = p.Recheck(ctx, tok, store.Identity{ID: 1002, Login: "bob"})
		}
		if err != nil || !slices.Equal(withheld, []string{"admin", "write"}) {
			t.Fatalf("%s: withheld %v, %v; want admin and write", step, withheld, err)
		}
		calls := rec.requests()[before:]
		for _, path := range []string{"/user", "/user/orgs", "/user/teams"} {
			n := 0
			for _, c := range calls {
				if strings.HasSuffix(c, path) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: %s read %d times, want once (calls %v)", step, path, n, calls)
			}
		}
	}
}
