// Package caddymcp is a Caddy plugin that puts an OAuth 2.1 authorization server,
// with GitHub as the identity provider, in front of MCP servers.
package caddymcp
