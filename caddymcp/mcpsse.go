package caddymcp

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/caddymcp/caddymcp/tools"
)

// The legacy HTTP+SSE transport (MCP 2024-11-05) necessarily lives on one
// instance: the client's GET holds the stream that carries every answer,
// and its POSTs hand messages to that stream. Behind a load balancer the
// POSTs must go where the GET went (sticky sessions). A POST that reaches
// another instance cannot be served there, and must not look like a
// session that ended: each stream's session ID names the process that
// holds it, so another instance answers at once 421 Misdirected Request
// with a JSON-RPC error saying where the stream is and what to configure.

// instanceTag names this process in the session IDs of its SSE streams.
// It is random, so a restarted process does not claim its predecessor's
// streams (which ended with it).
var instanceTag = rand.Text()[:8]

// sseStreams holds the legacy SSE streams open at this process, by
// session ID, each bound to the user who opened it, so that a message for
// a session is only ever delivered to its own user's stream. It holds
// only streams that are open.
type sseStreams struct {
	maxBody int64
	tag     string // instanceTag, but for tests
	mu      sync.Mutex
	streams map[string]*sseStream
}

// sseStream is one open stream.
type sseStream struct {
	userKey   string
	transport *mcp.SSEServerTransport
}

// serve opens a stream (GET) or posts a message to one of the user's
// streams, for the authenticated caller a.
func (p *sseStreams) serve(a *authenticated, w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		p.open(a, w, r)
	case http.MethodPost:
		p.post(a.userKey(), w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

// open serves a stream until the client or the server ends it, as the
// SDK's SSEHandler does, with a session ID of this instance.
func (p *sseStreams) open(a *authenticated, w http.ResponseWriter, r *http.Request) {
	id := p.tag + "." + rand.Text()
	endpoint, err := r.URL.Parse("?sessionid=" + id)
	if err != nil {
		http.Error(w, "internal error: failed to create endpoint", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	t := &mcp.SSEServerTransport{Endpoint: endpoint.RequestURI(), Response: w, MaxRequestBodyBytes: p.maxBody}

	p.mu.Lock()
	if p.streams == nil {
		p.streams = map[string]*sseStream{}
	}
	p.streams[id] = &sseStream{userKey: a.userKey(), transport: t}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.streams, id)
		p.mu.Unlock()
	}()

	// The session's tools act for the caller who opened it.
	ss, err := newToolServer(tools.Fixed(a.caller())).Connect(r.Context(), t, nil)
	if err != nil {
		http.Error(w, "connection failed", http.StatusInternalServerError)
		return
	}
	ended := make(chan struct{})
	go func() {
		ss.Wait()
		close(ended)
	}()
	select {
	case <-r.Context().Done():
	case <-ended:
	}
	ss.Close()
}

// post hands a message to the user's stream it names.
func (p *sseStreams) post(userKey string, w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "Content-Type must be 'application/json'", http.StatusUnsupportedMediaType)
		return
	}
	id := r.URL.Query().Get("sessionid")
	p.mu.Lock()
	s := p.streams[id]
	p.mu.Unlock()
	switch {
	case s != nil && s.userKey == userKey:
		s.transport.ServeHTTP(w, r)
	case s == nil && p.elsewhere(id):
		p.misdirected(w, r, id)
	default:
		// Unknown here, ended, or another user's: what the SDK answers
		// for a session it does not know.
		http.Error(w, "session not found", http.StatusNotFound)
	}
}

// elsewhere reports whether an SSE session ID names another instance.
func (p *sseStreams) elsewhere(id string) bool {
	tag, rest, ok := strings.Cut(id, ".")
	return ok && rest != "" && len(tag) == len(p.tag) && tag != p.tag
}

// misdirected answers a message for a stream held by another instance:
// 421 Misdirected Request, with a JSON-RPC error for the message's ID.
func (p *sseStreams) misdirected(w http.ResponseWriter, r *http.Request, id string) {
	var msg struct {
		ID json.RawMessage `json:"id"`
	}
	body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, p.maxBody))
	if json.Unmarshal(body, &msg) != nil || len(msg.ID) == 0 {
		msg.ID = json.RawMessage("null")
	}
	tag, _, _ := strings.Cut(id, ".")
	out, _ := json.Marshal(jsonrpcError{JSONRPC: "2.0", ID: msg.ID, Error: jsonrpc.Error{
		Code: jsonrpc.CodeInvalidRequest,
		Message: fmt.Sprintf("this SSE session's stream is held by another instance of this server (%s; this is %s): "+
			"the legacy HTTP+SSE transport needs every request of a client to reach the instance holding its stream, "+
			"so configure the load balancer for sticky sessions, or connect with Streamable HTTP, which every instance serves", tag, p.tag),
	}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusMisdirectedRequest)
	w.Write(out)
}

// jsonrpcError is a JSON-RPC error response.
type jsonrpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   jsonrpc.Error   `json:"error"`
}

// size is how many streams are open.
func (p *sseStreams) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.streams)
}
