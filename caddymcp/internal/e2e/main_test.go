package e2e

import (
	"fmt"
	"os"
	"os/exec"
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
		if out, err := exec.Command("go", "build", "-o", binPath, "github.com/caddymcp/caddymcp/cmd/caddy").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
