// Command caddymcp-test runs every test of the repository on a machine that
// has only Go: it finds what the tests need besides Go, installs what is
// missing from Debian's or Ubuntu's packages, installs the pinned
// mcp-remote with npm, and then runs
//
//	go test -race -count=1 ./...
//
// with any arguments given appended (go run ./cmd/caddymcp-test -run Gate).
// It is the README's test command, and CI's.
//
// What the tests need besides Go, and why:
//
//   - a C compiler: -race needs cgo;
//   - PostgreSQL's server binaries: the PostgreSQL tests start their own
//     throwaway server from them (unless CADDYMCP_TEST_POSTGRES names one);
//   - Node.js 20.18.1 or newer with npm: one test drives mcp-remote;
//   - Chromium: one test drives the consent page in a real browser.
//
// On a machine without apt-get it says what to install and stops.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// mcpRemoteDir holds the pinned mcp-remote (package.json and its lock).
const mcpRemoteDir = "caddymcp/internal/e2e/testdata/mcp-remote"

// need is one thing the tests need, and the Debian packages that bring it.
type need struct {
	what     string
	packages []string
	present  func() bool
}

var needs = []need{
	{"a C compiler (for -race)", []string{"gcc", "libc6-dev"}, func() bool { return onPath(goEnv("CC")) }},
	{"PostgreSQL's server binaries", []string{"postgresql"}, havePostgres},
	{"Node.js and npm", []string{"nodejs", "npm"}, func() bool { return onPath("node") && onPath("npm") }},
	{"Chromium", []string{"chromium"}, func() bool { return onPath("chromium") }},
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "caddymcp-test:", err)
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run it from the repository root: go run ./cmd/caddymcp-test")
	}
	var missing []string
	var what []string
	for _, n := range needs {
		if !n.present() {
			missing = append(missing, n.packages...)
			what = append(what, n.what)
		}
	}
	if len(missing) > 0 {
		if err := install(what, missing); err != nil {
			return err
		}
	}
	// Exactly the lock file's packages, with no install scripts run.
	if err := runIn(mcpRemoteDir, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"); err != nil {
		return fmt.Errorf("installing the pinned mcp-remote: %w", err)
	}
	return runIn(".", "go", append([]string{"test", "-race", "-count=1", "./..."}, args...)...)
}

// install installs the Debian packages pkgs, which bring what, with
// apt-get (through sudo when not root).
func install(what, pkgs []string) error {
	fmt.Fprintf(os.Stderr, "caddymcp-test: the tests need %s; installing from Debian's packages: %s\n",
		strings.Join(what, ", "), strings.Join(pkgs, " "))
	if !onPath("apt-get") {
		return fmt.Errorf("no apt-get here: install %s (packages such as %s) yourself, then run this again",
			strings.Join(what, ", "), strings.Join(pkgs, " "))
	}
	var prefix []string
	if os.Geteuid() != 0 {
		if !onPath("sudo") {
			return fmt.Errorf("not root and no sudo: install %s as root, then run this again", strings.Join(pkgs, " "))
		}
		prefix = []string{"sudo"}
	}
	os.Setenv("DEBIAN_FRONTEND", "noninteractive")
	apt := func(args ...string) error {
		argv := append(append(append([]string(nil), prefix...), "apt-get"), args...)
		return runIn(".", argv[0], argv[1:]...)
	}
	if err := apt("update", "-qq"); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	if err := apt(append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)...); err != nil {
		return fmt.Errorf("apt-get install: %w", err)
	}
	return nil
}

// havePostgres reports whether PostgreSQL's initdb is installed: Debian
// keeps it off PATH, under /usr/lib/postgresql/<version>/bin.
func havePostgres() bool {
	if onPath("initdb") {
		return true
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	return len(found) > 0
}

func onPath(name string) bool {
	if name == "" {
		return false
	}
	_, err := exec.LookPath(name)
	return err == nil
}

// goEnv is a value of `go env`, "" if it cannot be read.
func goEnv(name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return ""
	}
	// CC may carry flags ("gcc -m64"); the compiler is the first word.
	if f := strings.Fields(string(out)); len(f) > 0 {
		return f[0]
	}
	return ""
}

// runIn runs a command in dir with this process's standard streams.
func runIn(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
