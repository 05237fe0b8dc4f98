// Command caddymcp-demo runs caddymcp on this machine with no GitHub OAuth
// app: Caddy with mcp_auth and the built-in MCP tools on
// https://localhost:8443 (Caddy's local CA), and a local stand-in for
// GitHub on a loopback port, which is NOT GitHub. It prints the MCP URL and
// how to connect the MCP Inspector; Ctrl+C stops it and removes its state.
//
//	go run ./cmd/caddymcp-demo [-listen localhost:8443] [-admin 127.0.0.1:2019] [-v]
//
// It is a command of its own, not a subcommand of cmd/caddy, so that Caddy
// built with the plugin (go build ./cmd/caddy, or xcaddy --with the plugin)
// contains no stand-in.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/caddymcp/caddymcp/caddymcp/demo"
)

func main() {
	opt := demo.Options{Out: os.Stdout}
	flag.StringVar(&opt.Listen, "listen", "localhost:8443", "loopback `host:port` of the demo site")
	flag.StringVar(&opt.Admin, "admin", "", "loopback `host:port` of Caddy's admin endpoint (default a free port)")
	flag.BoolVar(&opt.Verbose, "v", false, "log at INFO, as JSON (default: warnings and errors only)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: caddymcp-demo [flags]\n\n"+
			"Runs mcp_auth and mcp_server locally against a stand-in for GitHub (NOT GitHub).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, opt); err != nil {
		fmt.Fprintln(os.Stderr, "caddymcp-demo:", err)
		os.Exit(1)
	}
}
