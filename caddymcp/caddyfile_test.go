package caddymcp

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the golden files of the adapt tests")

// adapt runs the real Caddyfile adapter and returns indented JSON.
func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		// The contract example (testdata/adapt/contract.caddyfile, the README's
		// Configure block) aligns its values with spaces, which
		// `caddy fmt` would not; that is style, not a problem.
		if !strings.Contains(w.Message, "not formatted") {
			t.Errorf("adapter warning: %s", w)
		}
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// TestAdaptGolden checks that each testdata/adapt/*.caddyfile adapts to
// exactly its .json golden file. Run with -update to rewrite them after an
// intended change, and review the diff.
func TestAdaptGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := adapt(t, string(src))
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			golden := strings.TrimSuffix(in, ".caddyfile") + ".json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestAdaptGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("adapted JSON differs from %s:\n%s", golden, got)
			}
		})
	}
}

// TestAdaptOrder checks that mcp_auth needs no `order` line and runs before
// the handle blocks that serve protected paths.
func TestAdaptOrder(t *testing.T) {
	got, err := adapt(t, `localhost {
	handle /mcp* {
		respond "tools"
	}
	mcp_auth {
		github {
			client_id id
			client_secret secret
		}
	}
}`)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	auth, handle := bytes.Index(got, []byte(`"handler": "mcp_auth"`)), bytes.Index(got, []byte(`"handler": "static_response"`))
	if auth < 0 || handle < 0 || auth > handle {
		t.Fatalf("mcp_auth must come before the handle block:\n%s", got)
	}
}

func TestAdaptErrors(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"unknown option":      {"mcp_auth {\nfrobnicate\n}", `unrecognized mcp_auth option "frobnicate"`},
		"github without id":   {"mcp_auth {\ngithub {\nclient_secret s\n}\n}", "github needs client_id and client_secret"},
		"github twice":        {"mcp_auth {\ngithub {\nclient_id a\nclient_secret b\n}\ngithub {\nclient_id a\nclient_secret b\n}\n}", "github may be given only once"},
		"unknown github opt":  {"mcp_auth {\ngithub {\nclient_id a\nclient_secret b\ncolour red\n}\n}", `unrecognized github option "colour"`},
		"issuer twice":        {"mcp_auth {\nissuer https://a\nissuer https://b\n}", "issuer may be given only once"},
		"bad ttl":             {"mcp_auth {\naccess_token_ttl soon\n}", `access_token_ttl: "soon" is not a positive duration`},
		"negative ttl":        {"mcp_auth {\nrefresh_token_ttl -1h\n}", "not a positive duration"},
		"empty protect":       {"mcp_auth {\nprotect\n}", "wrong argument count"},
		"unknown protect opt": {"mcp_auth {\nprotect /mcp {\ncolour red\n}\n}", `unrecognized protect option "colour"`},
		"unknown storage":     {"mcp_auth {\nstorage floppy\n}", "mcp_auth.storage.floppy"},
		"bbolt extra arg":     {"mcp_auth {\nstorage bbolt /a /b\n}", "wrong argument count"},
		"inline args":         {"mcp_auth foo", "wrong argument count"},
		"server inline args":  {"mcp_server foo", "wrong argument count"},
		"forward twice":       {"mcp_auth {\nprotect /a {\nforward_github_token X-A\nforward_github_token X-B\n}\n}", "forward_github_token may be given only once"},
		"server unknown opt":  {"mcp_server {\ncolour red\n}", `unrecognized mcp_server option "colour"`},
		"server bad size":     {"mcp_server {\nmax_request_body lots\n}", `max_request_body: "lots" is not a size`},
		"server huge size":    {"mcp_server {\nmax_request_body 2GiB\n}", "between 1B and 1GiB"},
		"server bad timeout":  {"mcp_server {\nsession_idle_timeout -1s\n}", "not a positive duration"},
		"secret_key twice":    {"mcp_auth {\nsecret_key a\nsecret_key b\n}", "secret_key may be given only once"},
		"registration maybe":  {"mcp_auth {\nregistration maybe\n}", `registration must be open or closed, not "maybe"`},
		"cimd sometimes":      {"mcp_auth {\nclient_id_metadata_documents sometimes\n}", `must be on or off, not "sometimes"`},
		"cimd twice":          {"mcp_auth {\nclient_id_metadata_documents on\nclient_id_metadata_documents off\n}", "may be given only once"},
		"cimd unknown opt":    {"mcp_auth {\nclient_id_metadata_documents {\ncolour red\n}\n}", `unrecognized client_id_metadata_documents option "colour"`},
		"client no uris":      {"mcp_auth {\nclient app {\nname App\n}\n}", "client app needs redirect_uris"},
		"client no id":        {"mcp_auth {\nclient {\nname App\n}\n}", "wrong argument count"},
		"client unknown opt":  {"mcp_auth {\nclient app {\ncolour red\n}\n}", `unrecognized client option "colour"`},
		"restrict nobody":     {"mcp_auth {\nrestrict_scope admin\n}", "restrict_scope admin needs allow_users, allow_orgs or allow_teams"},
		"restrict unknown":    {"mcp_auth {\nrestrict_scope admin {\nallow_pets cat\n}\n}", `unrecognized restrict_scope option "allow_pets"`},
		"health twice":        {"mcp_auth {\nhealth_path /a\nhealth_path /b\n}", "health_path may be given only once"},
		"health no path":      {"mcp_auth {\nhealth_path\n}", "wrong argument count"},
		"limits when closed":  {"mcp_auth {\nregistration closed {\nper_address 5\n}\n}", "only registration open takes limits"},
		"limit zero":          {"mcp_auth {\nregistration open {\nper_address 0\n}\n}", `per_address: "0" is not a positive whole number`},
		"limit unknown":       {"mcp_auth {\npending_sign_ins {\nper_hour 5\n}\n}", `unrecognized pending_sign_ins option "per_hour"`},
		"pending args":        {"mcp_auth {\npending_sign_ins 5\n}", "wrong argument count"},
		"pending twice":       {"mcp_auth {\npending_sign_ins {\ntotal 5\n}\npending_sign_ins {\ntotal 6\n}\n}", "pending_sign_ins may be given only once"},
		"grace negative":      {"mcp_auth {\nrefresh_reuse_grace -1s\n}", `refresh_reuse_grace: "-1s" is not a duration of zero or more`},
		"grace twice":         {"mcp_auth {\nrefresh_reuse_grace 1s\nrefresh_reuse_grace 2s\n}", "refresh_reuse_grace may be given only once"},
		"retries zero":        {"mcp_auth {\nrefresh_reuse_retries 0\n}", "not a positive whole number"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := adapt(t, "localhost {\n"+tc.body+"\n}\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckHealthPath(t *testing.T) {
	for _, ok := range []string{"", "/healthz", "/lb/health"} {
		if err := checkHealthPath(ok); err != nil {
			t.Errorf("checkHealthPath(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"healthz", "/", "/token", "/.well-known/health", "/a//b", "/a/../b", "/h?x", "/h*"} {
		if err := checkHealthPath(bad); err == nil {
			t.Errorf("checkHealthPath(%q) accepted", bad)
		}
	}
}
