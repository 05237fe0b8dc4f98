package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The driver re-executes its own binary as the Caddy child; under
	// go test that binary is this test.
	runChildIfAsked()
	os.Exit(m.Run())
}

// TestDriverSmoke runs every phase of the load driver with tiny numbers, so
// that the driver cannot rot: real Caddy in a child process, real TLS, the
// whole OAuth flow, both routes, held streams, the exact store count, and
// startup with a seeded store. It measures nothing.
func TestDriverSmoke(t *testing.T) {
	var out bytes.Buffer
	err := run(config{conns: 2, rounds: 1, duration: 300 * time.Millisecond, streams: 3, codes: 4, grants: 50,
		phases: "proxy,streams,tokens,startup", dir: t.TempDir()}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ratio gated/plain\s+\d+\.\d+`,
		`3 idle SSE streams via plain reverse_proxy`,
		`3 idle SSE streams via mcp_auth \+ proxy .*goroutines started by caddymcp: \+0\n`,
		`authorization_code\s+\d+ grants/s`,
		`store: 5 grants for 5 logins, .*none lost or duplicated`,
		`startup: provisioning .* with 50 grants`,
	} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

// TestDriverHeapProfiles: with -cpuprofile, the streams phase saves a
// heap profile of Caddy per route while the streams are held.
func TestDriverHeapProfiles(t *testing.T) {
	profiles := t.TempDir()
	var out bytes.Buffer
	if err := run(config{conns: 2, streams: 3, phases: "streams", dir: t.TempDir(), profile: profiles}, &out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"caddy-streams-0.heap.pprof", "caddy-streams-1.heap.pprof"} {
		b, err := os.ReadFile(filepath.Join(profiles, name))
		if err != nil {
			t.Fatal(err)
		}
		// A pprof profile is gzipped protobuf.
		if len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s is not a profile (%d bytes)", name, len(b))
		}
	}
}

// TestDriverSmokePostgres runs the proxy and token phases with the state
// in a throwaway PostgreSQL server, and refuses the startup phase, which
// seeds a bbolt file.
func TestDriverSmokePostgres(t *testing.T) {
	var out bytes.Buffer
	err := run(config{conns: 2, rounds: 1, duration: 300 * time.Millisecond, codes: 4, phases: "proxy,tokens", dir: t.TempDir(), postgres: true}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`state: PostgreSQL on 127\.0\.0\.1:\d+`,
		`ratio gated/plain\s+\d+\.\d+`,
		`store: 5 grants for 5 logins, .*none lost or duplicated`,
	} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if err := run(config{phases: "startup", dir: t.TempDir(), postgres: true}, &out); err == nil {
		t.Errorf("-postgres with the startup phase was accepted")
	}
}

// TestDriverRevocation runs the revocation phase with 10 revocations (two
// Caddy children on one throwaway PostgreSQL database) and checks that its
// report adds up: every revocation timed, of both kinds, the figures in
// order, none only refused by the cache TTL (the push reached B each
// time), the count over the target in line with the maximum. Without
// -postgres the phase is refused.
func TestDriverRevocation(t *testing.T) {
	var out bytes.Buffer
	err := run(config{phases: "revocation", revocations: 10, dir: t.TempDir(), postgres: true}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	report := out.String()
	num := func(re string) []float64 {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("the report lacks %q", re)
		}
		var v []float64
		for _, s := range m[1:] {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			v = append(v, f)
		}
		return v
	}
	kinds := num(`revocation: (\d+) revocations at instance A \((\d+) by refresh token, (\d+) by access token\)`)
	if kinds[0] != 10 || kinds[1]+kinds[2] != kinds[0] || kinds[1] == 0 || kinds[2] == 0 {
		t.Errorf("revocations: %v, want 10 of both kinds", kinds)
	}
	d := num(`first 401 at B: min ([\d.]+) ms  p50 ([\d.]+) ms  p90 ([\d.]+) ms  p99 ([\d.]+) ms  max ([\d.]+) ms`)
	if !slices.IsSorted(d) || d[0] <= 0 || d[4] >= float64(revocationGiveUp/time.Millisecond) {
		t.Errorf("delays min, p50, p90, p99, max = %v ms: not in order, or outside (0, %v)", d, revocationGiveUp)
	}
	c := num(`over the 100ms target: (\d+); .*TTL fallback\): (\d+); refused at B's first request after the revocation: (\d+) \((\d+) requests to B in all\)`)
	over, fallback, first, polls := c[0], c[1], c[2], c[3]
	if (over > 0) != (d[4] > 100) || over > kinds[0] {
		t.Errorf("%v over the target with a maximum of %v ms", over, d[4])
	}
	if fallback != 0 {
		t.Errorf("%v of the revocations were refused at B only when its cached copy may have expired: not pushed", fallback)
	}
	if first > kinds[0] || polls < kinds[0] || polls-first < 2*(kinds[0]-first) {
		t.Errorf("%v refused at the first request, %v requests for %v revocations: inconsistent", first, polls, kinds[0])
	}
	if err := run(config{phases: "revocation", revocations: 10, dir: t.TempDir()}, &out); err == nil {
		t.Errorf("the revocation phase without -postgres was accepted")
	}
}
