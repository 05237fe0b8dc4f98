package fakegithub

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// Primary rate limits, per hour, as on github.com.
	userRateLimit      = 5000
	anonymousRateLimit = 60

	defaultPerPage = 30
	maxPerPage     = 100

	docsREST      = "https://docs.github.com/rest"
	docsRateLimit = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
)

// apiError is GitHub's REST error body.
type apiError struct {
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url,omitempty"`
	Status           string `json:"status,omitempty"`
}

// rateWindow is one caller's primary rate-limit window.
type rateWindow struct {
	reset time.Time
	used  int
}

// apiRequest is the context a REST handler runs in.
type apiRequest struct {
	w       http.ResponseWriter
	r       *http.Request
	webBase string // scheme://host, where html_url links point
	apiBase string // webBase plus "/api/v3" for GHES-shaped requests
	caller  *User  // snapshot of the authenticated user, nil if anonymous
	arg     string // path argument, e.g. the login in /users/{login}
}

// route is one REST endpoint.
type route struct {
	needsAuth bool
	// accepted is sent as X-Accepted-OAuth-Scopes.
	accepted string
	handle   func(s *Server, a *apiRequest)
}

var (
	routeUser      = &route{needsAuth: true, handle: (*Server).apiUser}
	routeUserOrgs  = &route{needsAuth: true, accepted: "admin:org, read:org, repo, user, write:org", handle: (*Server).apiUserOrgs}
	routeUserTeams = &route{needsAuth: true, accepted: "admin:org, read:org, repo, user, write:org", handle: (*Server).apiUserTeams}
	routeUserRepos = &route{needsAuth: true, handle: (*Server).apiUserRepos}
	routeUsersX    = &route{handle: (*Server).apiUsersLogin}
	routeUsersOrgs = &route{handle: (*Server).apiUsersLoginOrgs}
)

// matchRoute finds the route for a normalised API path.
func matchRoute(p string) (*route, string) {
	switch p {
	case "/user":
		return routeUser, ""
	case "/user/orgs":
		return routeUserOrgs, ""
	case "/user/teams":
		return routeUserTeams, ""
	case "/user/repos":
		return routeUserRepos, ""
	}
	if rest, ok := strings.CutPrefix(p, "/users/"); ok && rest != "" {
		login, sub, _ := strings.Cut(rest, "/")
		switch sub {
		case "":
			return routeUsersX, login
		case "orgs":
			return routeUsersOrgs, login
		}
	}
	return nil, ""
}

// splitAPIPath strips the GHES /api/v3 prefix and a trailing slash from an
// API path, returning the root-shaped path and the prefix that was removed.
func splitAPIPath(p string) (norm, prefix string) {
	if p == apiPrefix || strings.HasPrefix(p, apiPrefix+"/") {
		prefix = apiPrefix
		p = p[len(apiPrefix):]
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p, prefix
}

// serveAPI serves every path that is not a web OAuth endpoint as a REST API
// request, in the github.com shape or, under /api/v3, the GHES shape.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	p, prefix := splitAPIPath(r.URL.Path)
	s.mu.Lock()
	if _, seen := s.calls[p]; seen || len(s.calls) < maxPending {
		s.calls[p]++
	}
	s.mu.Unlock()

	h := w.Header()
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Api-Version-Selected", "2022-11-28")

	// A slow or broken GitHub fails before it looks at the request.
	fault := s.faultFor(OnAPI, p)
	if !fault.wait(r) {
		return
	}
	if fault.Fail == ServerError {
		s.writeFailure(w, fault)
		return
	}

	rt, arg := matchRoute(p)
	if rt == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		writeJSON(w, http.StatusNotFound, apiError{Message: "Not Found", DocumentationURL: docsREST, Status: "404"})
		return
	}

	token, present, wellFormed := parseAuthorization(r.Header.Get("Authorization"))
	var caller *User
	var scopes []string
	s.mu.Lock()
	if present && wellFormed {
		if t := s.tokens[token]; t != nil {
			if u := s.lookupUserLocked(t.login); u != nil {
				caller = snapshotUser(u)
				scopes = slices.Clone(t.scopes)
			}
		}
	}
	s.mu.Unlock()
	switch {
	case present && caller == nil:
		writeJSON(w, http.StatusUnauthorized, apiError{Message: "Bad credentials", DocumentationURL: docsREST, Status: "401"})
		return
	case !present && rt.needsAuth:
		writeJSON(w, http.StatusUnauthorized, apiError{Message: "Requires authentication", DocumentationURL: docsREST, Status: "401"})
		return
	}
	if caller != nil {
		h.Set("X-OAuth-Scopes", strings.Join(scopes, ", "))
		h.Set("X-Accepted-OAuth-Scopes", rt.accepted)
	}
	if !s.takeRate(w, r, caller, fault) {
		return
	}
	if s.writeFailure(w, fault) {
		return // a secondary rate limit, after the primary's headers
	}

	webBase := requestBase(r)
	rt.handle(s, &apiRequest{
		w:       w,
		r:       r,
		webBase: webBase,
		apiBase: webBase + prefix,
		caller:  caller,
		arg:     arg,
	})
}

