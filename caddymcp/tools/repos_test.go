package tools_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-github/v75/github"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/tools"
)

const numRepos = 250

var baseTime = time.Date(2024, time.March, 1, 12, 0, 0, 0, time.UTC)

// fixtureRepos returns numRepos repositories whose UpdatedAt values are
// distinct and not in insertion order (7919 is prime, so i*7919 mod 250 is
// a permutation), so that a tool ignoring sort=updated would be caught.
func fixtureRepos() []fakegithub.Repo {
	var repos []fakegithub.Repo
	for i := range numRepos {
		r := fakegithub.Repo{
			Name:      fmt.Sprintf("repo-%03d", i),
			Stars:     i % 7,
			Private:   i%3 == 0,
			UpdatedAt: baseTime.Add(time.Duration((i*7919)%numRepos) * time.Hour),
		}
		if i%2 == 0 {
			r.Language = "Go"
			r.Description = fmt.Sprintf("Repository\nnumber %d", i)
		}
		repos = append(repos, r)
	}
	return repos
}

// byUpdatedDesc returns the fixture's full names, most recently updated first.
func byUpdatedDesc() []string {
	repos := fixtureRepos()
	slices.SortFunc(repos, func(x, y fakegithub.Repo) int { return y.UpdatedAt.Compare(x.UpdatedAt) })
	var names []string
	for _, r := range repos {
		names = append(names, "alice/"+r.Name)
	}
	return names
}

// ghEnv is a running fake GitHub with alice (numRepos repositories) and a
// token for her.
type ghEnv struct {
	fake  *fakegithub.Server
	base  string
	token string
}

func newGHEnv(t *testing.T) *ghEnv {
	t.Helper()
	fake := fakegithub.New(fakegithub.Options{Users: []fakegithub.User{
		{ID: alice.ID, Login: alice.Login, Name: alice.Name, Email: alice.Email, Repos: fixtureRepos()},
		{ID: 5, Login: "nobody"},
	}})
	base, err := fake.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	tok, err := fake.IssueToken("alice", "repo")
	if err != nil {
		t.Fatal(err)
	}
	return &ghEnv{fake: fake, base: base, token: tok}
}

