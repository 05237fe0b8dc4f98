package tools_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v75/github"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/tools"
)

// alice is the caller of most tests.
var alice = store.Identity{
	ID:        4242,
	Login:     "alice",
	Name:      "Alice Liddell",
	Email:     "alice@example.test",
	AvatarURL: "https://avatars.example.test/u/4242?v=4",
}

// connect starts an MCP server with the built-in tools registered for find
// and returns a client session to it over in-memory transports.
func connect(t *testing.T, find tools.CallerFunc) *mcp.ClientSession {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "caddymcp-test", Version: "v0.0.0"}, nil)
	tools.Register(server, find)
	st, ct := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatalf("server connect: %v", err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "v0.0.0"}, nil)
	cs, err := client.Connect(ctx, ct, nil)
	if err != nil {
		t.Fatalf("client connect: %v", err)
	}
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
	})
	return cs
}

// call invokes a tool and fails the test on a protocol error.
func call(t *testing.T, cs *mcp.ClientSession, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("CallTool(%s, %v): protocol error %v", name, args, err)
	}
	return res
}

// textOf returns the text of a result that must have exactly one text block.
func textOf(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) != 1 {
		t.Fatalf("want exactly 1 content block, got %d: %+v", len(res.Content), res.Content)
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("content is %T, want *mcp.TextContent", res.Content[0])
	}
	return tc.Text
}

// structured decodes the structuredContent of a successful result into T.
func structured[T any](t *testing.T, res *mcp.CallToolResult) T {
	t.Helper()
	if res.IsError {
		t.Fatalf("unexpected tool error: %s", textOf(t, res))
	}
	if res.StructuredContent == nil {
		t.Fatal("no structuredContent")
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding structuredContent %s: %v", raw, err)
	}
	return v
}

// wantToolError checks that res is a tool error (isError, no structured
// content) whose text contains want, and returns the text.
func wantToolError(t *testing.T, res *mcp.CallToolResult, want string) string {
	t.Helper()
	text := textOf(t, res)
	if !res.IsError {
		t.Fatalf("want isError, got success: %s", text)
	}
	if res.StructuredContent != nil {
		t.Errorf("tool error carries structuredContent %v", res.StructuredContent)
	}
	if !strings.Contains(text, want) {
		t.Errorf("error text %q does not contain %q", text, want)
	}
	return text
}

// asMap reinterprets a schema as the client sees it.
func asMap(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("schema %s is not an object: %v", raw, err)
	}
	return m
}

func required(m map[string]any) []string {
	var out []string
	if r, ok := m["required"].([]any); ok {
		for _, v := range r {
			out = append(out, v.(string))
		}
	}
	slices.Sort(out)
	return out
}

func prop(t *testing.T, schema map[string]any, name string) map[string]any {
	t.Helper()
	props, ok := schema["properties"].(map[string]any)
	if !ok {
		t.Fatalf("schema has no properties: %v", schema)
	}
	p, ok := props[name].(map[string]any)
	if !ok {
		t.Fatalf("schema has no property %q: %v", name, props)
	}
	return p
}