// parseAuthorization extracts a token from an Authorization header of the
// form "Bearer T", "token T" or Basic with the token as password. present
// reports whether the header was sent at all; wellFormed whether a token
// could be extracted from it.
func parseAuthorization(h string) (token string, present, wellFormed bool) {
	if h == "" {
		return "", false, false
	}
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(scheme) {
	case "bearer", "token":
		return rest, true, rest != ""
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", true, false
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		return pass, true, ok && pass != ""
	}
	return "", true, false
}

// takeRate accounts one request against the caller's primary rate limit and
// sets the X-RateLimit-* headers. When the limit is exhausted (or fault is
// a PrimaryRateLimit) it writes GitHub's 403 response and returns false.
func (s *Server) takeRate(w http.ResponseWriter, r *http.Request, caller *User, fault Fault) bool {
	key, limit := "ip:"+remoteHost(r), anonymousRateLimit
	if caller != nil {
		key, limit = "user:"+strings.ToLower(caller.Login), userRateLimit
	}
	s.mu.Lock()
	now := s.now()
	win := s.rates[key]
	if win == nil || !now.Before(win.reset) {
		if len(s.rates) >= maxPending {
			pruneExpired(s.rates, now, func(w *rateWindow) time.Time { return w.reset })
		}
		win = &rateWindow{reset: now.Add(time.Hour).Truncate(time.Second)}
		s.rates[key] = win
	}
	forced := fault.Fail == PrimaryRateLimit
	limited := forced || win.used >= limit
	used := limit
	if !limited {
		win.used++
		used = win.used
	}
	reset := win.reset
	if forced && fault.RetryAfter > 0 {
		reset = now.Add(fault.RetryAfter).Truncate(time.Second)
	}
	s.mu.Unlock()

	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(limit-used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	h.Set("X-RateLimit-Resource", "core")
	if !limited {
		return true
	}
	support := fmt.Sprintf(" If you reach out to GitHub Support for help, please include the request ID %s and timestamp %s.",
		h.Get("X-GitHub-Request-Id"), now.UTC().Format("2006-01-02 15:04:05 MST"))
	var msg string
	if caller != nil {
		msg = fmt.Sprintf("API rate limit exceeded for user ID %d.", caller.ID) + support
	} else {
		msg = fmt.Sprintf("API rate limit exceeded for %s. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)", remoteHost(r)) + support
	}
	writeJSON(w, http.StatusForbidden, apiError{Message: msg, DocumentationURL: docsRateLimit, Status: "403"})
	return false
}

// remoteHost returns the IP part of r.RemoteAddr.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// requestBase returns scheme://host of the request as the client addressed
// it.
func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return scheme + "://" + host
}

// snapshotUser deep-copies u so it can be used without holding s.mu.
func snapshotUser(u *User) *User {
	c := *u
	c.Orgs = slices.Clone(u.Orgs)
	c.Teams = slices.Clone(u.Teams)
	c.Repos = slices.Clone(u.Repos)
	return &c
}

// --- JSON shapes ---------------------------------------------------------

