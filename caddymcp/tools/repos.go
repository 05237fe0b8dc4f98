package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v75/github"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const (
	// defaultRepoLimit is the number of repositories returned when the
	// caller gives no limit; it must match the schema's default.
	defaultRepoLimit = 10
	// maxRepoLimit is the schema's maximum limit and GitHub's maximum
	// per_page, so a valid request normally needs a single API call.
	maxRepoLimit = 100
	// maxRepoPages bounds the API calls of one tool call, whatever the
	// server's page size or Link headers say, so a misbehaving GitHub (or
	// GHES proxy) cannot turn one tool call into unbounded traffic.
	maxRepoPages = 10
	// reposTimeout bounds the whole listing, in case the GitHub client the
	// Caller provides has no timeout of its own.
	reposTimeout = 30 * time.Second
)

// Repo is one repository in the output of get_github_repos. Description and
// Language are empty when GitHub has none; UpdatedAt is RFC 3339 in UTC.
type Repo struct {
	Name        string `json:"name"`
	FullName    string `json:"full_name"`
	Description string `json:"description"`
	HTMLURL     string `json:"html_url"`
	Private     bool   `json:"private"`
	Language    string `json:"language"`
	Stars       int    `json:"stars"`
	UpdatedAt   string `json:"updated_at"`
}

// RepoList is the structured output of get_github_repos: the caller's
// repositories, most recently updated first, and how many there are.
type RepoList struct {
	Repos []Repo `json:"repos"`
	Count int    `json:"count"`
}

// reposArgs is the input of get_github_repos. The SDK applies the schema's
// default, so Limit is 1..100 when the handler runs.
type reposArgs struct {
	Limit int `json:"limit"`
}

var reposInputSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"limit": {
			"type": "integer",
			"minimum": 1,
			"maximum": 100,
			"default": 10,
			"description": "maximum number of repositories to return (1-100, default 10)"
		}
	},
	"additionalProperties": false
}`)

var reposOutputSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"repos": {
			"type": "array",
			"description": "repositories, most recently updated first",
			"items": {
				"type": "object",
				"properties": {
					"name":        {"type": "string"},
					"full_name":   {"type": "string", "description": "owner/name"},
					"description": {"type": "string", "description": "empty if none"},
					"html_url":    {"type": "string", "format": "uri"},
					"private":     {"type": "boolean"},
					"language":    {"type": "string", "description": "primary language; empty if unknown"},
					"stars":       {"type": "integer", "minimum": 0},
					"updated_at":  {"type": "string", "format": "date-time"}
				},
				"required": ["name", "full_name", "description", "html_url", "private", "language", "stars", "updated_at"],
				"additionalProperties": false
			}
		},
		"count": {"type": "integer", "minimum": 0, "description": "number of repositories in repos"}
	},
	"required": ["repos", "count"],
	"additionalProperties": false
}`)

func registerRepos(s *mcp.Server, find CallerFunc) {
	mcp.AddTool(s, &mcp.Tool{
		Name:  "get_github_repos",
		Title: "Get GitHub repositories",
		Description: "Lists the GitHub repositories you can access (your own, and those you collaborate on or reach through an organisation), " +
			"most recently updated first: name, description, URL, visibility, language, stars and last update. " +
			"limit (1-100, default 10) caps how many are returned.",
		InputSchema:  reposInputSchema,
		OutputSchema: reposOutputSchema,
		Annotations: &mcp.ToolAnnotations{
			Title:          "Get GitHub repositories",
			ReadOnlyHint:   true,
			IdempotentHint: true,
			OpenWorldHint:  boolPtr(true),
		},
	}, recovered("get_github_repos", func(ctx context.Context, req *mcp.CallToolRequest, in reposArgs) (*mcp.CallToolResult, RepoList, error) {
		c, err := callerOf(ctx, find, req)
		if err != nil {
			return nil, RepoList{}, err
		}
		if c.GitHub == nil {
			return nil, RepoList{}, errors.New("GitHub access is unavailable for this session")
		}
		gh, err := c.GitHub(ctx)
		if err != nil || gh == nil {
			// The cause (no stored token, a key that no longer decrypts it,
			// ...) is the server's business; what the user can do about
			// it is the same in every case.
			return nil, RepoList{}, errors.New("GitHub access is unavailable: your GitHub login could not be loaded; sign in again")
		}
		limit := in.Limit
		if limit < 1 {
			limit = defaultRepoLimit
		}
		limit = min(limit, maxRepoLimit)

		ctx, cancel := context.WithTimeout(ctx, reposTimeout)
		defer cancel()
		repos, err := listRepos(ctx, gh, limit, limit)
		if err != nil {
			return nil, RepoList{}, githubToolError(err, time.Now())
		}
		out := RepoList{Repos: make([]Repo, 0, len(repos)), Count: len(repos)}
		for _, r := range repos {
			out.Repos = append(out.Repos, repoOf(r))
		}
		return textResult(reposText(out, limit)), out, nil
	}))
}