func TestListTools(t *testing.T) {
	cs := connect(t, tools.Fixed(&tools.Caller{User: alice}))
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		byName[tool.Name] = tool
	}
	var names []string
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"calculate", "get_github_repos", "get_user_info"}; !slices.Equal(names, want) {
		t.Fatalf("tools = %v, want %v", names, want)
	}

	for name, tool := range byName {
		if len(tool.Description) < 40 {
			t.Errorf("%s: description too short: %q", name, tool.Description)
		}
		if tool.Annotations == nil || !tool.Annotations.ReadOnlyHint {
			t.Errorf("%s: want readOnlyHint", name)
		}
		in, out := asMap(t, tool.InputSchema), asMap(t, tool.OutputSchema)
		for kind, s := range map[string]map[string]any{"input": in, "output": out} {
			if s["type"] != "object" {
				t.Errorf("%s %s schema type = %v, want object", name, kind, s["type"])
			}
			if s["additionalProperties"] != false {
				t.Errorf("%s %s schema additionalProperties = %v, want false", name, kind, s["additionalProperties"])
			}
		}
	}

	// get_user_info: no arguments; all five identity fields out.
	in, out := asMap(t, byName["get_user_info"].InputSchema), asMap(t, byName["get_user_info"].OutputSchema)
	if props, _ := in["properties"].(map[string]any); len(props) != 0 {
		t.Errorf("get_user_info takes arguments: %v", props)
	}
	if got, want := required(out), []string{"avatar_url", "email", "id", "login", "name"}; !slices.Equal(got, want) {
		t.Errorf("get_user_info output required = %v, want %v", got, want)
	}

	// calculate: all three required, operation enum.
	in, out = asMap(t, byName["calculate"].InputSchema), asMap(t, byName["calculate"].OutputSchema)
	if got, want := required(in), []string{"a", "b", "operation"}; !slices.Equal(got, want) {
		t.Errorf("calculate input required = %v, want %v", got, want)
	}
	var enum []string
	for _, v := range prop(t, in, "operation")["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	if want := []string{"add", "subtract", "multiply", "divide", "power", "modulo"}; !slices.Equal(enum, want) {
		t.Errorf("operation enum = %v, want %v", enum, want)
	}
	for _, n := range []string{"a", "b"} {
		if typ := prop(t, in, n)["type"]; typ != "number" {
			t.Errorf("calculate %s type = %v, want number", n, typ)
		}
	}
	if got, want := required(out), []string{"a", "b", "expression", "operation", "result"}; !slices.Equal(got, want) {
		t.Errorf("calculate output required = %v, want %v", got, want)
	}

	// get_github_repos: optional limit 1..100, default 10.
	in, out = asMap(t, byName["get_github_repos"].InputSchema), asMap(t, byName["get_github_repos"].OutputSchema)
	if got := required(in); len(got) != 0 {
		t.Errorf("get_github_repos input required = %v, want none", got)
	}
	limit := prop(t, in, "limit")
	if limit["type"] != "integer" || limit["minimum"] != 1.0 || limit["maximum"] != 100.0 || limit["default"] != 10.0 {
		t.Errorf("limit schema = %v, want integer 1..100 default 10", limit)
	}
	if got, want := required(out), []string{"count", "repos"}; !slices.Equal(got, want) {
		t.Errorf("get_github_repos output required = %v, want %v", got, want)
	}
	items, _ := prop(t, out, "repos")["items"].(map[string]any)
	if got, want := required(items), []string{"description", "full_name", "html_url", "language", "name", "private", "stars", "updated_at"}; !slices.Equal(got, want) {
		t.Errorf("repo item required = %v, want %v", got, want)
	}
	if byName["get_github_repos"].Annotations.OpenWorldHint == nil || !*byName["get_github_repos"].Annotations.OpenWorldHint {
		t.Error("get_github_repos should be marked openWorld: it calls GitHub")
	}
}

func TestFromTokenInfo(t *testing.T) {
	caller := &tools.Caller{User: alice, ClientID: "client-1", Scope: "mcp"}
	ctx := context.Background()

	req := &mcp.CallToolRequest{Extra: &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{
		Scopes: []string{"mcp"},
		Extra:  map[string]any{tools.ExtraKey: caller},
	}}}
	got, err := tools.FromTokenInfo(ctx, req)
	if err != nil || got != caller {
		t.Fatalf("FromTokenInfo = %p, %v; want %p, nil", got, err, caller)
	}

	bad := map[string]*mcp.CallToolRequest{
		"nil request":      nil,
		"no extra":         {},
		"no token info":    {Extra: &mcp.RequestExtra{}},
		"no extra map":     {Extra: &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{}}},
		"key missing":      {Extra: &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{Extra: map[string]any{"other": caller}}}},
		"caller by value":  {Extra: &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{Extra: map[string]any{tools.ExtraKey: *caller}}}},
		"typed nil caller": {Extra: &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{Extra: map[string]any{tools.ExtraKey: (*tools.Caller)(nil)}}}},
		"wrong type":       {Extra: &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{Extra: map[string]any{tools.ExtraKey: "alice"}}}},
	}
	for name, req := range bad {
		t.Run(name, func(t *testing.T) {
			got, err := tools.FromTokenInfo(ctx, req)
			if err == nil || got != nil {
				t.Fatalf("FromTokenInfo = %v, %v; want nil, error", got, err)
			}
		})
	}
}

