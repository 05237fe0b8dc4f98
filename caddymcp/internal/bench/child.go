package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddymcp/caddymcp/caddymcp"
)

// Caddy runs in a child process (this same program, re-executed with
// roleEnv set), so that its memory and CPU are its own: the load generator,
// the upstream MCP server and the GitHub stand-in stay in the driver.
const (
	roleEnv      = "MCP_AUTH_BENCH_ROLE"
	caddyfileEnv = "MCP_AUTH_BENCH_CADDYFILE"
)

// runChildIfAsked runs the Caddy child and exits if this process is one.
func runChildIfAsked() {
	if os.Getenv(roleEnv) != "caddy" {
		return
	}
	if err := caddyChild(); err != nil {
		fmt.Fprintln(os.Stderr, "caddy child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// caddyChild loads the Caddyfile, reports how long provisioning took on
// stdout, and serves until its stdin is closed.
func caddyChild() error {
	src, err := os.ReadFile(os.Getenv(caddyfileEnv))
	if err != nil {
		return err
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	fmt.Printf("ready %d\n", time.Since(start).Nanoseconds())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return caddy.Stop()
}

// child is a running Caddy child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	admin string // http://127.0.0.1:port
	// load is how long the initial caddy.Load (every module provisioned)
	// took inside the child.
	load time.Duration
}

// startChild starts Caddy with the Caddyfile at path, its log going to
// logPath, and waits until the config is loaded.
func startChild(path, logPath, admin string, env []string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), roleEnv+"=caddy", caddyfileEnv+"="+path), env...)
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	logf.Close() // the child has its own descriptor
	c := &child{cmd: cmd, stdin: stdin, admin: "http://" + admin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("caddy child did not start (see %s): %v", logPath, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "ready ")), 10, 64)
	if err != nil {
		_ = c.stop()
		return nil, fmt.Errorf("caddy child said %q", line)
	}
	c.load = time.Duration(ns)
	return c, nil
}

// stop asks the child to stop Caddy and exit, and kills it if it does not.
func (c *child) stop() error {
	_ = c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		return errors.New("caddy child did not stop in 20s; killed")
	}
}

// rss returns the child's resident memory in bytes.
func (c *child) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0, errors.New("no VmRSS in /proc/<pid>/status")
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb * 1024, nil
}

// adminGet fetches a path of Caddy's admin API (which serves pprof).
func (c *child) adminGet(path string) ([]byte, error) {
	resp, err := http.Get(c.admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("admin %s: %s: %s", path, resp.Status, b)
	}
	return b, err
}

// gc makes the child collect garbage (a heap profile with gc=1 does), so
// that memory figures are not skewed by garbage of earlier phases.
func (c *child) gc() error {
	_, err := c.adminGet("/debug/pprof/heap?gc=1")
	return err
}

// goroutines returns the child's goroutine count and how many of them
// caddymcp started (their "created by" frame is in caddymcp).
func (c *child) goroutines() (total, ours int, err error) {
	b, err := c.adminGet("/debug/pprof/goroutine?debug=2")
	if err != nil {
		return 0, 0, err
	}
	for _, g := range bytes.Split(b, []byte("\n\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(g), []byte("goroutine ")) {
			continue
		}
		total++
		if i := bytes.Index(g, []byte("\ncreated by ")); i >= 0 {
			created := g[i:]
			if j := bytes.IndexByte(created[1:], '\n'); j >= 0 {
				created = created[:j+1]
			}
			if bytes.Contains(created, []byte("caddymcp/caddymcp")) {
				ours++
			}
		}
	}
	return total, ours, nil
}

// reload posts the Caddyfile to the admin API, forcing a reload even though
// it is unchanged, and returns how long the reload took.
func (c *child) reload(caddyfile []byte) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, c.admin+"/load", bytes.NewReader(caddyfile))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("reload: %s: %s", resp.Status, b)
	}
	return d, nil
}

// profile saves a CPU profile of the child over d to path.
func (c *child) profile(path string, d time.Duration) error {
	b, err := c.adminGet(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())))
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
