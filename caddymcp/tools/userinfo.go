package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// UserInfo is the structured output of get_user_info: the GitHub identity
// the caller signed in with. Name and Email are empty when the user has not
// made them public on GitHub; they are always present so clients need not
// tell "missing" from "empty".
type UserInfo struct {
	ID        int64  `json:"id"`
	Login     string `json:"login"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	AvatarURL string `json:"avatar_url"`
}

// userInfoArgs is the (empty) input of get_user_info.
type userInfoArgs struct{}

// userInfoInputSchema accepts only the empty object, so that a model passing
// arguments by mistake learns about it instead of being silently ignored.
var userInfoInputSchema = json.RawMessage(`{
	"type": "object",
	"properties": {},
	"additionalProperties": false
}`)

var userInfoOutputSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"id":         {"type": "integer", "description": "GitHub user ID"},
		"login":      {"type": "string",  "description": "GitHub login (username)"},
		"name":       {"type": "string",  "description": "display name; empty if not set"},
		"email":      {"type": "string",  "description": "public email; empty if not shared"},
		"avatar_url": {"type": "string",  "format": "uri", "description": "avatar image URL"}
	},
	"required": ["id", "login", "name", "email", "avatar_url"],
	"additionalProperties": false
}`)

func registerUserInfo(s *mcp.Server, find CallerFunc) {
	mcp.AddTool(s, &mcp.Tool{
		Name:        "get_user_info",
		Title:       "Get user info",
		Description: "Returns the GitHub account you are signed in with: numeric ID, login, display name, public email and avatar URL. Takes no arguments.",
		InputSchema: userInfoInputSchema,
		// Set explicitly so the published schema is exactly the one above
		// rather than whatever reflection infers from UserInfo.
		OutputSchema: userInfoOutputSchema,
		Annotations: &mcp.ToolAnnotations{
			Title:          "Get user info",
			ReadOnlyHint:   true,
			IdempotentHint: true,
			OpenWorldHint:  boolPtr(false),
		},
	}, recovered("get_user_info", func(ctx context.Context, req *mcp.CallToolRequest, _ userInfoArgs) (*mcp.CallToolResult, UserInfo, error) {
		c, err := callerOf(ctx, find, req)
		if err != nil {
			return nil, UserInfo{}, err
		}
		u := c.User
		out := UserInfo{ID: u.ID, Login: u.Login, Name: u.Name, Email: u.Email, AvatarURL: u.AvatarURL}
		return textResult(userInfoText(out)), out, nil
	}))
}

// userInfoText is a one-paragraph summary of u for content-only clients.
func userInfoText(u UserInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "You are signed in to GitHub as @%s", u.Login)
	if u.Name != "" {
		fmt.Fprintf(&b, " (%s)", u.Name)
	}
	fmt.Fprintf(&b, ", user ID %d.", u.ID)
	if u.Email != "" {
		fmt.Fprintf(&b, " Email: %s.", u.Email)
	} else {
		b.WriteString(" No public email.")
	}
	if u.AvatarURL != "" {
		fmt.Fprintf(&b, " Avatar: %s", u.AvatarURL)
	}
	return b.String()
}
