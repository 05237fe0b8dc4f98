package main

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestSoakShort runs the soak phase for a few seconds: every kind of
// legitimate traffic and both floods must have happened, the floods'
// counts must add up, and every grant must be accounted for (run fails
// if the store does not hold exactly the grants issued and not revoked;
// the report says so too).
func TestSoakShort(t *testing.T) {
	var out bytes.Buffer
	err := run(config{phases: "soak", soakDuration: 8 * time.Second, soakStreams: 20, soakFlood: 100, dir: t.TempDir()}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	report := out.String()
	num := func(pattern string) []int {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("the report lacks %q", pattern)
		}
		var v []int
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			v = append(v, n)
		}
		return v
	}
	for _, kind := range []string{`sign-ins \(`, `MCP sessions on mcp_server`, `tools/call in them`, `SSE streams opened`, `revocations \(`, `refreshes `} {
		if v := num(kind + `.*?\s(\d+)\s+(\d+)\n`); v[0] == 0 {
			t.Errorf("no %s succeeded", kind)
		}
	}
	for _, flood := range []string{`registrations never granted`, `unfinished sign-ins`} {
		v := num(flood + `.*?: (\d+) sent, (\d+) accepted .*?, (\d+) refused \(429\), (\d+) other`)
		if v[0] == 0 || v[1]+v[2]+v[3] != v[0] {
			t.Errorf("flood %s: %d sent, %d accepted, %d refused, %d other", flood, v[0], v[1], v[2], v[3])
		}
	}
	g := num(`grants: (\d+) issued - (\d+) revoked - (\d+) lost = (\d+) live \((\d+) of unknown fate\); the admin API lists (\d+), the file holds (\d+): every grant accounted for`)
	if g[0]-g[1]-g[2] != g[3] || g[5] != g[6] || g[5] > g[3] || g[5] < g[3]-g[4] {
		t.Errorf("grant accounting does not add up: %v", g)
	}
	if g[0] == 0 || g[1] == 0 {
		t.Errorf("%d grants issued, %d revoked: the soak did too little to check", g[0], g[1])
	}
	num(`heap in use \(MiB\)\s+second-half mean [\d.]+ vs [\d.]+ after warm-up`)
	num(`open files\s+second-half mean (\d+)`)
}

// TestGrantAccounting: the check refuses any store that does not hold
// exactly the grants issued less those revoked and lost.
func TestGrantAccounting(t *testing.T) {
	for _, c := range []struct {
		issued, revoked, lost, unknown, listed, stored int
		ok                                             bool
	}{
		{10, 3, 2, 0, 5, 5, true},
		{10, 3, 2, 0, 6, 6, false}, // one grant too many: a revocation did not take
		{10, 3, 2, 0, 4, 4, false}, // one grant missing
		{10, 3, 2, 0, 5, 4, false}, // the admin API and the file disagree
		{10, 3, 2, 1, 4, 4, true},  // one of unknown fate, gone
		{10, 3, 2, 1, 5, 5, true},  // one of unknown fate, alive
		{10, 3, 2, 1, 3, 3, false},
	} {
		err := grantAccounting(c.issued, c.revoked, c.lost, c.unknown, c.listed, c.stored)
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestRetryAfterSummary(t *testing.T) {
	for want, counts := range map[string]map[string]int{
		"60s x5":                  {"60": 5},
		"60s x5, 599s x2":         {"60": 5, "599": 2},
		"598s x9, 60s to 600s x4": {"60": 1, "598": 9, "599": 2, "600": 1},
		"3600s x7, 60s x3":        {"60": 3, "3600": 7},
	} {
		if got := retryAfterSummary(counts); got != want {
			t.Errorf("%v: %q, want %q", counts, got, want)
		}
	}
}