// apiSimpleUser is GitHub's "simple user" object.
type apiSimpleUser struct {
	Login            string `json:"login"`
	ID               int64  `json:"id"`
	NodeID           string `json:"node_id"`
	AvatarURL        string `json:"avatar_url"`
	GravatarID       string `json:"gravatar_id"`
	URL              string `json:"url"`
	HTMLURL          string `json:"html_url"`
	ReposURL         string `json:"repos_url"`
	OrganizationsURL string `json:"organizations_url"`
	Type             string `json:"type"`
	SiteAdmin        bool   `json:"site_admin"`
}

// apiFullUser is GitHub's user object as returned by GET /user and
// GET /users/{login}.
type apiFullUser struct {
	apiSimpleUser
	Name            *string `json:"name"`
	Company         *string `json:"company"`
	Blog            string  `json:"blog"`
	Location        *string `json:"location"`
	Email           *string `json:"email"`
	Hireable        *bool   `json:"hireable"`
	Bio             *string `json:"bio"`
	TwitterUsername *string `json:"twitter_username"`
	PublicRepos     int     `json:"public_repos"`
	PublicGists     int     `json:"public_gists"`
	Followers       int     `json:"followers"`
	Following       int     `json:"following"`
	CreatedAt       string  `json:"created_at"`
	UpdatedAt       string  `json:"updated_at"`
}

// apiOrg is GitHub's "organization simple" object.
type apiOrg struct {
	Login            string  `json:"login"`
	ID               int64   `json:"id"`
	NodeID           string  `json:"node_id"`
	URL              string  `json:"url"`
	ReposURL         string  `json:"repos_url"`
	MembersURL       string  `json:"members_url"`
	PublicMembersURL string  `json:"public_members_url"`
	AvatarURL        string  `json:"avatar_url"`
	Description      *string `json:"description"`
}

// apiTeamOrg is the organization object nested in a team.
type apiTeamOrg struct {
	apiOrg
	Name    string `json:"name"`
	HTMLURL string `json:"html_url"`
	Type    string `json:"type"`
}

// apiTeam is GitHub's team object as listed by GET /user/teams.
type apiTeam struct {
	ID                  int64      `json:"id"`
	NodeID              string     `json:"node_id"`
	URL                 string     `json:"url"`
	HTMLURL             string     `json:"html_url"`
	Name                string     `json:"name"`
	Slug                string     `json:"slug"`
	Description         *string    `json:"description"`
	Privacy             string     `json:"privacy"`
	NotificationSetting string     `json:"notification_setting"`
	Permission          string     `json:"permission"`
	MembersURL          string     `json:"members_url"`
	RepositoriesURL     string     `json:"repositories_url"`
	Parent              *apiTeam   `json:"parent"`
	MembersCount        int        `json:"members_count"`
	ReposCount          int        `json:"repos_count"`
	CreatedAt           string     `json:"created_at"`
	UpdatedAt           string     `json:"updated_at"`
	Organization        apiTeamOrg `json:"organization"`
}

// apiRepo is GitHub's repository object as listed by GET /user/repos.
type apiRepo struct {
	ID              int64           `json:"id"`
	NodeID          string          `json:"node_id"`
	Name            string          `json:"name"`
	FullName        string          `json:"full_name"`
	Private         bool            `json:"private"`
	Owner           apiSimpleUser   `json:"owner"`
	HTMLURL         string          `json:"html_url"`
	Description     *string         `json:"description"`
	Fork            bool            `json:"fork"`
	URL             string          `json:"url"`
	CloneURL        string          `json:"clone_url"`
	Homepage        *string         `json:"homepage"`
	Size            int             `json:"size"`
	StargazersCount int             `json:"stargazers_count"`
	WatchersCount   int             `json:"watchers_count"`
	Language        *string         `json:"language"`
	ForksCount      int             `json:"forks_count"`
	Archived        bool            `json:"archived"`
	Disabled        bool            `json:"disabled"`
	OpenIssuesCount int             `json:"open_issues_count"`
	Visibility      string          `json:"visibility"`
	DefaultBranch   string          `json:"default_branch"`
	CreatedAt       string          `json:"created_at"`
	UpdatedAt       string          `json:"updated_at"`
	PushedAt        string          `json:"pushed_at"`
	Permissions     map[string]bool `json:"permissions"`
}

// nullable returns nil for "" so that JSON shows null, as GitHub does.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// timestamp formats t the way GitHub does (RFC 3339, UTC, seconds).
func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func avatarURL(id int64) string {
	return "https://avatars.githubusercontent.com/u/" + strconv.FormatInt(id, 10) + "?v=4"
}

