package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
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
