package caddymcp

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
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
// it passes: it sends the client back through the site, under the prefix
// the site stripped before the upstream saw the request. The client sends
// its token wherever the event points, so the rewrite fails closed: an
// endpoint that does not become a clean path on this site under that
// prefix, or a stream that does not get to its first event within
// maxEndpointPrelude, ends the stream (and is logged), never reaching the
// client as the upstream wrote it.

// maxEndpointPrelude bounds how much of a stream is held while looking for
// the endpoint event, which the transport sends first.
const maxEndpointPrelude = 16 << 10

// errEndpointRefused ends a stream whose endpoint event cannot be made
// safe. Returned from Write, it makes reverse_proxy abort the response.
var errEndpointRefused = errors.New("the upstream's SSE endpoint event does not name a path on this site; stream ended")

type sseEndpointRewriter struct {
	http.ResponseWriter
	req      *http.Request // shares its URL with the request handed on
	origPath string        // the path as the client sent it
	logger   *zap.Logger
	buf      []byte // held bytes of the event being looked at
	decided  bool   // whether this response is an SSE stream was decided
	done     bool   // the endpoint event passed (or never will): pass through
	failed   bool   // the stream was ended
}

// mayBeLegacySSE reports whether r could open a legacy SSE stream: a GET
// outside a Streamable HTTP session. Whatever the client accepts: an
// upstream may answer any GET with an event stream, and its endpoint
// event must not reach the client unrewritten.
func mayBeLegacySSE(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Mcp-Session-Id") == ""
}

func newSSEEndpointRewriter(w http.ResponseWriter, r *http.Request, logger *zap.Logger) *sseEndpointRewriter {
	return &sseEndpointRewriter{ResponseWriter: w, req: r, origPath: r.URL.Path, logger: logger}
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
	if s.failed {
		return 0, errEndpointRefused
	}
	if s.done {
		return s.ResponseWriter.Write(p)
	}
	s.buf = append(s.buf, p...)
	if err := s.scan(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// scan passes on complete events from the held bytes until the first
// event a client dispatches (one with data) has passed, rewritten if it
// is the endpoint event.
func (s *sseEndpointRewriter) scan() error {
	for !s.done {
		n := eventLen(s.buf)
		if n < 0 {
			if len(s.buf) > maxEndpointPrelude {
				return s.fail(fmt.Errorf("no complete first event within %d bytes", maxEndpointPrelude), "")
			}
			return nil
		}
		event := s.buf[:n]
		f := parseEvent(event)
		switch {
		case f.dataLines == 0:
			// Comments, retry and id lines: clients dispatch nothing,
			// so the endpoint event may still come.
		case f.name != "endpoint":
			// Not a legacy stream (whose first event is the endpoint):
			// nothing to rewrite.
			s.done = true
		case f.dataLines > 1:
			return s.fail(errors.New("an endpoint event with several data lines"), "")
		default:
			endpoint, err := s.rewriteEndpoint(string(event[f.data[0]:f.data[1]]))
			if err != nil {
				return s.fail(err, string(event[f.data[0]:f.data[1]]))
			}
			event = append(append(append([]byte(nil), event[:f.data[0]]...), endpoint...), event[f.data[1]:]...)
			s.done = true
		}
		if _, err := s.ResponseWriter.Write(event); err != nil {
			return err
		}
		s.buf = s.buf[n:]
	}
	if len(s.buf) > 0 {
		_, err := s.ResponseWriter.Write(s.buf)
		s.buf = nil
		return err
	}
	return nil
}

// fail ends the stream: nothing more reaches the client.
func (s *sseEndpointRewriter) fail(reason error, endpoint string) error {
	s.failed, s.done, s.buf = true, true, nil
	// The query is left out: a legacy session ID is all it takes to
	// post into that session.
	endpoint, _, _ = strings.Cut(endpoint, "?")
	if len(endpoint) > 256 {
		endpoint = endpoint[:256]
	}
	s.logger.Error("ending an SSE stream: its endpoint event cannot be rewritten to a path on this site",
		zap.String("path", s.origPath), zap.String("endpoint_path", endpoint), zap.Error(reason))
	return errEndpointRefused
}

// eventLen returns the length of the first event in b, up to and
// including the blank line that ends it, or -1 if b holds no complete
// event. Lines end in CRLF, LF or CR (the SSE grammar).
func eventLen(b []byte) int {
	lineStart := 0
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' && b[i] != '\r' {
			continue
		}
		blank := i == lineStart
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		if blank {
			return i + 1
		}
		lineStart = i + 1
	}
	return -1
}