// client returns a go-github client for token against the fake, in the
// github.com shape (API at the root) or the GHES shape (/api/v3).
func (e *ghEnv) client(t *testing.T, token string, enterprise bool) *github.Client {
	t.Helper()
	c := github.NewClient(nil).WithAuthToken(token)
	if enterprise {
		var err error
		if c, err = c.WithEnterpriseURLs(e.base, e.base); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(c.BaseURL.Path, "/api/v3/") {
			t.Fatalf("enterprise BaseURL = %s", c.BaseURL)
		}
		return c
	}
	u, err := url.Parse(e.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	c.BaseURL = u
	return c
}

// callerWith returns alice as a Caller whose GitHub func yields gh.
func callerWith(gh *github.Client) *tools.Caller {
	return &tools.Caller{User: alice, GitHub: func(context.Context) (*github.Client, error) { return gh, nil }}
}

func names(l tools.RepoList) []string {
	var out []string
	for _, r := range l.Repos {
		out = append(out, r.FullName)
	}
	return out
}

func TestGetGitHubReposDefaultLimit(t *testing.T) {
	env := newGHEnv(t)
	cs := connect(t, tools.Fixed(callerWith(env.client(t, env.token, false))))
	res := call(t, cs, "get_github_repos", map[string]any{})
	got := structured[tools.RepoList](t, res)
	want := byUpdatedDesc()[:10]
	if got.Count != 10 || !slices.Equal(names(got), want) {
		t.Fatalf("repos = %v (count %d), want %v", names(got), got.Count, want)
	}
	if n := env.fake.Calls("/user/repos"); n != 1 {
		t.Errorf("API calls = %d, want 1", n)
	}

	// Every field is filled from GitHub's data.
	fixtures := map[string]fakegithub.Repo{}
	for _, r := range fixtureRepos() {
		fixtures["alice/"+r.Name] = r
	}
	for _, r := range got.Repos {
		f := fixtures[r.FullName]
		if r.Name != f.Name || r.Private != f.Private || r.Stars != f.Stars || r.Language != f.Language || r.Description != f.Description {
			t.Errorf("repo %+v does not match fixture %+v", r, f)
		}
		if r.UpdatedAt != f.UpdatedAt.Format(time.RFC3339) {
			t.Errorf("%s updated_at = %q, want %q", r.FullName, r.UpdatedAt, f.UpdatedAt.Format(time.RFC3339))
		}
		if _, err := time.Parse(time.RFC3339, r.UpdatedAt); err != nil {
			t.Errorf("updated_at %q is not RFC 3339: %v", r.UpdatedAt, err)
		}
		if !strings.HasSuffix(r.HTMLURL, "/"+r.FullName) || !strings.HasPrefix(r.HTMLURL, "http") {
			t.Errorf("html_url = %q", r.HTMLURL)
		}
	}

	// The text lists the same repositories, in order, one numbered entry
	// each, readable rather than JSON.
	text := textOf(t, res)
	if !strings.HasPrefix(text, "Your 10 most recently updated GitHub repositories:") {
		t.Errorf("text starts %q", strings.SplitN(text, "\n", 2)[0])
	}
	last := -1
	for i, n := range want {
		idx := strings.Index(text, fmt.Sprintf("%d. %s (", i+1, n))
		if idx <= last {
			t.Errorf("text lacks entry %d (%s) in order:\n%s", i+1, n, text)
		}
		last = idx
	}
	if strings.Contains(text, `"full_name"`) {
		t.Errorf("text is a JSON dump:\n%s", text)
	}
}

func TestGetGitHubReposLimits(t *testing.T) {
	env := newGHEnv(t)
	all := byUpdatedDesc()
	for _, enterprise := range []bool{false, true} {
		for _, limit := range []int{1, 37, 100} {
			t.Run(fmt.Sprintf("enterprise=%v/limit=%d", enterprise, limit), func(t *testing.T) {
				cs := connect(t, tools.Fixed(callerWith(env.client(t, env.token, enterprise))))
				before := env.fake.Calls("/user/repos")
				got := structured[tools.RepoList](t, call(t, cs, "get_github_repos", map[string]any{"limit": limit}))
				if got.Count != limit || len(got.Repos) != limit || !slices.Equal(names(got), all[:limit]) {
					t.Errorf("got %d repos %v..., want the %d most recent", got.Count, names(got)[:min(3, len(got.Repos))], limit)
				}
				// per_page follows limit, so one request is enough.
				if n := env.fake.Calls("/user/repos") - before; n != 1 {
					t.Errorf("API calls = %d, want 1", n)
				}
			})
		}
	}
}

func TestGetGitHubReposFewerThanLimit(t *testing.T) {
	env := newGHEnv(t)
	tok, err := env.fake.IssueToken("nobody")
	if err != nil {
		t.Fatal(err)
	}
	cs := connect(t, tools.Fixed(callerWith(env.client(t, tok, false))))
	res := call(t, cs, "get_github_repos", map[string]any{"limit": 5})
	got := structured[tools.RepoList](t, res)
	if got.Count != 0 || got.Repos == nil || len(got.Repos) != 0 {
		t.Errorf("got %+v, want an empty (not null) list", got)
	}
	if text := textOf(t, res); text != "You have no GitHub repositories." {
		t.Errorf("text = %q", text)
	}

	// Three repositories, limit 10: all of them, said so.
	env.fake.AddUser(fakegithub.User{ID: 5, Login: "nobody", Repos: fixtureRepos()[:3]})
	res = call(t, cs, "get_github_repos", map[string]any{"limit": 10})
	if got := structured[tools.RepoList](t, res); got.Count != 3 {
		t.Errorf("count = %d, want 3", got.Count)
	}
	if text := textOf(t, res); !strings.HasPrefix(text, "All 3 of your GitHub repositories") {
		t.Errorf("text = %q", text)
	}
}

func TestGetGitHubReposInvalidLimit(t *testing.T) {
	env := newGHEnv(t)
	cs := connect(t, tools.Fixed(callerWith(env.client(t, env.token, false))))
	for name, args := range map[string]map[string]any{
		"limit 250":      {"limit": 250},
		"limit 101":      {"limit": 101},
		"limit 0":        {"limit": 0},
		"limit -1":       {"limit": -1},
		"limit 2.5":      {"limit": 2.5},
		"limit string":   {"limit": "10"},
		"extra property": {"limit": 5, "user": "bob"},
	} {
		t.Run(name, func(t *testing.T) {
			wantToolError(t, call(t, cs, "get_github_repos", args), `validating "arguments"`)
		})
	}
	if n := env.fake.Calls("/user/repos"); n != 0 {
		t.Errorf("refused calls reached GitHub %d times", n)
	}
}

func TestGetGitHubReposRevokedToken(t *testing.T) {
	env := newGHEnv(t)
	cs := connect(t, tools.Fixed(callerWith(env.client(t, env.token, false))))
	if res := call(t, cs, "get_github_repos", nil); res.IsError {
		t.Fatalf("before revocation: %s", textOf(t, res))
	}
	env.fake.RevokeToken(env.token)
	text := wantToolError(t, call(t, cs, "get_github_repos", nil), "GitHub no longer accepts your login; sign in again")
	if strings.Contains(text, env.token) {
		t.Errorf("error contains the token: %q", text)
	}
}

func TestGetGitHubReposRateLimited(t *testing.T) {
	env := newGHEnv(t)
	env.fake.SetRateLimited(true)
	cs := connect(t, tools.Fixed(callerWith(env.client(t, env.token, false))))
	// Twice: the first answer comes from GitHub, the second from
	// go-github's memory of the limit; both must read the same.
	for range 2 {
		text := wantToolError(t, call(t, cs, "get_github_repos", nil), "GitHub rate limit reached; try again after ")
		when, err := time.Parse(time.RFC3339, strings.TrimPrefix(text, "GitHub rate limit reached; try again after "))
		if err != nil {
			t.Fatalf("retry time in %q: %v", text, err)
		}
		if now := time.Now(); when.Before(now.Add(-time.Second)) || when.After(now.Add(time.Hour+time.Minute)) {
			t.Errorf("retry time %v is not within the hour-long window", when)
		}
		if strings.Contains(text, env.token) {
			t.Errorf("error contains the token: %q", text)
		}
	}
}

func TestGetGitHubReposUnreachable(t *testing.T) {
	// A loopback port nobody listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	gh := github.NewClient(nil).WithAuthToken("gho_notarealtokenbutshapedlikeone1234")
	gh.BaseURL, _ = url.Parse("http://" + addr + "/")
	cs := connect(t, tools.Fixed(callerWith(gh)))
	text := wantToolError(t, call(t, cs, "get_github_repos", nil), "could not reach GitHub")
	if text != "could not reach GitHub" || strings.Contains(text, "gho_") {
		t.Errorf("text = %q, want exactly %q", text, "could not reach GitHub")
	}
}

func TestGetGitHubReposNoGitHub(t *testing.T) {
	env := newGHEnv(t)
	t.Run("nil GitHub func", func(t *testing.T) {
		cs := connect(t, tools.Fixed(&tools.Caller{User: alice}))
		wantToolError(t, call(t, cs, "get_github_repos", nil), "GitHub access is unavailable")
	})
	t.Run("GitHub func fails", func(t *testing.T) {
		cs := connect(t, tools.Fixed(&tools.Caller{User: alice, GitHub: func(context.Context) (*github.Client, error) {
			return nil, errors.New("decrypting token " + env.token + ": bad key")
		}}))
		text := wantToolError(t, call(t, cs, "get_github_repos", nil), "GitHub access is unavailable")
		if strings.Contains(text, env.token) || strings.Contains(text, "bad key") {
			t.Errorf("error leaks the cause: %q", text)
		}
		if !strings.Contains(text, "sign in again") {
			t.Errorf("error does not say what to do: %q", text)
		}
	})
	t.Run("no caller", func(t *testing.T) {
		cs := connect(t, tools.Fixed(nil))
		wantToolError(t, call(t, cs, "get_github_repos", nil), "no authenticated user")
	})
	if n := env.fake.Calls("/user/repos"); n != 0 {
		t.Errorf("GitHub called %d times", n)
	}
}

// TestGetGitHubReposPerCallClient checks that the GitHub func is consulted
// on every call, not cached, so that a token refreshed or revoked at the
// store between calls takes effect at once.
func TestGetGitHubReposPerCallClient(t *testing.T) {
	env := newGHEnv(t)
	gh := env.client(t, env.token, false)
	var calls atomic.Int32
	caller := &tools.Caller{User: store.Identity{ID: alice.ID, Login: "alice"}, GitHub: func(context.Context) (*github.Client, error) {
		calls.Add(1)
		return gh, nil
	}}
	cs := connect(t, tools.Fixed(caller))
	for range 3 {
		if res := call(t, cs, "get_github_repos", map[string]any{"limit": 2}); res.IsError {
			t.Fatal(textOf(t, res))
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("GitHub func called %d times, want 3", n)
	}
}
