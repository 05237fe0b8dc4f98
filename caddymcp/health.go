package caddymcp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// healthTimeout bounds the store check of a health request, so a stuck
// store makes the check fail rather than hang the load balancer.
const healthTimeout = 2 * time.Second

// serveHealth answers a load balancer: 200 while the state store answers
// a read, 503 otherwise. It says nothing else about the server.
func (m *MCPAuth) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	status, body := http.StatusOK, map[string]string{"status": "ok", "storage": "ok"}
	if _, err := m.storage.Store().ListClients(ctx, "", 1); err != nil {
		m.logger.Warn("health check: the state store does not answer", zap.Error(err))
		status, body = http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "storage": "unavailable"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		_ = json.NewEncoder(w).Encode(body)
	}
}

// checkHealthPath accepts an empty path (off) or a clean absolute path that
// is not one of the authorization server's endpoints.
func checkHealthPath(p string) error {
	if p == "" {
		return nil
	}
	if !strings.HasPrefix(p, "/") || p == "/" || strings.ContainsAny(p, "?#*%\\ \t\r\n") || strings.Contains(p, "//") ||
		strings.Contains(p, "/.") {
		return fmt.Errorf("health_path %q must be a clean path such as /healthz", p)
	}
	if oauth.ReservedPath(p) {
		return fmt.Errorf("health_path %q is an endpoint of the authorization server", p)
	}
	return nil
}
