package githubidp

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-github/v75/github"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// userIDKey is how allow_users names a user by numeric ID: "id:1001". A
// login cannot hold a colon, so the two never clash, and an ID, unlike a
// login, is never given to someone else.
func userIDKey(id int64) string { return "id:" + strconv.FormatInt(id, 10) }

// checkUsers refuses an id: entry that is not a positive number.
func checkUsers(users map[string]bool) error {
	for u := range users {
		if rest, ok := strings.CutPrefix(u, "id:"); ok {
			if n, err := strconv.ParseInt(rest, 10, 64); err != nil || n <= 0 || strconv.FormatInt(n, 10) != rest {
				return fmt.Errorf("githubidp: user %q must be a login or id: and a GitHub user's numeric ID", u)
			}
		}
	}
	return nil
}

// member answers "is this user in one of these lists" for one user. It
// reads the user's organizations and teams from GitHub page by page, only
// as far as it must to find a match, and remembers what it read, so that
// several questions (the allow-lists, then each restricted scope) cost
// at most one pass over each list.
type member struct {
	gh    *github.Client
	login string // lower-cased
	id    string // "id:" and the numeric ID, as allow_users may name it
	orgs  pager  // lower-cased org logins
	teams pager  // lower-cased "org/slug"
}

func newMember(gh *github.Client, who store.Identity) *member {
	m := &member{gh: gh, login: strings.ToLower(who.Login), id: userIDKey(who.ID)}
	m.orgs.fetch = func(ctx context.Context, opt *github.ListOptions) ([]string, *github.Response, error) {
		orgs, resp, err := gh.Organizations.List(ctx, "", opt)
		if err != nil {
			return nil, nil, describe("listing organizations", err)
		}
		keys := make([]string, len(orgs))
		for i, o := range orgs {
			keys[i] = strings.ToLower(o.GetLogin())
		}
		return keys, resp, nil
	}
	m.teams.fetch = func(ctx context.Context, opt *github.ListOptions) ([]string, *github.Response, error) {
		teams, resp, err := gh.Teams.ListUserTeams(ctx, opt)
		if err != nil {
			return nil, nil, describe("listing teams", err)
		}
		keys := make([]string, len(teams))
		for i, t := range teams {
			keys[i] = strings.ToLower(t.GetOrganization().GetLogin() + "/" + t.GetSlug())
		}
		return keys, resp, nil
	}
	return m
}

// in reports whether the user is in a: one of its users (by current
// login, or by numeric ID written id:<n>), or a member of one of its
// organizations or teams.
func (m *member) in(ctx context.Context, a audience) (bool, error) {
	if a.users[m.login] || a.users[m.id] {
		return true, nil
	}
	if ok, err := m.orgs.find(ctx, a.orgs); ok || err != nil {
		return ok, err
	}
	return m.teams.find(ctx, a.teams)
}

// pager is one of the user's lists, read lazily up to maxPages pages.
type pager struct {
	fetch func(context.Context, *github.ListOptions) ([]string, *github.Response, error)
	seen  map[string]bool
	next  int // the next page to read; 0 before the first
	pages int
	done  bool
}

// find reports whether any of want is in the list, reading more pages
// only while it has not found one.
func (p *pager) find(ctx context.Context, want map[string]bool) (bool, error) {
	if len(want) == 0 {
		return false, nil
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	for k := range want {
		if p.seen[k] {
			return true, nil
		}
	}
	for !p.done && p.pages < maxPages {
		keys, resp, err := p.fetch(ctx, &github.ListOptions{PerPage: 100, Page: p.next})
		if err != nil {
			return false, err
		}
		p.pages++
		p.next, p.done = resp.NextPage, resp.NextPage == 0
		found := false
		for _, k := range keys {
			p.seen[k] = true
			found = found || want[k]
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}
