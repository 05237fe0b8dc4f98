package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// toolCall is the MCP request both routes carry: a tools/call of the
// upstream's add tool (the stateless upstream needs no initialize).
const toolCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}`

// loadResult is one measured round of requests on one route.
type loadResult struct {
	requests int
	elapsed  time.Duration
	lat      []time.Duration // sorted
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// pct returns the p-th percentile (0..100) of the sorted latencies.
func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	i := int(float64(len(lat)-1) * p / 100)
	return lat[i]
}

// load POSTs tools/call to path on conns keep-alive connections for d and
// records every request's latency. Every answer must be a 200 with the
// tool's result, or the round fails: a fast error is not a fast request.
func (e *env) load(path, token string, conns int, d time.Duration) (loadResult, error) {
	client := e.client(conns)
	defer client.CloseIdleConnections()
	do := func() error { return e.callTool(client, path, token) }
	// Open and warm every connection before the clock starts.
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range conns {
		wg.Go(func() {
			if err := do(); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return loadResult{}, err
	}

	lats := make([][]time.Duration, conns)
	var stop atomic.Bool
	start := time.Now()
	for i := range conns {
		lats[i] = make([]time.Duration, 0, 4096)
		wg.Go(func() {
			for !stop.Load() {
				t0 := time.Now()
				if err := do(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					stop.Store(true)
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return loadResult{}, err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) == 0 {
		return loadResult{}, errors.New("no request completed")
	}
	return loadResult{requests: len(all), elapsed: elapsed, lat: all}, nil
}

// callTool POSTs tools/call to path with token and checks the answer is
// the tool's result.
func (e *env) callTool(client *http.Client, path, token string) error {
	req, _ := http.NewRequest(http.MethodPost, e.site+path, bytes.NewReader([]byte(toolCall)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"sum":5`)) {
		return fmt.Errorf("POST %s: %s: %.200s", path, resp.Status, body)
	}
	return nil
}

// proxyFigures are the medians over rounds of the two routes.
type proxyFigures struct {
	conns                  int
	plainRPS, gatedRPS     float64
	ratio                  float64 // median of the per-round gated/plain ratios
	plainP50, gatedP50     time.Duration
	plainP99, gatedP99     time.Duration
	serialPlainP50         time.Duration // one connection, no queueing
	serialGatedP50         time.Duration
	serialPlainP99         time.Duration
	serialGatedP99         time.Duration
	rounds                 int
	ratios                 []float64
	plainRounds, gatedRnds []float64
}

// proxyBench alternates the plain and the gated route, rounds times each,
// at conns connections, then measures both once more on one connection,
// request by request in turns, where the latency the gate adds is not
// hidden in queueing.
func (e *env) proxyBench(token string, conns, rounds int, d time.Duration) (proxyFigures, error) {
	f := proxyFigures{conns: conns, rounds: rounds}
	var p50p, p50g, p99p, p99g []time.Duration
	for r := range rounds {
		// Alternate which route goes first, so that neither always
		// runs on a machine warmed (or disturbed) by the other.
		order := []string{"/plain/mcp", "/mcp"}
		if r%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		res := map[string]loadResult{}
		for _, path := range order {
			lr, err := e.load(path, token, conns, d)
			if err != nil {
				return f, err
			}
			res[path] = lr
		}
		plain, gated := res["/plain/mcp"], res["/mcp"]
		f.plainRounds = append(f.plainRounds, plain.rps())
		f.gatedRnds = append(f.gatedRnds, gated.rps())
		f.ratios = append(f.ratios, gated.rps()/plain.rps())
		p50p, p50g = append(p50p, pct(plain.lat, 50)), append(p50g, pct(gated.lat, 50))
		p99p, p99g = append(p99p, pct(plain.lat, 99)), append(p99g, pct(gated.lat, 99))
	}
	f.plainRPS, f.gatedRPS, f.ratio = median(f.plainRounds), median(f.gatedRnds), median(f.ratios)
	f.plainP50, f.gatedP50, f.plainP99, f.gatedP99 = medianD(p50p), medianD(p50g), medianD(p99p), medianD(p99g)

	plain, gated, err := e.interleaved(token, 2*d)
	if err != nil {
		return f, err
	}
	f.serialPlainP50, f.serialGatedP50 = pct(plain, 50), pct(gated, 50)
	f.serialPlainP99, f.serialGatedP99 = pct(plain, 99), pct(gated, 99)
	return f, nil
}

// interleaved sends requests on one keep-alive connection for d, to the
// plain and the gated route by turns, and returns the sorted latencies of
// each. Taking turns request by request puts both routes under the same
// moments of the machine (a collection, a neighbour's burst), which
// measuring one route and then the other does not.
func (e *env) interleaved(token string, d time.Duration) (plain, gated []time.Duration, err error) {
	client := e.client(1)
	defer client.CloseIdleConnections()
	if err := e.callTool(client, "/plain/mcp", token); err != nil {
		return nil, nil, err
	}
	routes := []struct {
		path string
		lat  *[]time.Duration
	}{{"/plain/mcp", &plain}, {"/mcp", &gated}}
	for start := time.Now(); time.Since(start) < d; {
		// Which goes first changes every time, so that neither route
		// always follows the other.
		routes[0], routes[1] = routes[1], routes[0]
		for _, route := range routes {
			t0 := time.Now()
			if err := e.callTool(client, route.path, token); err != nil {
				return nil, nil, err
			}
			*route.lat = append(*route.lat, time.Since(t0))
		}
	}
	slices.Sort(plain)
	slices.Sort(gated)
	return plain, gated, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func medianD(v []time.Duration) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