func (a *apiRequest) simpleUser(login string, id int64, avatar, typ string) apiSimpleUser {
	kind := "users"
	if typ == "Organization" {
		kind = "orgs"
	}
	esc := url.PathEscape(login)
	return apiSimpleUser{
		Login:            login,
		ID:               id,
		NodeID:           nodeID(typ, id),
		AvatarURL:        avatar,
		URL:              a.apiBase + "/" + kind + "/" + esc,
		HTMLURL:          a.webBase + "/" + esc,
		ReposURL:         a.apiBase + "/" + kind + "/" + esc + "/repos",
		OrganizationsURL: a.apiBase + "/users/" + esc + "/orgs",
		Type:             typ,
	}
}

func (a *apiRequest) fullUser(u *User) apiFullUser {
	public := 0
	for _, r := range u.Repos {
		if !r.Private && strings.EqualFold(repoOwner(r), u.Login) {
			public++
		}
	}
	su := a.simpleUser(u.Login, u.ID, u.AvatarURL, "User")
	return apiFullUser{
		apiSimpleUser: su,
		Name:          nullable(u.Name),
		Email:         nullable(u.Email),
		PublicRepos:   public,
		CreatedAt:     timestamp(defaultTime),
		UpdatedAt:     timestamp(defaultTime),
	}
}

func (a *apiRequest) org(name string) apiOrg {
	id := stableID("org", name)
	esc := url.PathEscape(name)
	return apiOrg{
		Login:            name,
		ID:               id,
		NodeID:           nodeID("Organization", id),
		URL:              a.apiBase + "/orgs/" + esc,
		ReposURL:         a.apiBase + "/orgs/" + esc + "/repos",
		MembersURL:       a.apiBase + "/orgs/" + esc + "/members{/member}",
		PublicMembersURL: a.apiBase + "/orgs/" + esc + "/public_members{/member}",
		AvatarURL:        avatarURL(id),
	}
}

func (a *apiRequest) team(t Team) apiTeam {
	org := a.org(t.Org)
	id := stableID("team", t.Org+"/"+t.Slug)
	teamURL := a.apiBase + "/organizations/" + strconv.FormatInt(org.ID, 10) + "/team/" + strconv.FormatInt(id, 10)
	return apiTeam{
		ID:                  id,
		NodeID:              nodeID("Team", id),
		URL:                 teamURL,
		HTMLURL:             a.webBase + "/orgs/" + url.PathEscape(t.Org) + "/teams/" + url.PathEscape(t.Slug),
		Name:                t.Slug,
		Slug:                t.Slug,
		Privacy:             "closed",
		NotificationSetting: "notifications_enabled",
		Permission:          "pull",
		MembersURL:          teamURL + "/members{/member}",
		RepositoriesURL:     teamURL + "/repos",
		CreatedAt:           timestamp(defaultTime),
		UpdatedAt:           timestamp(defaultTime),
		Organization: apiTeamOrg{
			apiOrg:  org,
			Name:    t.Org,
			HTMLURL: a.webBase + "/" + url.PathEscape(t.Org),
			Type:    "Organization",
		},
	}
}

// repoOwner returns the owner part of a repository's full name.
func repoOwner(r Repo) string {
	owner, _, _ := strings.Cut(r.FullName, "/")
	return owner
}

// affiliation classifies r for user u: owner, organization_member or
// collaborator.
func affiliation(u *User, r Repo) string {
	owner := repoOwner(r)
	switch {
	case strings.EqualFold(owner, u.Login):
		return "owner"
	case slices.ContainsFunc(u.Orgs, func(o string) bool { return strings.EqualFold(o, owner) }):
		return "organization_member"
	}
	return "collaborator"
}

