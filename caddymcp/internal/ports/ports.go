// Package ports hands tests and the load driver loopback ports for
// servers that must bind them themselves (Caddy, PostgreSQL).
//
// Asking the kernel for a free port (listening on :0) and closing it
// leaves a window in which any other process binding :0 may be given the
// same port: with `go test ./...` running packages in parallel, a test's
// Caddy then found its port taken by another package's plain HTTP server.
// Ports here come from below the kernel's ephemeral range (32768 and up on
// Linux), which :0 binds and outgoing connections never use, so only
// another caller of this package could collide, and within a process it
// never hands a port out twice.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
)

// The range ports are drawn from: registered ports that loopback test
// servers do not use, below Linux's default ephemeral range.
const (
	low  = 20000
	high = 32000
)

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Free returns a port that was free on 127.0.0.1 just now and that this
// process has not handed out before.
func Free() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		p := low + rand.IntN(high-low)
		if issued[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		issued[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("ports: no free port between %d and %d after 200 tries", low, high)
}
