package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// sessionWith is an MCP session at /mcp carrying tok.
func (e *env) sessionWith(ctx context.Context, t *testing.T, tok *oauth2.Token) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.site + "/mcp", HTTPClient: e.tokenClient(tok)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// TestIdentityFollowsGitHub: a grant follows the GitHub user's numeric
// ID. When alice renames herself on GitHub and someone else then claims
// the login "alice", the next refresh carries her new login to the
// upstream, the admin API finds her grant by the new login (not the old),
// the newcomer who took the old login gets nothing of hers, and
// allow_users judges the current login (or the numeric ID, id:1001).
func TestIdentityFollowsGitHub(t *testing.T) {
	e := start(t, options{authExtra: "allow_users alice carol id:1002"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := e.register(t, true)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	if user, _ := whoami(ctx, t, e.sessionWith(ctx, t, tok)); user != "alice" {
		t.Fatalf("upstream saw %q, want alice", user)
	}

	e.gh.RenameUser("alice", "carol") // still listed, under her new name
	status, out := c.refresh(t, tok.RefreshToken)
	if status != http.StatusOK {
		t.Fatalf("refresh after the rename: %d %v", status, out)
	}
	tok = &oauth2.Token{AccessToken: out["access_token"].(string), RefreshToken: out["refresh_token"].(string)}
	e.logs.addSecret(tok.AccessToken)
	e.logs.addSecret(tok.RefreshToken)
	if user, _ := whoami(ctx, t, e.sessionWith(ctx, t, tok)); user != "carol" {
		t.Errorf("upstream saw %q after the rename, want the new login carol", user)
	}
	grants := func(login string) int {
		var listed struct {
			Grants []json.RawMessage `json:"grants"`
		}
		if err := json.Unmarshal([]byte(e.mustCLI(t, "grants", "--user", login, "--json")), &listed); err != nil {
			t.Fatal(err)
		}
		return len(listed.Grants)
	}
	if n, old := grants("carol"), grants("alice"); n != 1 || old != 0 {
		t.Errorf("grants by the new login: %d, by the old: %d; want 1 and 0", n, old)
	}
	// Someone else claims the freed login: a user of their own.
	e.gh.AddUser(fakegithub.User{ID: 3003, Login: "alice", Name: "Another Alice"})
	cn := e.register(t, true)
	tn := cn.login(t, e.browser("alice"), e.site+"/mcp")
	if user, _ := whoami(ctx, t, e.sessionWith(ctx, t, tn)); user != "alice" {
		t.Errorf("the newcomer reached the upstream as %q", user)
	}
	var theirs struct {
		Grants []struct {
			User struct {
				ID int64 `json:"id"`
			} `json:"user"`
		} `json:"grants"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI(t, "grants", "--user", "alice", "--json")), &theirs); err != nil {
		t.Fatal(err)
	}
	if len(theirs.Grants) != 1 || theirs.Grants[0].User.ID != 3003 {
		t.Errorf("grants of the login alice now: %+v, want only the newcomer's", theirs)
	}

	// Renamed again, to a login no list names: the allow-lists judge the
	// current login, and the refresh revokes.
	e.gh.RenameUser("carol", "alice-elsewhere")
	status, out = c.refresh(t, tok.RefreshToken)
	if status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("refresh as a login no list admits: %d %v, want invalid_grant", status, out)
	}

	// bob is listed by numeric ID, whatever his login.
	e.gh.RenameUser("bob", "robert")
	cb := e.register(t, true)
	tb := cb.login(t, e.browser("robert"), e.site+"/mcp")
	if user, _ := whoami(ctx, t, e.sessionWith(ctx, t, tb)); user != "robert" {
		t.Errorf("upstream saw %q, want robert", user)
	}
	if strings.Contains(e.mustCLI(t, "grants"), "alice (1001)") {
		t.Errorf("a grant still names the login alice gave up")
	}
}
