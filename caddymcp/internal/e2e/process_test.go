package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// goBuild builds the Go package pkg into the file out, failing t if the
// build fails.
func goBuild(t *testing.T, pkg, out string) {
	t.Helper()
	if err := goBuildErr(pkg, out); err != nil {
		t.Fatal(err)
	}
}

func goBuildErr(pkg, out string) error {
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// processEnv is the environment of a child process whose home, data and
// config directories are under dir, so that it touches nothing of this
// machine's user; extra is added.
func processEnv(dir string, extra ...string) []string {
	return append(append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config")), extra...)
}

// process is a built binary running as a child of the test, its standard
// output and error collected in out.
type process struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's answer, once done is closed
}

// startProcess starts cmd with its output collected, failing t if it
// cannot.
func startProcess(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p
}

// interrupt stops the process as Ctrl+C does and returns how it exited;
// if it has not exited within wait it is killed and interrupt fails t.
func (p *process) interrupt(t *testing.T, wait time.Duration) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		return p.err
	case <-time.After(wait):
		p.kill()
		t.Errorf("%s did not stop on SIGINT within %v:\n%s", filepath.Base(p.cmd.Path), wait, p.out.String())
		return nil
	}
}

// kill ends the process at once, as a crash would (if it still runs),
// and waits for it.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// lockedBuffer collects a process's output, which os/exec copies in from
// another goroutine while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
