// Command mcp-auth-bench is the load driver of caddymcp's performance
// figures. It runs a real Caddy (in a child process, from a Caddyfile, with
// `tls internal`) whose one site has the same upstream MCP server (built
// with the official Go SDK) behind two routes: gated by mcp_auth and
// plain reverse_proxy. It then measures, and prints:
//
//   - proxy: tools/call POSTs per second on each route at -conns keep-alive
//     HTTPS connections, rounds alternating, and the ratio gated/plain;
//     latencies at that load and on one connection;
//   - streams: resident memory and goroutines per idle SSE stream held
//     through each route;
//   - tokens: authorization_code and refresh_token grants per second at
//     -conns concurrent clients, with codes obtained beforehand through the
//     whole flow (authorize, consent, GitHub stand-in, callback), every
//     token checked distinct and the store's grant count checked exact;
//   - startup: provisioning with -grants grants in the store, and a reload;
//   - revocation (with -postgres, not among the default phases): a second
//     Caddy on the same database, and the delay from a revocation's answer
//     at one instance to the first refusal of the token at the other,
//     which had it in memory, over -revocations revocations.
//
// Access tokens are obtained through the real OAuth flow; only the startup
// store is seeded through the store's API. GitHub is the in-repository
// stand-in (caddymcp/internal/fakegithub). Everything listens on loopback.
//
// Run from the repository root:
//
//	go run ./caddymcp/internal/bench
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
)

// config is what one run measures.
type config struct {
	conns    int           // concurrent connections or clients
	rounds   int           // proxy rounds per route
	duration time.Duration // per proxy round and for refresh chains
	streams  int           // idle SSE streams held per route
	codes    int           // authorization_code grants
	grants   int           // grants in the startup store
	profile  string        // directory for CPU profiles of Caddy, or ""
	phases   string        // comma-separated subset of proxy,streams,tokens,startup,soak,revocation
	dir      string        // working directory, or "" for a temporary one
	postgres bool          // state in a throwaway PostgreSQL server instead of bbolt
	// soakDuration is the length of the soak phase, soakStreams the SSE
	// streams it holds at once.
	soakDuration time.Duration
	soakStreams  int
	soakFlood    int // requests a second of each of the soak's floods
	// revocations is how many tokens the revocation phase revokes.
	revocations int
}

func main() {
	runChildIfAsked()
	var c config
	flag.IntVar(&c.conns, "conns", 32, "concurrent keep-alive connections (proxy) and clients (tokens)")
	flag.IntVar(&c.rounds, "rounds", 3, "proxy rounds per route; medians are reported")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "length of each proxy round and of the refresh phase")
	flag.IntVar(&c.streams, "streams", 2000, "idle SSE streams held per route")
	flag.IntVar(&c.codes, "codes", 8000, "authorization codes to obtain and exchange")
	flag.IntVar(&c.grants, "grants", 100000, "grants in the store for the startup measurement")
	flag.StringVar(&c.profile, "cpuprofile", "", "directory to write profiles of Caddy into (CPU: gated proxy, token phases; heap: each route's held streams)")
	flag.StringVar(&c.phases, "phases", "proxy,streams,tokens,startup", "phases to run (soak and revocation, not among the default, too)")
	flag.StringVar(&c.dir, "dir", "", "working directory (default: a temporary one, removed afterwards)")
	flag.DurationVar(&c.soakDuration, "soak-duration", 3*time.Minute, "length of the soak phase (-phases soak): mixed legitimate and abusive traffic at once")
	flag.IntVar(&c.soakStreams, "soak-streams", 300, "SSE streams the soak phase holds at once")
	flag.IntVar(&c.soakFlood, "soak-flood", 300, "requests a second of each of the soak phase's two floods")
	flag.IntVar(&c.revocations, "revocations", 200, "revocations the revocation phase (-phases revocation, with -postgres) times")
	flag.BoolVar(&c.postgres, "postgres", false, "keep state in a throwaway PostgreSQL server (its binaries must be installed) instead of bbolt; not with the startup phase")
	flag.Parse()
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mcp-auth-bench:", err)
		os.Exit(1)
	}
}

