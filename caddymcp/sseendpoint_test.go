package caddymcp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// rewrite runs the rewriter over a stream written in the given chunks, for
// a client path and the path the upstream saw after the site's rewrite.
func rewrite(t *testing.T, clientPath, upstreamPath, contentType string, chunks ...string) string {
	t.Helper()
	out, err := rewriteStream(t, clientPath, upstreamPath, contentType, chunks...)
	if err != nil {
		t.Fatalf("the stream was ended: %v (%q passed)", err, out)
	}
	return out
}

// rewriteStream is rewrite that reports the error of the first Write that
// failed, after which it writes nothing more, as reverse_proxy does.
func rewriteStream(t *testing.T, clientPath, upstreamPath, contentType string, chunks ...string) (string, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, clientPath, nil)
	rec := httptest.NewRecorder()
	rw := newSSEEndpointRewriter(rec, r, zap.NewNop())
	r.URL.Path = upstreamPath // what handle_path does, in place
	rw.Header().Set("Content-Type", contentType)
	rw.WriteHeader(http.StatusOK)
	for _, c := range chunks {
		n, err := rw.Write([]byte(c))
		if err != nil {
			return rec.Body.String(), err
		}
		if n != len(c) {
			t.Fatalf("Write(%q) = %d", c, n)
		}
		rw.Flush()
	}
	return rec.Body.String(), nil
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
			"event: endpoint\ndata: /notes/messages?s=1\n\n"},
		"relative endpoint climbing out": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\ndata: ../../messages?s=1\n\n"},
			"event: endpoint\ndata: /notes/messages?s=1\n\n"},
		"dot segments resolved": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\ndata: /a/../../messages?s=1\n\n"},
			"event: endpoint\ndata: /notes/messages?s=1\n\n"},
		"CR line ends": {"/notes/sse", "/sse", sse,
			[]string{"event: endpoint\rdata: /m?s=1\r\r"},
			"event: endpoint\rdata: /notes/m?s=1\r\r"},
		"no space after the colon": {"/notes/sse", "/sse", sse,
			[]string{"event:endpoint\ndata:/m?s=1\n\n"},
			"event:endpoint\ndata:/notes/m?s=1\n\n"},
		"a message first: not a legacy stream": {"/mcp", "/mcp", sse,
			[]string{"data: {}\n\nevent: endpoint\ndata: //b\n\n"},
			"data: {}\n\nevent: endpoint\ndata: //b\n\n"},
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

// TestSSEEndpointRewriteRefused: an endpoint event that cannot be made a
// clean path on this site, under the prefix the site stripped, ends the
// stream before it reaches the client: the client would send its token
// wherever the event points.
func TestSSEEndpointRewriteRefused(t *testing.T) {
	for name, data := range map[string]string{
		"unparseable":               "http://[::1/messages",
		"bad escape":                "/messages%zz?s=1",
		"network-path reference":    "//evil.example/messages",
		"three slashes":             "///evil.example/messages",
		"four slashes":              "////evil.example/messages",
		"backslash after the slash": `/\evil.example/messages`,
		"two backslashes":           `\\evil.example/messages`,
		"dot segment making //":     "/.//evil.example/messages",
		"doubled slash inside":      "/messages//x",
		"encoded dot segment":       "/%2e%2e/messages",
		"encoded slash":             "/a%2F..%2Fmessages",
		"double encoding":           "/%252e%252e/messages",
		"semicolon":                 "/messages;x=1",
		"control character":         "/mess\tages",
		"another scheme":            "javascript:alert(1)",
		"opaque http":               "http:evil.example",
		"scheme without host":       "http:///messages",
		"several data lines":        "/messages\ndata: /more",
	} {
		t.Run(name, func(t *testing.T) {
			out, err := rewriteStream(t, "/notes/sse", "/sse", "text/event-stream",
				": hi\n\n", "event: endpoint\ndata: "+data+"\n\n", "event: message\ndata: {}\n\n")
			if err == nil {
				t.Fatalf("the stream went on: %q", out)
			}
			if out != ": hi\n\n" {
				t.Errorf("the client got %q, want only what came before the endpoint event", out)
			}
		})
	}
	// Refused under a stream with nothing stripped too, where nothing is
	// prefixed that could hide the doubled slash.
	if out, err := rewriteStream(t, "/legacy/sse", "/legacy/sse", "text/event-stream", "event: endpoint\ndata: ///evil.example/x\n\n"); err == nil {
		t.Errorf("///evil.example/x passed as %q", out)
	}
}

// TestSSEEndpointRewriteBounded: a stream that does not complete its first
// event within the bound is ended, neither held forever nor passed on
// unlooked at (the endpoint event may be what follows).
func TestSSEEndpointRewriteBounded(t *testing.T) {
	long := strings.Repeat("x", maxEndpointPrelude+10)
	out, err := rewriteStream(t, "/notes/sse", "/sse", "text/event-stream", ": "+long, "\n\nevent: endpoint\ndata: /m\n\n")
	if err == nil {
		t.Errorf("a stream over the bound went on (%d bytes out)", len(out))
	}
	// Comments pass as they come, so only the event being looked at is
	// held: the endpoint event after them is rewritten.
	comments := strings.Repeat(": ping\n\n", maxEndpointPrelude/4)
	if got := rewrite(t, "/notes/sse", "/sse", "text/event-stream", comments, "event: endpoint\ndata: /m\n\n"); got != comments+"event: endpoint\ndata: /notes/m\n\n" {
		t.Errorf("after %d bytes of comments the endpoint event reached the client as %q", len(comments), got[len(comments):])
	}
}

func TestMayBeLegacySSE(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/sse", nil)
	r.Header.Set("Accept", "text/event-stream")
	if !mayBeLegacySSE(r) {
		t.Error("a GET for an event stream")
	}
	r.Header.Del("Accept")
	if !mayBeLegacySSE(r) {
		t.Error("a GET that does not say it accepts an event stream may get one")
	}
	r.Header.Set("Mcp-Session-Id", "abc")
	if mayBeLegacySSE(r) {
		t.Error("a Streamable HTTP GET stream")
	}
	if mayBeLegacySSE(httptest.NewRequest(http.MethodPost, "/sse", nil)) {
		t.Error("a POST")
	}
}
