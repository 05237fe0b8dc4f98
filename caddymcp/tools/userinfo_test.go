package tools_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/tools"
)

func TestGetUserInfo(t *testing.T) {
	cs := connect(t, tools.Fixed(&tools.Caller{User: alice, ClientID: "c", Scope: "mcp"}))
	res := call(t, cs, "get_user_info", map[string]any{})
	got := structured[tools.UserInfo](t, res)
	want := tools.UserInfo{ID: alice.ID, Login: alice.Login, Name: alice.Name, Email: alice.Email, AvatarURL: alice.AvatarURL}
	if got != want {
		t.Errorf("structured = %+v, want %+v", got, want)
	}
	text := textOf(t, res)
	for _, s := range []string{"@alice", "Alice Liddell", "4242", "alice@example.test"} {
		if !strings.Contains(text, s) {
			t.Errorf("text %q lacks %q", text, s)
		}
	}
	if strings.HasPrefix(strings.TrimSpace(text), "{") {
		t.Errorf("text is a JSON dump, want prose: %q", text)
	}
}

// TestGetUserInfoSparse checks that absent name and email still produce
// every output field (the output schema requires them) and sensible text.
func TestGetUserInfoSparse(t *testing.T) {
	cs := connect(t, tools.Fixed(&tools.Caller{User: store.Identity{ID: 9, Login: "bob"}}))
	res := call(t, cs, "get_user_info", nil)
	if got := structured[tools.UserInfo](t, res); got != (tools.UserInfo{ID: 9, Login: "bob"}) {
		t.Errorf("structured = %+v", got)
	}
	raw := res.StructuredContent.(map[string]any)
	for _, k := range []string{"id", "login", "name", "email", "avatar_url"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("structuredContent lacks %q: %v", k, raw)
		}
	}
	if text := textOf(t, res); !strings.Contains(text, "@bob") || !strings.Contains(text, "No public email") {
		t.Errorf("text = %q", text)
	}
}

func TestGetUserInfoNoCaller(t *testing.T) {
	secret := errors.New("internal: session store at /var/lib/secret unreadable")
	finds := map[string]tools.CallerFunc{
		"Fixed(nil)":     tools.Fixed(nil),
		"nil CallerFunc": nil,
		"FromTokenInfo":  tools.FromTokenInfo, // in-memory transport: no TokenInfo
		"error":          func(context.Context, *mcp.CallToolRequest) (*tools.Caller, error) { return nil, secret },
		"nil, nil":       func(context.Context, *mcp.CallToolRequest) (*tools.Caller, error) { return nil, nil },
		"caller and error": func(context.Context, *mcp.CallToolRequest) (*tools.Caller, error) {
			return &tools.Caller{User: alice}, secret
		},
	}
	for name, find := range finds {
		t.Run(name, func(t *testing.T) {
			cs := connect(t, find)
			text := wantToolError(t, call(t, cs, "get_user_info", map[string]any{}), "no authenticated user")
			if strings.Contains(text, "secret") || strings.Contains(text, "alice") {
				t.Errorf("error leaks details: %q", text)
			}
			// calculate needs no identity and keeps working.
			if res := call(t, cs, "calculate", map[string]any{"operation": "add", "a": 1, "b": 2}); res.IsError {
				t.Errorf("calculate without caller: %s", textOf(t, res))
			}
		})
	}
}

func TestGetUserInfoRejectsArguments(t *testing.T) {
	cs := connect(t, tools.Fixed(&tools.Caller{User: alice}))
	wantToolError(t, call(t, cs, "get_user_info", map[string]any{"login": "mallory"}), `validating "arguments"`)
}