// run measures what c asks for and writes the report to w.
func run(c config, w io.Writer) error {
	dir := c.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "mcp-auth-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if c.profile != "" {
		if err := os.MkdirAll(c.profile, 0o755); err != nil {
			return err
		}
	}
	has := func(p string) bool { return strings.Contains(","+c.phases+",", ","+p+",") }
	if c.postgres && has("startup") {
		return fmt.Errorf("-postgres does not measure the startup phase (it seeds a bbolt file): add -phases proxy,streams,tokens")
	}
	if c.postgres && has("soak") {
		return fmt.Errorf("-postgres does not run the soak phase (it watches the bbolt file)")
	}
	if has("revocation") && !c.postgres {
		return fmt.Errorf("the revocation phase needs -postgres: its two instances share a PostgreSQL database")
	}
	fmt.Fprintf(w, "machine: %d CPUs (nproc), %s, %s %s/%s\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)

	if has("proxy") || has("streams") || has("tokens") {
		if err := runMain(c, dir, has, w); err != nil {
			return err
		}
	}
	if has("revocation") {
		if err := revocationPhase(dir, c.revocations, w); err != nil {
			return fmt.Errorf("revocation: %w", err)
		}
	}
	if has("startup") {
		f, err := startupBench(dir, c.grants)
		if err != nil {
			return fmt.Errorf("startup: %w", err)
		}
		fmt.Fprintf(w, "startup: provisioning (caddy.Load in a new process) with %d grants %s (empty store %s); reload %s; seeding took %s\n",
			f.grants, ms(f.load), ms(f.empty), ms(f.reload), f.seed.Round(time.Millisecond))
	}
	if has("soak") {
		f, err := soakRun(c, dir, w)
		if err != nil {
			return fmt.Errorf("soak: %w", err)
		}
		if f.accounting != nil {
			return fmt.Errorf("soak: %w", f.accounting)
		}
	}
	return nil
}

