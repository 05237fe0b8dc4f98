package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Upstream MCP servers for the reverse_proxy tests, built with the official
// Go SDK, each wrapped in a recorder that keeps every HTTP request it
// received.

// proxyWait bounds every wait in these tests; nothing asserts a duration.
const proxyWait = 15 * time.Second

// seenRequest is one HTTP request an upstream received.
type seenRequest struct {
	Method string
	Path   string
	Query  string
	Header http.Header

	// ended is closed when the upstream's handler returned.
	ended chan struct{}
	// cancelled, read after ended, reports whether the request's context
	// was done when the handler returned: the client went away (net/http
	// cancels a finished request's context only after its handler
	// returns).
	cancelled bool

	rec   *recorder
	first []byte // the first bytes of the response body, under rec.mu
}

// firstBytes returns what the upstream wrote first in its response.
func (s *seenRequest) firstBytes() []byte {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return append([]byte(nil), s.first...)
}

// recorder keeps every request an upstream received.
type recorder struct {
	mu   sync.Mutex
	reqs []*seenRequest
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr := &seenRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(),
			ended: make(chan struct{}), rec: rec}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, sr)
		rec.mu.Unlock()
		defer close(sr.ended)
		h.ServeHTTP(&teeWriter{ResponseWriter: w, sr: sr}, r)
		sr.cancelled = r.Context().Err() != nil
	})
}

// all returns the requests received so far.
func (rec *recorder) all() []*seenRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]*seenRequest(nil), rec.reqs...)
}

// count returns how many requests were received so far.
func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// waitFor waits for a request that satisfies match and returns it.
func (rec *recorder) waitFor(t *testing.T, what string, match func(*seenRequest) bool) *seenRequest {
	t.Helper()
	for deadline := time.Now().Add(proxyWait); ; time.Sleep(10 * time.Millisecond) {
		for _, r := range rec.all() {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upstream never received %s", what)
			return nil
		}
	}
}

// teeWriter keeps the first bytes of a response and stays flushable, so
// the SDK's streaming works as without it.
type teeWriter struct {
	http.ResponseWriter
	sr *seenRequest
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.sr.rec.mu.Lock()
	if n := 4096 - len(w.sr.first); n > 0 {
		w.sr.first = append(w.sr.first, p[:min(n, len(p))]...)
	}
	w.sr.rec.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func (w *teeWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveUpstream starts h on 127.0.0.1 and returns its host:port. The server is
// closed when the test ends, after Caddy (which holds its streams open)
// has stopped.
func serveUpstream(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

// streamUpstream is a stateful Streamable HTTP MCP server with sessions
// and an event store for Last-Event-ID resumption.
type streamUpstream struct {
	*recorder
	addr string
	// acks receives the messages of logging notifications the test's
	// client saw, so the notify tool can wait for its own notification to
	// arrive at the client before it answers.
	acks chan string
}

type notifyArgs struct {
	// Message is sent as a notifications/message (logging) notification.
	Message string `json:"message"`
	// Standalone sends it detached from the tool call, so it travels on
	// the session's standalone GET stream; otherwise it goes on the SSE
	// response of the POST that called the tool.
	Standalone bool `json:"standalone,omitempty"`
	// Await holds the tool's answer until the client has seen the
	// notification, which proves it was streamed, not buffered until the
	// response ended.
	Await bool `json:"await,omitempty"`
}

type notifyResult struct {
	Acknowledged bool `json:"acknowledged"`
}

func startStreamUpstream(t *testing.T) *streamUpstream {
	u := &streamUpstream{recorder: &recorder{}, acks: make(chan string, 64)}
	server := mcp.NewServer(&mcp.Implementation{Name: "stateful-upstream", Version: "1"}, nil)
	addWhoami(server)
	mcp.AddTool(server, &mcp.Tool{Name: "notify", Description: "sends a server-initiated logging notification"},
		func(ctx context.Context, req *mcp.CallToolRequest, in notifyArgs) (*mcp.CallToolResult, notifyResult, error) {
			nctx := ctx
			if in.Standalone {
				// A context without the request's id: the SDK routes the
				// notification to the standalone stream.
				var cancel context.CancelFunc
				nctx, cancel = context.WithTimeout(context.Background(), proxyWait)
				defer cancel()
			}
			if err := req.Session.Log(nctx, &mcp.LoggingMessageParams{Level: "info", Logger: "upstream", Data: in.Message}); err != nil {
				return nil, notifyResult{}, fmt.Errorf("sending the notification: %w", err)
			}
			if !in.Await {
				return nil, notifyResult{}, nil
			}
			timeout := time.After(proxyWait)
			for {
				select {
				case m := <-u.acks:
					if m == in.Message {
						return nil, notifyResult{Acknowledged: true}, nil
					}
				case <-timeout:
					return nil, notifyResult{}, errors.New("the client never saw the notification")
				case <-ctx.Done():
					return nil, notifyResult{}, ctx.Err()
				}
			}
		})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	u.addr = serveUpstream(t, u.wrap(handler))
	return u
}

// ack tells a waiting notify tool that the client saw message.
func (u *streamUpstream) ack(message string) {
	select {
	case u.acks <- message:
	default:
	}
}

// sseUpstream is a legacy HTTP+SSE MCP server.
type sseUpstream struct {
	*recorder
	addr string
}

// startSSEUpstream serves the SDK's SSE handler at ssePath; its whoami
// tool answers with name, so a test knows which server it reached.
func startSSEUpstream(t *testing.T, name, ssePath string) *sseUpstream {
	u := &sseUpstream{recorder: &recorder{}}
	server := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "names this server"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "server " + name}}}, nil, nil
		})
	mux := http.NewServeMux()
	mux.Handle(ssePath, mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return server }, nil))
	u.addr = serveUpstream(t, u.wrap(mux))
	return u
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name, id, data string
}

// readEvents parses server-sent events from body in the background until
// it ends. Comments and events without data are not delivered.
func readEvents(body io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if data != nil {
					ev.data = strings.Join(data, "\n")
					ch <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, ":"):
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "event":
					ev.name = value
				case "id":
					ev.id = value
				case "data":
					data = append(data, value)
				}
			}
		}
	}()
	return ch
}

// nextEvent returns the next event of a stream, failing the test if none
// comes within the bound.
func nextEvent(t *testing.T, events <-chan sseEvent, what string) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatalf("the stream ended before %s", what)
		}
		return ev
	case <-time.After(proxyWait):
		t.Fatalf("no %s arrived within %s", what, proxyWait)
	}
	return sseEvent{}
}

// nextMessage skips to the next "message" event (the default event type).
func nextMessage(t *testing.T, events <-chan sseEvent, what string) sseEvent {
	t.Helper()
	for {
		ev := nextEvent(t, events, what)
		if ev.name == "" || ev.name == "message" {
			return ev
		}
	}
}
