package tools

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v75/github"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// newFake starts a fake GitHub with n repositories for alice, updated one
// hour apart (repo-000 oldest), and returns a go-github client for her.
func newFake(t *testing.T, n int) (*fakegithub.Server, *github.Client) {
	t.Helper()
	base := time.Date(2024, time.March, 1, 0, 0, 0, 0, time.UTC)
	var repos []fakegithub.Repo
	for i := range n {
		repos = append(repos, fakegithub.Repo{Name: fmt.Sprintf("repo-%03d", i), UpdatedAt: base.Add(time.Duration(i) * time.Hour)})
	}
	fake := fakegithub.New(fakegithub.Options{Users: []fakegithub.User{{Login: "alice", Repos: repos}}})
	addr, err := fake.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	tok, err := fake.IssueToken("alice")
	if err != nil {
		t.Fatal(err)
	}
	gh := github.NewClient(nil).WithAuthToken(tok)
	gh.BaseURL, _ = url.Parse(addr + "/")
	return fake, gh
}

// TestListReposPagination exercises the page loop, which the tool itself
// only reaches with a server that returns short pages (per_page = limit).
func TestListReposPagination(t *testing.T) {
	tests := []struct {
		limit, perPage int
		wantN, calls   int
	}{
		{limit: 50, perPage: 7, wantN: 50, calls: 8},                       // 8 pages, last one truncated
		{limit: 49, perPage: 7, wantN: 49, calls: 7},                       // exact fit: no extra request
		{limit: 300, perPage: 100, wantN: 250, calls: 3},                   // runs out of repositories
		{limit: 100, perPage: 1, wantN: maxRepoPages, calls: maxRepoPages}, // page bound
		{limit: 100, perPage: 500, wantN: 100, calls: 1},                   // per_page capped at GitHub's 100
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("limit=%d/per_page=%d", tc.limit, tc.perPage), func(t *testing.T) {
			fake, gh := newFake(t, 250)
			repos, err := listRepos(context.Background(), gh, tc.limit, tc.perPage)
			if err != nil {
				t.Fatal(err)
			}
			if len(repos) != tc.wantN {
				t.Errorf("got %d repos, want %d", len(repos), tc.wantN)
			}
			for i, r := range repos {
				// Newest first, no gaps or repeats across pages.
				if want := fmt.Sprintf("repo-%03d", 249-i); r.GetName() != want {
					t.Fatalf("repos[%d] = %s, want %s", i, r.GetName(), want)
				}
			}
			if n := fake.Calls("/user/repos"); n != tc.calls {
				t.Errorf("API calls = %d, want %d", n, tc.calls)
			}
		})
	}
}

// TestGitHubToolError covers the classifications the fake cannot produce.
func TestGitHubToolError(t *testing.T) {
	now := time.Date(2025, time.June, 1, 10, 0, 0, 0, time.UTC)
	reset := now.Add(17 * time.Minute)
	resp := func(code int, hdr map[string]string) *http.Response {
		h := http.Header{}
		for k, v := range hdr {
			h.Set(k, v)
		}
		req, _ := http.NewRequest(http.MethodGet, "https://api.github.com/user/repos", nil)
		return &http.Response{StatusCode: code, Header: h, Request: req}
	}
	retry := 90 * time.Second
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"primary rate limit", &github.RateLimitError{Rate: github.Rate{Reset: github.Timestamp{Time: reset}}, Response: resp(403, nil)},
			"GitHub rate limit reached; try again after 2025-06-01T10:17:00Z"},
		{"primary rate limit without reset", &github.RateLimitError{Response: resp(403, nil)},
			"GitHub rate limit reached; try again later"},
		{"secondary rate limit", &github.AbuseRateLimitError{RetryAfter: &retry, Response: resp(403, nil)},
			"GitHub rate limit reached; try again after 2025-06-01T10:01:30Z"},
		{"secondary rate limit without retry-after", &github.AbuseRateLimitError{Response: resp(403, nil)},
			"GitHub rate limit reached; try again later"},
		{"403 remaining 0, unusual message", &github.ErrorResponse{Message: "quota exhausted", Response: resp(403, map[string]string{
			"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": fmt.Sprint(reset.Unix())})},
			"GitHub rate limit reached; try again after 2025-06-01T10:17:00Z"},
		{"429 retry-after", &github.ErrorResponse{Response: resp(429, map[string]string{"Retry-After": "60"})},
			"GitHub rate limit reached; try again after 2025-06-01T10:01:00Z"},
		{"401", &github.ErrorResponse{Message: "Bad credentials", Response: resp(401, nil)}, msgSignInAgain},
		{"401 wrapped", fmt.Errorf("listing: %w", &github.ErrorResponse{Response: resp(401, nil)}), msgSignInAgain},
		{"two-factor", &github.TwoFactorAuthError{Response: resp(401, nil)}, msgSignInAgain},
		{"403 other", &github.ErrorResponse{Message: "Resource not accessible", Response: resp(403, map[string]string{"X-RateLimit-Remaining": "4000"})},
			"GitHub refused to list your repositories (HTTP 403): Resource not accessible"},
		{"message with a token", &github.ErrorResponse{Message: "token gho_abcdefghijklmnopqrstuvwxyz0123456789 is bad", Response: resp(422, nil)},
			"GitHub refused to list your repositories (HTTP 422): token [redacted] is bad"},
		{"cancelled", &url.Error{Op: "Get", URL: "https://api.github.com/user/repos", Err: context.Canceled},
			"the request was cancelled before GitHub answered"},
		{"deadline", context.DeadlineExceeded, "could not reach GitHub: GitHub did not answer in time"},
		{"network", &url.Error{Op: "Get", URL: "https://api.github.com/user/repos", Err: errors.New("dial tcp: connection refused")},
			"could not reach GitHub"},
		{"other", errors.New("json: cannot unmarshal"), "GitHub returned an unexpected response"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := githubToolError(tc.err, now).Error()
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if strings.Contains(got, "gho_") {
				t.Errorf("message contains a token: %q", got)
			}
		})
	}
}

func TestFormatNumber(t *testing.T) {
	for x, want := range map[float64]string{
		0: "0", 5764801: "5764801", -1.5: "-1.5", 1e20: "100000000000000000000",
		1e21: "1e+21", 0.000001: "0.000001", 1e-7: "1e-07", 0.1: "0.1",
	} {
		if got := formatNumber(x); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", x, got, want)
		}
	}
}
