package caddymcp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// rewrite runs the rewriter over a stream written in the given chunks, for
// a client path and the path the upstream saw after the site's rewrite.
func rewrite(t *testing.T, clientPath, upstreamPath, contentType string, chunks ...string) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, clientPath, nil)
	rec := httptest.NewRecorder()
	rw := newSSEEndpointRewriter(rec, r)
	r.URL.Path = upstreamPath // what handle_path does, in place
	rw.Header().Set("Content-Type", contentType)
	rw.WriteHeader(http.StatusOK)
	for _, c := range chunks {
		if n, err := rw.Write([]byte(c)); err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v", c, n, err)
		}
		rw.Flush()
	}
	return rec.Body.String()
}

func TestSSEEndpointRewrite(t *testing.T) {
	const sse = "text/event-stream"
	for name, tc := range map[string]struct {
		clientPath, upstreamPath, contentType string
		chunks                                []string
		want                                  string
	}{
		"stripped prefix restored": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\ndata: /messages?sessionId=1\n\n", "event: message\ndata: {\"id\":1}\n\n"},
			"event: endpoint\ndata: /notes/messages?sessionId=1\n\nevent: message\ndata: {\"id\":1}\n\n"},
		"split across writes": {"/notes/sse", "/sse", sse,
			[]string{"eve", "nt: endpoint\nda", "ta: /messages?s=1", "\n", "\n", ": keepalive\n\n"},
			"event: endpoint\ndata: /notes/messages?s=1\n\n: keepalive\n\n"},
		"CRLF": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\r\ndata: /messages?s=1\r\n\r\n"},
			"event: endpoint\r\ndata: /notes/messages?s=1\r\n\r\n"},
		"comment first": {"/notes/sse", "/sse", sse,
			[]string{": hello\n\nevent: endpoint\ndata: /m?s=1\n\n"},
			": hello\n\nevent: endpoint\ndata: /notes/m?s=1\n\n"},
		"upstream's own address dropped": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\ndata: http://127.0.0.1:4000/messages?s=1\n\n"},
			"event: endpoint\ndata: /notes/messages?s=1\n\n"},
		"own address, nothing stripped": {"/legacy/sse", "/legacy/sse", sse,
			[]string{"event: endpoint\ndata: http://127.0.0.1:4000/legacy/messages?s=1\n\n"},
			"event: endpoint\ndata: /legacy/messages?s=1\n\n"},
		"nothing stripped": {"/legacy/sse", "/legacy/sse", sse,
			[]string{"event: endpoint\ndata: /legacy/sse?sessionid=1\n\n"},
			"event: endpoint\ndata: /legacy/sse?sessionid=1\n\n"},
		"already under the prefix": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\ndata: /notes/messages?s=1\n\n"},
			"event: endpoint\ndata: /notes/messages?s=1\n\n"},
		"relative endpoint": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\ndata: messages?s=1\n\n"},
			"event: endpoint\ndata: messages?s=1\n\n"},
		"only the first endpoint event": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\ndata: /a\n\nevent: endpoint\ndata: /b\n\n"},
			"event: endpoint\ndata: /notes/a\n\nevent: endpoint\ndata: /b\n\n"},
		"not an event stream": {"/notes/sse", "/sse", "application/json",
			[]string{"event: endpoint\ndata: /messages\n\n"},
			"event: endpoint\ndata: /messages\n\n"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := rewrite(t, tc.clientPath, tc.upstreamPath, tc.contentType, tc.chunks...); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestSSEEndpointRewriteBounded: a stream that never ends its first event
// is passed on once the bound is reached, not held forever.
func TestSSEEndpointRewriteBounded(t *testing.T) {
	long := strings.Repeat("x", maxEndpointPrelude+10)
	if got := rewrite(t, "/notes/sse", "/sse", "text/event-stream", "data: "+long, "\n\nevent: endpoint\ndata: /m\n\n"); got != "data: "+long+"\n\nevent: endpoint\ndata: /m\n\n" {
		t.Errorf("a stream over the bound was altered or held (%d bytes out)", len(got))
	}
}

func TestMayBeLegacySSE(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/sse", nil)
	r.Header.Set("Accept", "text/event-stream")
	if !mayBeLegacySSE(r) {
		t.Error("a GET for an event stream")
	}
	r.Header.Set("Mcp-Session-Id", "abc")
	if mayBeLegacySSE(r) {
		t.Error("a Streamable HTTP GET stream")
	}
	if mayBeLegacySSE(httptest.NewRequest(http.MethodPost, "/sse", nil)) {
		t.Error("a POST")
	}
}
