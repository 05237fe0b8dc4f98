package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Raw requests to the site, for what the SDK client would not send or
// would hide. sendVia is the one place they are made; the helpers that
// fail the test are built on the ones that do not, which run in load
// goroutines too.

// rawInitialize is an MCP initialize request as a client would send it.
const rawInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// mcpAccept is the Accept header of a Streamable HTTP client.
const mcpAccept = "application/json, text/event-stream"

// result is one raw answer.
type result struct {
	status     int
	retryAfter string
	body       string
	err        error
	// resp is the answer, its body read into body and closed.
	resp *http.Response
}

// newPost is a POST of body to url with contentType and headers (name,
// value pairs; an empty value is left out).
func newPost(url, contentType, body string, headers ...string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	return req
}

// initializeRequest is an MCP initialize request to url with the given
// Authorization header value ("" for none).
func initializeRequest(url, authz string) *http.Request {
	return newPost(url, "application/json", rawInitialize, "Accept", mcpAccept, "Authorization", authz)
}

// sendVia makes req with hc and returns the answer, its body read (64 KiB
// at most, so that the connection can be reused) and closed.
func sendVia(hc *http.Client, req *http.Request) result {
	resp, err := hc.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b), resp: resp}
}

// send is sendVia with a new client of e's.
func (e *env) send(req *http.Request) result { return sendVia(e.httpClient(nil), req) }

// gate sends an MCP initialize request to /mcp with a bearer token.
func gate(e *env, token string) result {
	return e.send(initializeRequest(e.site+"/mcp", "Bearer "+token))
}

// gateVia is gate with a client of the caller's, kept across requests.
func gateVia(hc *http.Client, e *env, token string) result {
	return sendVia(hc, initializeRequest(e.site+"/mcp", "Bearer "+token))
}

// rawPost posts body to path with contentType.
func rawPost(e *env, path, contentType, body string) result {
	return e.send(newPost(e.site+path, contentType, body))
}

// mustSend is send that fails t if no answer comes.
func (e *env) mustSend(t *testing.T, req *http.Request) result {
	t.Helper()
	r := e.send(req)
	if r.err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, r.err)
	}
	return r
}

// mcpPost sends an MCP initialize request to path with the given
// Authorization header value ("" for none) and returns the response.
func (e *env) mcpPost(t *testing.T, path, authz string) *http.Response {
	t.Helper()
	return e.mustSend(t, initializeRequest(e.site+path, authz)).resp
}

// postJSON posts a JSON body to path with headers (name, value pairs; an
// empty value is left out) and returns the response, its body read and
// closed.
func (e *env) postJSON(t *testing.T, path, body string, headers ...string) *http.Response {
	t.Helper()
	return e.mustSend(t, newPost(e.site+path, "application/json", body, headers...)).resp
}

// rawRequest sends a request whose target is sent exactly as written.
func (e *env) rawRequest(t *testing.T, method, target, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.site+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = target // the request line carries it verbatim
	for k, v := range header {
		req.Header[k] = v
	}
	r := e.mustSend(t, req)
	return r.resp, r.body
}
