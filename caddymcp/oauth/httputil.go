package oauth

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxBodyBytes bounds every request body the authorization server reads.
// The largest legitimate one is a registration with many redirect URIs.
const maxBodyBytes = 64 << 10

// maxParamLen bounds any single request parameter we keep or echo.
const maxParamLen = 2048

// writeJSON writes v as the response. Every response of the authorization
// server is uncacheable: they carry secrets or per-request decisions.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// retryAfter503 tells a client when to try again after a 503 (the store
// did not answer: a database restart, a failover), unless the handler
// already said.
func retryAfter503(w http.ResponseWriter, status int) {
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "5")
	}
}

// allowMethods answers 405 unless r uses one of the methods, and answers
// CORS preflight requests. The endpoints it guards use no cookies, so any
// origin may call them: browser-based clients such as the MCP Inspector
// discover, register and redeem codes from their own origin.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", strings.Join(methods, ", "))
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	h.Set("Allow", strings.Join(methods, ", "))
	newError(ErrInvalidRequest, "method "+r.Method+" is not allowed here").withStatus(http.StatusMethodNotAllowed).Write(w)
	return false
}

// parseForm reads an application/x-www-form-urlencoded POST body, bounded,
// and returns its parameters (never the query string's: OAuth credentials
// belong in the body).
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, string) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return nil, "the body must be application/x-www-form-urlencoded"
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		if _, ok := err.(*http.MaxBytesError); ok {
			return nil, "the request body is too large"
		}
		return nil, "the request body is not a valid form"
	}
	return r.PostForm, ""
}

// single returns the one value of a parameter. RFC 6749 section 3.1: a
// parameter sent more than once is an invalid request, so dup is true then.
func single(v url.Values, name string) (val string, dup bool) {
	vs := v[name]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], false
	}
	return "", true
}