func (s *Server) repo(a *apiRequest, u *User, r Repo) apiRepo {
	ownerLogin := repoOwner(r)
	aff := affiliation(u, r)
	var owner apiSimpleUser
	switch aff {
	case "owner":
		owner = a.simpleUser(u.Login, u.ID, u.AvatarURL, "User")
	case "organization_member":
		id := stableID("org", ownerLogin)
		owner = a.simpleUser(ownerLogin, id, avatarURL(id), "Organization")
	default:
		s.mu.Lock()
		other := s.lookupUserLocked(ownerLogin)
		var id int64
		var avatar string
		if other != nil {
			id, avatar = other.ID, other.AvatarURL
		}
		s.mu.Unlock()
		if other == nil {
			id = stableID("user", ownerLogin)
			avatar = avatarURL(id)
		}
		owner = a.simpleUser(ownerLogin, id, avatar, "User")
	}
	html := r.HTMLURL
	if html == "" {
		html = a.webBase + "/" + r.FullName
	}
	visibility := "public"
	if r.Private {
		visibility = "private"
	}
	return apiRepo{
		ID:              r.ID,
		NodeID:          nodeID("Repository", r.ID),
		Name:            r.Name,
		FullName:        r.FullName,
		Private:         r.Private,
		Owner:           owner,
		HTMLURL:         html,
		Description:     nullable(r.Description),
		Fork:            r.Fork,
		URL:             a.apiBase + "/repos/" + r.FullName,
		CloneURL:        a.webBase + "/" + r.FullName + ".git",
		StargazersCount: r.Stars,
		WatchersCount:   r.Stars,
		Language:        nullable(r.Language),
		Archived:        r.Archived,
		Visibility:      visibility,
		DefaultBranch:   r.DefaultBranch,
		CreatedAt:       timestamp(r.CreatedAt),
		UpdatedAt:       timestamp(r.UpdatedAt),
		PushedAt:        timestamp(r.PushedAt),
		Permissions: map[string]bool{
			"admin":    aff == "owner",
			"maintain": aff == "owner",
			"push":     true,
			"triage":   true,
			"pull":     true,
		},
	}
}

// --- handlers ------------------------------------------------------------

// apiUser serves GET /user.
func (s *Server) apiUser(a *apiRequest) {
	writeJSON(a.w, http.StatusOK, a.fullUser(a.caller))
}

// apiUsersLogin serves GET /users/{login}.
func (s *Server) apiUsersLogin(a *apiRequest) {
	s.mu.Lock()
	u := s.lookupUserLocked(a.arg)
	if u != nil {
		u = snapshotUser(u)
	}
	s.mu.Unlock()
	if u == nil {
		writeJSON(a.w, http.StatusNotFound, apiError{Message: "Not Found", DocumentationURL: docsREST, Status: "404"})
		return
	}
	writeJSON(a.w, http.StatusOK, a.fullUser(u))
}

// apiUserOrgs serves GET /user/orgs.
func (s *Server) apiUserOrgs(a *apiRequest) {
	s.writeOrgs(a, a.caller.Orgs)
}

// apiUsersLoginOrgs serves GET /users/{login}/orgs (every membership is
// treated as public).
func (s *Server) apiUsersLoginOrgs(a *apiRequest) {
	s.mu.Lock()
	u := s.lookupUserLocked(a.arg)
	var orgs []string
	if u != nil {
		orgs = slices.Clone(u.Orgs)
	}
	s.mu.Unlock()
	if u == nil {
		writeJSON(a.w, http.StatusNotFound, apiError{Message: "Not Found", DocumentationURL: docsREST, Status: "404"})
		return
	}
	s.writeOrgs(a, orgs)
}

func (s *Server) writeOrgs(a *apiRequest, names []string) {
	orgs := make([]apiOrg, 0, len(names))
	for _, n := range names {
		orgs = append(orgs, a.org(n))
	}
	writeJSON(a.w, http.StatusOK, paginate(a, orgs))
}

// apiUserTeams serves GET /user/teams.
func (s *Server) apiUserTeams(a *apiRequest) {
	teams := make([]apiTeam, 0, len(a.caller.Teams))
	for _, t := range a.caller.Teams {
		teams = append(teams, a.team(t))
	}
	writeJSON(a.w, http.StatusOK, paginate(a, teams))
}

