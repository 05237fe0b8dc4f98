package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// streamFigures are what n idle SSE streams cost the Caddy process.
type streamFigures struct {
	n int
	// rssPerStream is the growth of Caddy's resident memory divided by n.
	rssPerStream float64
	// goroutinesPerStream is the growth of Caddy's goroutine count
	// divided by n.
	goroutinesPerStream float64
	// ours is the growth of the number of goroutines caddymcp started.
	ours int
}

// heldStreams opens n legacy SSE streams on path (each on its own
// connection, as n separate clients would), waits until each has its
// endpoint event, measures Caddy (saving its heap profile to heapPath,
// unless that is empty), and closes them.
func (e *env) heldStreams(path, token string, n int, heapPath string) (streamFigures, error) {
	f := streamFigures{n: n}
	if err := e.caddy.gc(); err != nil {
		return f, err
	}
	time.Sleep(200 * time.Millisecond)
	rss0, err := e.caddy.rss()
	if err != nil {
		return f, err
	}
	g0, ours0, err := e.caddy.goroutines()
	if err != nil {
		return f, err
	}

	client := e.client(n)
	client.Timeout = 0 // the streams stay open
	defer client.CloseIdleConnections()
	bodies := make([]io.ReadCloser, n)
	defer func() {
		for _, b := range bodies {
			if b != nil {
				b.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32) // connect 32 at a time
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req, _ := http.NewRequest(http.MethodGet, e.site+path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			bodies[i] = resp.Body
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("GET %s: %s", path, resp.Status)
				return
			}
			// The stream is established once the endpoint event
			// arrived; after it, the stream is idle.
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "event: endpoint") {
				errs <- fmt.Errorf("GET %s: first line %q: %v", path, line, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return f, err
	}
	if err := e.caddy.gc(); err != nil {
		return f, err
	}
	time.Sleep(200 * time.Millisecond)
	rss1, err := e.caddy.rss()
	if err != nil {
		return f, err
	}
	g1, ours1, err := e.caddy.goroutines()
	if err != nil {
		return f, err
	}
	if heapPath != "" {
		b, err := e.caddy.adminGet("/debug/pprof/heap")
		if err != nil {
			return f, err
		}
		if err := os.WriteFile(heapPath, b, 0o644); err != nil {
			return f, err
		}
	}
	f.rssPerStream = float64(rss1-rss0) / float64(n)
	f.goroutinesPerStream = float64(g1-g0) / float64(n)
	f.ours = ours1 - ours0
	return f, nil
}
