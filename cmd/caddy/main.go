// Command caddy is Caddy with the standard modules and the caddymcp plugin.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddymcp/caddymcp/caddymcp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