// apiUserRepos serves GET /user/repos with the visibility, affiliation,
// type, sort and direction parameters and pagination.
func (s *Server) apiUserRepos(a *apiRequest) {
	q := a.r.URL.Query()
	visibility, affil, typ := q.Get("visibility"), q.Get("affiliation"), q.Get("type")
	sortBy, dir := cmp.Or(q.Get("sort"), "full_name"), q.Get("direction")
	invalid := func(field string) {
		writeJSON(a.w, http.StatusUnprocessableEntity, apiError{
			Message:          "Validation Failed: invalid " + field,
			DocumentationURL: "https://docs.github.com/rest/repos/repos#list-repositories-for-the-authenticated-user",
			Status:           "422",
		})
	}
	if typ != "" && (visibility != "" || affil != "") {
		invalid("combination: type cannot be used with visibility or affiliation")
		return
	}
	if !slices.Contains([]string{"", "all", "public", "private"}, visibility) {
		invalid("visibility")
		return
	}
	if !slices.Contains([]string{"", "all", "owner", "public", "private", "member"}, typ) {
		invalid("type")
		return
	}
	if !slices.Contains([]string{"created", "updated", "pushed", "full_name"}, sortBy) {
		invalid("sort")
		return
	}
	if dir == "" {
		dir = "desc"
		if sortBy == "full_name" {
			dir = "asc"
		}
	}
	if dir != "asc" && dir != "desc" {
		invalid("direction")
		return
	}
	affiliations := []string{"owner", "collaborator", "organization_member"}
	if affil != "" {
		affiliations = nil
		for f := range strings.SplitSeq(affil, ",") {
			f = strings.TrimSpace(f)
			if !slices.Contains([]string{"owner", "collaborator", "organization_member"}, f) {
				invalid("affiliation")
				return
			}
			affiliations = append(affiliations, f)
		}
	}

	u := a.caller
	var repos []Repo
	for _, r := range u.Repos {
		aff := affiliation(u, r)
		keep := true
		switch typ {
		case "owner":
			keep = aff == "owner"
		case "member":
			keep = aff != "owner"
		case "public":
			keep = !r.Private
		case "private":
			keep = r.Private
		}
		switch visibility {
		case "public":
			keep = keep && !r.Private
		case "private":
			keep = keep && r.Private
		}
		if keep && slices.Contains(affiliations, aff) {
			repos = append(repos, r)
		}
	}
	slices.SortStableFunc(repos, func(x, y Repo) int {
		var c int
		switch sortBy {
		case "created":
			c = x.CreatedAt.Compare(y.CreatedAt)
		case "updated":
			c = x.UpdatedAt.Compare(y.UpdatedAt)
		case "pushed":
			c = x.PushedAt.Compare(y.PushedAt)
		default:
			c = cmp.Or(cmp.Compare(strings.ToLower(x.FullName), strings.ToLower(y.FullName)),
				cmp.Compare(x.FullName, y.FullName))
		}
		if dir == "desc" {
			c = -c
		}
		return cmp.Or(c, cmp.Compare(x.ID, y.ID))
	})
	page := paginate(a, repos)
	out := make([]apiRepo, 0, len(page))
	for _, r := range page {
		out = append(out, s.repo(a, u, r))
	}
	writeJSON(a.w, http.StatusOK, out)
}

// paginate returns the requested page of items (per_page: default 30, at
// most 100; page: default 1) and sets an RFC 5988 Link header with
// rel="prev", "next", "last" and "first" as applicable. Link URLs keep the
// request's scheme, host, path (including any /api/v3 prefix) and other
// query parameters. The result is never nil, so it encodes as [].
func paginate[T any](a *apiRequest, items []T) []T {
	q := a.r.URL.Query()
	perPage, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || perPage < 1 {
		perPage = defaultPerPage
	}
	perPage = min(perPage, maxPerPage)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	last := max(1, (len(items)+perPage-1)/perPage)

	link := func(p int, rel string) string {
		v := a.r.URL.Query()
		v.Set("page", strconv.Itoa(p))
		return "<" + a.webBase + a.r.URL.EscapedPath() + "?" + v.Encode() + `>; rel="` + rel + `"`
	}
	var links []string
	if page > 1 {
		links = append(links, link(min(page-1, last), "prev"))
	}
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"))
	}
	if len(links) > 0 {
		a.w.Header().Set("Link", strings.Join(links, ", "))
	}

	if page > last || len(items) == 0 {
		return []T{}
	}
	start := (page - 1) * perPage
	end := min(start+perPage, len(items))
	return items[start:end]
}
