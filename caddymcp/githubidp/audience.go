package githubidp

// Audience names GitHub users, members of organizations and members of
// teams: who may sign in (Config.Allow), or who may be granted a scope
// (ScopeRule.Allow). A user is in it when any of the three lists names
// them. The JSON names are those of mcp_auth's config, which embeds it.
type Audience struct {
	// Users are GitHub logins, or numeric user IDs written id:<n>.
	Users []string `json:"allow_users,omitempty"`
	// Orgs are GitHub organizations.
	Orgs []string `json:"allow_orgs,omitempty"`
	// Teams are teams, written org/team-slug.
	Teams []string `json:"allow_teams,omitempty"`
}

// Empty reports whether the audience names nobody.
func (a Audience) Empty() bool { return len(a.Users)+len(a.Orgs)+len(a.Teams) == 0 }

// audience is an Audience checked and compiled to lower-cased sets.
type audience struct {
	users map[string]bool // logins, and "id:<n>"
	orgs  map[string]bool // org logins
	teams map[string]bool // "org/slug"
}

// compile checks a and returns its lower-cased sets, without blank
// entries.
func (a Audience) compile() (audience, error) {
	c := audience{users: lowerSet(a.Users), orgs: lowerSet(a.Orgs), teams: lowerSet(a.Teams)}
	if err := checkTeams(c.teams); err != nil {
		return audience{}, err
	}
	if err := checkUsers(c.users); err != nil {
		return audience{}, err
	}
	return c, nil
}

// empty reports whether c names nobody.
func (c audience) empty() bool { return len(c.users)+len(c.orgs)+len(c.teams) == 0 }
