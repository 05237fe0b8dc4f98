package caddymcp

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
)

// The legacy HTTP+SSE transport (MCP 2024-11-05) opens with an `endpoint`
// event that tells the client where to POST its messages. An upstream names
// that endpoint in terms of the path it saw. Mounted with
// `handle_path /notes/*`, it saw /sse rather than /notes/sse and announces
// /messages?sessionId=..., which the client would resolve outside /notes:
// to no upstream at all, and outside the protected resource its token is
// bound to. Upstreams that announce an absolute URL name their own address,
// which the client cannot (and must not) reach directly.
//
// sseEndpointRewriter fixes the first `endpoint` event of such a stream as
// it passes, and nothing else: it sends the client back through the site,
// under the prefix the site stripped before the upstream saw the request.

// maxEndpointPrelude bounds how much of a stream is held while looking for
// the endpoint event, which the transport sends first.
const maxEndpointPrelude = 16 << 10

type sseEndpointRewriter struct {
	http.ResponseWriter
	req      *http.Request // shares its URL with the request handed on
	origPath string        // the path as the client sent it
	buf      []byte        // held bytes, before the endpoint event passed
	decided  bool          // whether this response is an SSE stream was decided
	done     bool          // the endpoint event passed (or never will): pass through
}

// mayBeLegacySSE reports whether r could open a legacy SSE stream: a GET
// for an event stream outside a Streamable HTTP session.
func mayBeLegacySSE(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Mcp-Session-Id") == "" &&
		strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

func newSSEEndpointRewriter(w http.ResponseWriter, r *http.Request) *sseEndpointRewriter {
	return &sseEndpointRewriter{ResponseWriter: w, req: r, origPath: r.URL.Path}
}

func (s *sseEndpointRewriter) decide() {
	if !s.decided {
		s.decided = true
		ct := s.Header().Get("Content-Type")
		s.done = !strings.HasPrefix(strings.ToLower(ct), "text/event-stream")
	}
}

func (s *sseEndpointRewriter) WriteHeader(code int) {
	s.decide()
	s.ResponseWriter.WriteHeader(code)
}

func (s *sseEndpointRewriter) Write(p []byte) (int, error) {
	s.decide()
	if s.done {
		return s.ResponseWriter.Write(p)
	}
	s.buf = append(s.buf, p...)
	if err := s.scan(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// scan passes on complete events from the held bytes, rewriting the
// endpoint event, until it has passed.
func (s *sseEndpointRewriter) scan() error {
	for !s.done {
		end, sepLen := eventEnd(s.buf)
		if end < 0 {
			if len(s.buf) > maxEndpointPrelude {
				return s.passThrough()
			}
			return nil
		}
		event := s.buf[:end+sepLen]
		rewritten, isEndpoint := s.rewriteEvent(event)
		if _, err := s.ResponseWriter.Write(rewritten); err != nil {
			return err
		}
		s.buf = s.buf[end+sepLen:]
		if isEndpoint {
			return s.passThrough()
		}
	}
	return nil
}

// passThrough sends what is held and stops looking.
func (s *sseEndpointRewriter) passThrough() error {
	s.done = true
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.ResponseWriter.Write(s.buf)
	s.buf = nil
	return err
}

// eventEnd finds the blank line that ends the first event: its index and
// length, or -1.
func eventEnd(b []byte) (end, sepLen int) {
	end = -1
	for _, sep := range []string{"\n\n", "\r\n\r\n", "\r\r"} {
		if i := bytes.Index(b, []byte(sep)); i >= 0 && (end < 0 || i < end) {
			end, sepLen = i, len(sep)
		}
	}
	return end, sepLen
}

// rewriteEvent rewrites the data of an `endpoint` event.
func (s *sseEndpointRewriter) rewriteEvent(event []byte) ([]byte, bool) {
	lines := strings.Split(string(event), "\n")
	isEndpoint := false
	for _, l := range lines {
		if name, ok := strings.CutPrefix(strings.TrimRight(l, "\r"), "event:"); ok && strings.TrimSpace(name) == "endpoint" {
			isEndpoint = true
		}
	}
	if !isEndpoint {
		return event, false
	}
	for i, l := range lines {
		trimmed := strings.TrimRight(l, "\r")
		if data, ok := strings.CutPrefix(trimmed, "data:"); ok {
			cr := l[len(trimmed):]
			lines[i] = "data: " + s.rewriteEndpoint(strings.TrimSpace(data)) + cr
		}
	}
	return []byte(strings.Join(lines, "\n")), true
}

// rewriteEndpoint maps the upstream's endpoint to one the client reaches
// through this site: a path (never the upstream's own address), under the
// prefix the site stripped, if any.
func (s *sseEndpointRewriter) rewriteEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	if !u.IsAbs() && !strings.HasPrefix(u.Path, "/") {
		return endpoint // relative to the stream's URL, which the client knows
	}
	// The rewritten request path is what the upstream saw; the part of
	// the client's path before it is what the site stripped.
	prefix := ""
	if seen := s.req.URL.Path; seen != s.origPath && strings.HasSuffix(s.origPath, seen) {
		prefix = strings.TrimSuffix(s.origPath, seen)
	}
	path := u.EscapedPath()
	if prefix != "" && path != prefix && !strings.HasPrefix(path, prefix+"/") {
		path = prefix + path
	}
	out := url.URL{Path: path, RawPath: path, RawQuery: u.RawQuery}
	if unescaped, err := url.PathUnescape(path); err == nil {
		out.Path = unescaped
	}
	return out.String()
}

// Flush sends what may be sent: held bytes stay held until their event
// is complete.
func (s *sseEndpointRewriter) Flush() {
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *sseEndpointRewriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