func TestFixed(t *testing.T) {
	caller := &tools.Caller{User: alice}
	if got, err := tools.Fixed(caller)(context.Background(), nil); err != nil || got != caller {
		t.Errorf("Fixed(caller) = %p, %v", got, err)
	}
	if got, err := tools.Fixed(nil)(context.Background(), nil); err == nil || got != nil {
		t.Errorf("Fixed(nil) = %v, %v; want nil, error", got, err)
	}
}

// TestFromTokenInfoOverStreamableHTTP checks the wiring the mcp_server
// handler relies on: a TokenInfo put in the request context by bearer-token
// middleware reaches the tools through FromTokenInfo.
func TestFromTokenInfoOverStreamableHTTP(t *testing.T) {
	server := mcp.NewServer(&mcp.Implementation{Name: "caddymcp-test", Version: "v0.0.0"}, nil)
	tools.Register(server, tools.FromTokenInfo)
	callers := map[string]*tools.Caller{
		"token-alice": {User: alice},
		"token-bob":   {User: store.Identity{ID: 7, Login: "bob"}},
	}
	verify := func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		c, ok := callers[token]
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{
			Scopes:     []string{"mcp"},
			Expiration: time.Now().Add(time.Hour),
			UserID:     c.User.Login,
			Extra:      map[string]any{tools.ExtraKey: c},
		}, nil
	}
	h := auth.RequireBearerToken(verify, nil)(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	ts := httptest.NewServer(h)
	defer ts.Close()

	for token, c := range callers {
		t.Run(c.User.Login, func(t *testing.T) {
			hc := &http.Client{Transport: bearer{token: token, base: http.DefaultTransport}}
			client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "v0.0.0"}, nil)
			cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: ts.URL, HTTPClient: hc, DisableStandaloneSSE: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			got := structured[tools.UserInfo](t, call(t, cs, "get_user_info", map[string]any{}))
			if got.Login != c.User.Login || got.ID != c.User.ID {
				t.Errorf("get_user_info = %+v, want %s", got, c.User.Login)
			}
		})
	}
}

// bearer adds an Authorization header to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// TestPanicBecomesToolError checks that a panic inside a tool, here in the
// embedding server's CallerFunc or Caller.GitHub, is answered as a tool
// error and leaves the server running: the SDK does not recover handler
// panics, and one would otherwise bring the whole process down.
func TestPanicBecomesToolError(t *testing.T) {
	panicky := func(context.Context, *mcp.CallToolRequest) (*tools.Caller, error) { panic("secret internals") }
	cs := connect(t, panicky)
	text := wantToolError(t, call(t, cs, "get_user_info", nil), "internal error in get_user_info")
	if strings.Contains(text, "secret") {
		t.Errorf("panic value reaches the client: %q", text)
	}

	cs = connect(t, tools.Fixed(&tools.Caller{User: alice, GitHub: func(context.Context) (*github.Client, error) {
		var m map[string]int
		m["boom"]++ // nil map write
		return nil, nil
	}}))
	wantToolError(t, call(t, cs, "get_github_repos", nil), "internal error in get_github_repos")
	// The session survives.
	if got := structured[tools.UserInfo](t, call(t, cs, "get_user_info", nil)); got.Login != "alice" {
		t.Errorf("after panic: %+v", got)
	}
}
