package e2e

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The Caddy binary, built once per test run for the tests that need a
// separate process.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// caddyBinary builds cmd/caddy as the README says, once, and returns its
// path.
func caddyBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "caddymcp-e2e-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "caddy")
		binErr = goBuildErr("github.com/caddymcp/caddymcp/cmd/caddy", binPath)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