// listRepos returns up to limit repositories of the authenticated user,
// most recently updated first, asking for perPage per page and following
// GitHub's pagination for at most maxRepoPages pages.
func listRepos(ctx context.Context, gh *github.Client, limit, perPage int) ([]*github.Repository, error) {
	opts := &github.RepositoryListByAuthenticatedUserOptions{
		Sort:        "updated",
		Direction:   "desc",
		ListOptions: github.ListOptions{PerPage: min(perPage, maxRepoLimit)},
	}
	var all []*github.Repository
	for range maxRepoPages {
		page, resp, err := gh.Repositories.ListByAuthenticatedUser(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(all) >= limit || resp == nil || resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// repoOf converts a go-github repository to the tool's output shape,
// turning GitHub's nulls into empty values.
func repoOf(r *github.Repository) Repo {
	out := Repo{
		Name:        r.GetName(),
		FullName:    r.GetFullName(),
		Description: r.GetDescription(),
		HTMLURL:     r.GetHTMLURL(),
		Private:     r.GetPrivate(),
		Language:    r.GetLanguage(),
		Stars:       r.GetStargazersCount(),
	}
	if t := r.GetUpdatedAt(); !t.IsZero() {
		out.UpdatedAt = t.UTC().Format(time.RFC3339)
	}
	return out
}

// reposText is a numbered list of the repositories for content-only clients.
func reposText(l RepoList, limit int) string {
	var b strings.Builder
	switch {
	case l.Count == 0:
		b.WriteString("You have no GitHub repositories.")
	case l.Count < limit:
		fmt.Fprintf(&b, "All %d of your GitHub %s, most recently updated first:", l.Count, plural(l.Count, "repository", "repositories"))
	case l.Count == 1:
		b.WriteString("Your most recently updated GitHub repository:")
	default:
		fmt.Fprintf(&b, "Your %d most recently updated GitHub repositories:", l.Count)
	}
	for i, r := range l.Repos {
		vis := "public"
		if r.Private {
			vis = "private"
		}
		fmt.Fprintf(&b, "\n%d. %s (%s", i+1, r.FullName, vis)
		if r.Language != "" {
			fmt.Fprintf(&b, ", %s", r.Language)
		}
		fmt.Fprintf(&b, ", %d %s", r.Stars, plural(r.Stars, "star", "stars"))
		if r.UpdatedAt != "" {
			fmt.Fprintf(&b, ", updated %s", r.UpdatedAt)
		}
		b.WriteString(")")
		if d := strings.Join(strings.Fields(r.Description), " "); d != "" {
			fmt.Fprintf(&b, ": %s", d)
		}
		if r.HTMLURL != "" {
			fmt.Fprintf(&b, "\n   %s", r.HTMLURL)
		}
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Messages of the GitHub tool errors; tests match on them.
const (
	msgSignInAgain = "GitHub no longer accepts your login; sign in again"
	msgUnreachable = "could not reach GitHub"
)

// githubToolError turns an error from go-github into the message the user
// sees. It classifies rather than forwards the error: go-github's texts
// include request URLs and Go internals, and whatever it says must never
// carry a token.
func githubToolError(err error, now time.Time) error {
	var rle *github.RateLimitError
	if errors.As(err, &rle) {
		return rateLimitError(rle.Rate.Reset.Time)
	}
	var abuse *github.AbuseRateLimitError
	if errors.As(err, &abuse) {
		if abuse.RetryAfter != nil {
			return rateLimitError(now.Add(*abuse.RetryAfter))
		}
		return rateLimitError(time.Time{})
	}
	var tfa *github.TwoFactorAuthError
	if errors.As(err, &tfa) {
		return errors.New(msgSignInAgain)
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		resp := er.Response
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			return errors.New(msgSignInAgain)
		case (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests) &&
			resp.Header.Get("X-RateLimit-Remaining") == "0":
			// go-github only recognises a primary rate limit by GitHub's
			// exact message; GHES and proxies may word it differently.
			return rateLimitError(unixHeader(resp.Header, "X-RateLimit-Reset"))
		case resp.StatusCode == http.StatusTooManyRequests:
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
				return rateLimitError(now.Add(time.Duration(s) * time.Second))
			}
			return rateLimitError(time.Time{})
		}
		msg := fmt.Sprintf("GitHub refused to list your repositories (HTTP %d)", resp.StatusCode)
		if m := strings.Join(strings.Fields(er.Message), " "); m != "" {
			if len(m) > 200 {
				m = m[:200] + "..."
			}
			msg += ": " + m
		}
		return errors.New(redactTokens(msg))
	}
	switch {
	case errors.Is(err, context.Canceled):
		return errors.New("the request was cancelled before GitHub answered")
	case errors.Is(err, context.DeadlineExceeded):
		return errors.New(msgUnreachable + ": GitHub did not answer in time")
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		return errors.New(msgUnreachable)
	}
	return errors.New("GitHub returned an unexpected response")
}

// rateLimitError says when to retry; a zero reset means GitHub did not say.
func rateLimitError(reset time.Time) error {
	if reset.IsZero() {
		return errors.New("GitHub rate limit reached; try again later")
	}
	return fmt.Errorf("GitHub rate limit reached; try again after %s", reset.UTC().Format(time.RFC3339))
}

// unixHeader parses a header holding Unix seconds, as GitHub's rate-limit
// headers do; it returns the zero time when absent or malformed.
func unixHeader(h http.Header, key string) time.Time {
	n, err := strconv.ParseInt(h.Get(key), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

// tokenPattern matches GitHub token formats (classic and fine-grained
// personal access tokens, OAuth, user-to-server, server-to-server and
// refresh tokens).
var tokenPattern = regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{16,})`)

// redactTokens removes anything shaped like a GitHub token from a message
// that includes text GitHub chose. GitHub does not echo tokens today; this
// keeps the "tool errors never contain a token" rule from depending on it.
func redactTokens(s string) string {
	return tokenPattern.ReplaceAllString(s, "[redacted]")
}
