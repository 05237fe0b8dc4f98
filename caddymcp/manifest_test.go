package caddymcp

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBuildManifestAgrees keeps xcaddy.json, go.mod, the README's build
// command and CI's test command telling the same story.
func TestBuildManifestAgrees(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var manifest struct {
		Caddy   string            `json:"caddy"`
		With    []string          `json:"with"`
		Replace map[string]string `json:"replace"`
	}
	if err := json.Unmarshal([]byte(read("xcaddy.json")), &manifest); err != nil {
		t.Fatalf("xcaddy.json: %v", err)
	}
	gomod := read("go.mod")
	module := regexp.MustCompile(`(?m)^module (\S+)$`).FindStringSubmatch(gomod)
	caddy := regexp.MustCompile(`(?m)^\s*github\.com/caddyserver/caddy/v2 (\S+)`).FindStringSubmatch(gomod)
	if module == nil || caddy == nil {
		t.Fatal("go.mod names no module or no Caddy")
	}
	if manifest.Caddy != caddy[1] {
		t.Errorf("xcaddy.json builds Caddy %s, go.mod requires %s", manifest.Caddy, caddy[1])
	}
	if len(manifest.With) == 0 || manifest.Replace[module[1]] != "." || len(manifest.Replace) != 1 {
		t.Errorf("xcaddy.json must import the plugin and replace %s with the checkout", module[1])
	}
	cmd := "xcaddy build " + manifest.Caddy
	for _, pkg := range manifest.With {
		dir, ok := strings.CutPrefix(pkg, module[1]+"/")
		if !ok {
			t.Errorf("plugin package %s is not in module %s", pkg, module[1])
			continue
		}
		if files, _ := filepath.Glob(filepath.Join("..", dir, "*.go")); len(files) == 0 {
			t.Errorf("plugin package %s has no Go files", pkg)
		}
		cmd += " --with " + pkg
	}
	cmd += " --replace " + module[1] + "=."

	readme := read("README.md")
	if !strings.Contains(readme, cmd) {
		t.Errorf("the README does not show the build command the manifest gives: %s", cmd)
	}
	const testCmd = "go run ./cmd/caddymcp-test"
	if !strings.Contains(readme, "```sh\n"+testCmd+"\n```") {
		t.Errorf("the README's test command is not %q", testCmd)
	}
	if !strings.Contains(read(".ci/run"), "\n"+testCmd+"\n") {
		t.Errorf(".ci/run does not run the README's test command %q", testCmd)
	}
	// And that command runs exactly the whole suite.
	if !strings.Contains(read("cmd/caddymcp-test/main.go"), `"test", "-race", "-count=1", "./..."`) {
		t.Errorf("cmd/caddymcp-test does not run go test -race -count=1 ./...")
	}
}