// runMain runs the phases that share one Caddy and one state file.
func runMain(c config, dir string, has func(string) bool, w io.Writer) error {
	state := filepath.Join(dir, "state.db")
	dsn := ""
	if c.postgres {
		pg, err := pgtest.StartServer()
		if err != nil {
			return fmt.Errorf("starting PostgreSQL: %w", err)
		}
		defer pg.Close()
		dsn = pg.DSN()
		fmt.Fprintf(w, "state: %s\n", pg)
	}
	e, err := newEnv(dir, state, dsn)
	if err != nil {
		return err
	}
	defer e.close()
	if err := e.startCaddy("caddy"); err != nil {
		return err
	}
	fmt.Fprintf(w, "caddy: provisioned in %s; log in %s\n", ms(e.caddy.load), filepath.Join(dir, "caddy.log"))

	// One user's login through the whole flow; its access token serves
	// the proxy and stream phases (any number of connections may share
	// one token).
	_, tok, err := e.login()
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	logins := 1

	if has("proxy") {
		stopProfile := e.profileDuring(c, "proxy", c.duration*time.Duration(2*c.rounds+2))
		f, err := e.proxyBench(tok.Access, c.conns, c.rounds, c.duration)
		stopProfile()
		if err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		fmt.Fprintf(w, "proxy: tools/call at %d keep-alive HTTPS connections, %d rounds of %s per route (median):\n", f.conns, f.rounds, c.duration)
		fmt.Fprintf(w, "  plain reverse_proxy  %8.0f req/s  p50 %s  p99 %s\n", f.plainRPS, us(f.plainP50), us(f.plainP99))
		fmt.Fprintf(w, "  mcp_auth + proxy     %8.0f req/s  p50 %s  p99 %s\n", f.gatedRPS, us(f.gatedP50), us(f.gatedP99))
		fmt.Fprintf(w, "  ratio gated/plain    %8.3f        (rounds: %s)\n", f.ratio, floats(f.ratios))
		fmt.Fprintf(w, "  p99 added at %d conns %s; on 1 connection, routes in turns: p50 %s -> %s, p99 %s -> %s (added p99 %s)\n", f.conns,
			us(f.gatedP99-f.plainP99), us(f.serialPlainP50), us(f.serialGatedP50), us(f.serialPlainP99), us(f.serialGatedP99),
			us(f.serialGatedP99-f.serialPlainP99))
	}

	if has("streams") {
		for i, route := range []struct{ name, path string }{{"plain reverse_proxy", "/plain/sse"}, {"mcp_auth + proxy", "/sse"}} {
			// Each route in a fresh Caddy: a Go process keeps the
			// memory it grew for one route's streams and would lend
			// it to the next.
			if err := e.stopCaddy(); err != nil {
				return err
			}
			if err := e.startCaddy(fmt.Sprintf("caddy-streams-%d", i)); err != nil {
				return err
			}
			if _, err := e.heldStreams(route.path, tok.Access, 1, ""); err != nil {
				return fmt.Errorf("streams (%s): %w", route.name, err)
			}
			heap := ""
			if c.profile != "" {
				heap = filepath.Join(c.profile, fmt.Sprintf("caddy-streams-%d.heap.pprof", i))
			}
			f, err := e.heldStreams(route.path, tok.Access, c.streams, heap)
			if err != nil {
				return fmt.Errorf("streams (%s): %w", route.name, err)
			}
			fmt.Fprintf(w, "streams: %d idle SSE streams via %-19s %6.1f KiB RSS and %.2f goroutines per stream in Caddy; goroutines started by caddymcp: %+d\n",
				f.n, route.name, f.rssPerStream/1024, f.goroutinesPerStream, f.ours)
		}
	}

	if has("tokens") {
		e.profile = func(name string, d time.Duration) func() { return e.profileDuring(c, name, d) }
		_, f, err := e.tokenBench(c.conns, c.codes, c.duration)
		if err != nil {
			return fmt.Errorf("tokens: %w", err)
		}
		logins += c.codes
		fmt.Fprintf(w, "tokens: %d concurrent clients (codes obtained through the full flow beforehand at %.0f/s):\n", f.clients, f.codesPerSec)
		fmt.Fprintf(w, "  authorization_code  %8.0f grants/s  p99 %s  (%d codes)\n", f.exchangePerSec, us(f.exchangeP99), f.codes)
		fmt.Fprintf(w, "  refresh_token       %8.0f grants/s  p99 %s  (%d refreshes in %s, each re-checking the user with GitHub)\n",
			f.refreshPerSec, us(f.refreshP99), f.refreshes, c.duration)
		if err := e.stopCaddy(); err != nil {
			return err
		}
		// Exact counts: one grant per login, one token pair per grant
		// issued (the last refresh of each chain included); none lost,
		// none duplicated.
		n, err := e.storeCounts()
		if err != nil {
			return err
		}
		pairs := 1 + f.issued/2
		if n.grants != logins || n.access != pairs || n.refresh != pairs {
			return fmt.Errorf("store holds %d grants, %d access and %d refresh tokens; %d logins issued %d token pairs",
				n.grants, n.access, n.refresh, logins, pairs)
		}
		fmt.Fprintf(w, "  store: %d grants for %d logins, %d access and %d refresh tokens for %d issued pairs: none lost or duplicated\n",
			n.grants, logins, n.access, n.refresh, pairs)
	}
	return nil
}

// profileDuring captures a CPU profile of Caddy for d in the background,
// if asked to; the returned function waits for it.
func (e *env) profileDuring(c config, name string, d time.Duration) func() {
	if c.profile == "" {
		return func() {}
	}
	if d < time.Second {
		d = time.Second
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := filepath.Join(c.profile, "caddy-"+name+".pprof")
		if err := e.caddy.profile(path, d); err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
		}
	}()
	return func() { <-done }
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func floats(v []float64) string {
	var s []string
	for _, f := range v {
		s = append(s, fmt.Sprintf("%.3f", f))
	}
	return strings.Join(s, " ")
}
