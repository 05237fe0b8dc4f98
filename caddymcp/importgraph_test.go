package caddymcp

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// standIn matches the packages of this module that exist for tests or for
// the demo: the GitHub stand-in, the test harnesses and helpers, the load
// driver and the demo itself.
var standIn = regexp.MustCompile(`(?i)^github\.com/caddymcp/caddymcp/.*(/internal/fakegithub$|/[^/]*(fake|mock|stub|standin|test|e2e|bench|demo)[^/]*(/|$))`)

// TestImportGraphHasNoStandIn lists what the plugin and cmd/caddy link (an
// xcaddy build --with the plugin links the first; `go build ./cmd/caddy`
// both), without test files, and fails if any of it is the GitHub stand-in
// or another package of this module named as a test or demo aid: those
// belong to tests and to cmd/caddymcp-demo, never to a production build.
func TestImportGraphHasNoStandIn(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goTool, err := exec.LookPath("go") // go test puts its own GOROOT/bin first on PATH
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	roots := []string{"github.com/caddymcp/caddymcp/caddymcp", "github.com/caddymcp/caddymcp/cmd/caddy"}
	for _, root := range roots {
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", root).Output()
		if err != nil {
			msg := ""
			if ee, ok := err.(*exec.ExitError); ok {
				msg = string(ee.Stderr)
			}
			t.Fatalf("go list -deps %s: %v\n%s", root, err, msg)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 50 || deps[len(deps)-1] != root {
			t.Fatalf("go list -deps %s listed %d packages, ending %q: not the import graph", root, len(deps), deps[len(deps)-1:])
		}
		for _, dep := range deps {
			if standIn.MatchString(dep) {
				t.Errorf("%s links %s: production code must not import a test stand-in or demo package", root, dep)
			}
		}
	}
}

// TestStandInPattern pins what the import-graph check catches and what it
// leaves alone.
func TestStandInPattern(t *testing.T) {
	for path, want := range map[string]bool{
		"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub": true,
		"github.com/caddymcp/caddymcp/caddymcp/internal/e2e":        true,
		"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest":     true,
		"github.com/caddymcp/caddymcp/caddymcp/internal/bench":      true,
		"github.com/caddymcp/caddymcp/caddymcp/store/storetest":     true,
		"github.com/caddymcp/caddymcp/caddymcp/demo":                true,
		"github.com/caddymcp/caddymcp/cmd/caddymcp-demo":            true,
		"github.com/caddymcp/caddymcp/caddymcp":                     false,
		"github.com/caddymcp/caddymcp/caddymcp/oauth":               false,
		"github.com/caddymcp/caddymcp/caddymcp/githubidp":           false,
		"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore":    false,
		"github.com/caddymcp/caddymcp/caddymcp/internal/ports":      false,
		"github.com/caddymcp/caddymcp/cmd/caddy":                    false,
		"go.opentelemetry.io/otel/sdk/trace/tracetest":              false,
		"internal/testlog": false,
	} {
		if got := standIn.MatchString(path); got != want {
			t.Errorf("standIn matches %s: %v, want %v", path, got, want)
		}
	}
}