// sseFields is what a client reads from one event.
type sseFields struct {
	name      string // the last event field
	dataLines int
	data      [2]int // where the value of the first data line lies
}

// parseEvent reads the fields of one complete event, as an EventSource
// does: "field: value" lines (one space after the colon dropped), comment
// lines beginning with a colon, each line ended by CRLF, LF or CR.
func parseEvent(event []byte) sseFields {
	var f sseFields
	for start := 0; start < len(event); {
		end := bytes.IndexAny(event[start:], "\r\n")
		if end < 0 {
			end = len(event)
		} else {
			end += start
		}
		line := event[start:end]
		field, value, hasColon := bytes.Cut(line, []byte(":"))
		valueStart := start + len(field) + 1
		if hasColon && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
			valueStart++
		}
		switch {
		case len(line) == 0 || len(field) == 0 && hasColon: // blank or comment
		case string(field) == "event":
			f.name = string(value)
		case string(field) == "data":
			if f.dataLines == 0 {
				if !hasColon {
					valueStart = end
				}
				f.data = [2]int{valueStart, end}
			}
			f.dataLines++
		}
		start = end + 1
		if end < len(event) && event[end] == '\r' && end+1 < len(event) && event[end+1] == '\n' {
			start++
		}
	}
	return f
}

// rewriteEndpoint maps the upstream's endpoint to one the client reaches
// through this site: a path (never the upstream's own address, nor any
// other host), under the prefix the site stripped, if any, that the gate
// reads as the client will. Anything else is an error.
func (s *sseEndpointRewriter) rewriteEndpoint(endpoint string) (string, error) {
	endpoint = strings.Trim(endpoint, " ")
	// A browser's URL parser reads "//host", "///host" and "/\host" as
	// another host; Go's reads some of them as paths.
	if e := strings.ReplaceAll(endpoint, `\`, "/"); strings.HasPrefix(e, "//") {
		return "", errors.New("a network-path reference, which names another host")
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	ref := &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
	if u.Scheme != "" {
		// The upstream's own address: the client must come back here.
		if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Host == "" {
			return "", fmt.Errorf("an endpoint with the scheme %q", u.Scheme)
		}
		if ref.Path == "" {
			ref.Path = "/"
		}
	}
	// Relative references resolve against the URL the upstream saw, as
	// the upstream meant them; dot segments are resolved here too.
	seen := s.req.URL
	resolved := (&url.URL{Path: seen.Path, RawPath: seen.RawPath}).ResolveReference(ref)
	// The rewritten request path is what the upstream saw; the part of
	// the client's path before it is what the site stripped.
	prefix := ""
	if seen.Path != s.origPath && strings.HasSuffix(s.origPath, seen.Path) {
		prefix = strings.TrimSuffix(s.origPath, seen.Path)
	}
	path := resolved.EscapedPath()
	if prefix != "" && path != prefix && !strings.HasPrefix(path, prefix+"/") {
		path = prefix + path
	}
	decoded, err := url.PathUnescape(path)
	if err != nil {
		return "", err
	}
	switch {
	case !strings.HasPrefix(path, "/") || strings.Contains(path, "//"):
		return "", errors.New("not a clean path on this site")
	case ambiguousEscapedPath(path, decoded):
		// The gate refuses such paths; a browser may also read an
		// encoded dot segment as one.
		return "", errors.New("a path with encoded slashes, dots, backslashes or percent signs, semicolons or dot segments")
	}
	if resolved.RawQuery != "" {
		return path + "?" + resolved.RawQuery, nil
	}
	return path, nil
}

// Flush sends what may be sent: held bytes stay held until their event
// is complete.
func (s *sseEndpointRewriter) Flush() {
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *sseEndpointRewriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
