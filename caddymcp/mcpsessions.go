package caddymcp

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Streamable HTTP sessions that any instance serves.
//
// The built-in tools keep nothing between requests: each call acts for the
// user of the token it came with. So the SDK's stateless handler serves
// every Streamable HTTP request, at every revision, on whichever instance
// the load balancer picks; there is no session to find. Sessions remain
// for the revisions that have them (up to 2025-11-25), as labels: the
// initialize response carries an Mcp-Session-Id, and every later request
// presenting one must be the same user's.
//
// Why not the SDK's sessions, or a session record in the shared store:
// the SDK (v1.8.0) keeps a stateful handler's sessions in a map inside
// the process, with no hook to look a session up elsewhere or to restore
// one ("support session retention" is an open TODO), so a session opened
// at instance A is "session not found" (404) at instance B, and the SDK
// client gives up. A record in the store could only say that a session
// exists, which a session ID bound to its user says without a database
// write at every initialize and a read at every request; the SDK would
// still have to serve the request statelessly. Its stateless mode, in
// turn, neither hands out nor checks Mcp-Session-Id any more (the old
// behaviour hides behind MCPGODEBUG=allowsessionsinstateless=1, process
// wide, and goes away in 1.9.0), so the label and its check are done
// here, before the request reaches the SDK.
//
// What a session no longer holds, because the server keeps nothing: the
// client's initialize parameters (the SDK takes the revision from the
// MCP-Protocol-Version header; the tools use no client capability), a
// standalone GET stream (answered 405, which the transport allows: the
// tools never send anything unprompted), termination (DELETE is answered
// 405, "the server does not allow clients to terminate sessions"), and an
// idle timeout. Clients tested: the official Go SDK client and mcp-remote
// (the TypeScript SDK), both of which take 405 on GET and DELETE as the
// transport specifies.
//
// A session ID is 16 random bytes followed by 16 bytes of SHA-256 over a
// label, the user's key and those random bytes, in base64url: the user
// who opened the session is recomputed, not looked up, at every instance.
// Another user's token presenting it is refused with 403, as the SDK
// refuses a session user mismatch, and anything not of that shape with
// 404, "session not found", on which clients start a new session (as one
// holding an ID of an earlier release will). The binding needs no secret:
// a session ID authorizes nothing (every request needs its own token, for
// the same user), so one forged for a user is of no use without that
// user's token, which serves anyway.

// sessionIDHeader is the Streamable HTTP session header.
const sessionIDHeader = "Mcp-Session-Id"

const (
	sessionNonceLen = 16
	sessionTagLen   = 16
)

// newSessionID returns a session ID bound to userKey.
func newSessionID(userKey string) string {
	var b [sessionNonceLen + sessionTagLen]byte
	rand.Read(b[:sessionNonceLen])
	tag := sessionTag(userKey, b[:sessionNonceLen])
	copy(b[sessionNonceLen:], tag[:sessionTagLen])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sessionTag(userKey string, nonce []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte("caddymcp mcp_server session\x00"))
	h.Write([]byte(userKey))
	h.Write([]byte{0})
	h.Write(nonce)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// errSessionNotFound and errSessionOfAnother are what checkSessionID
// finds wrong with a session ID.
var (
	errSessionNotFound  = errors.New("session not found")
	errSessionOfAnother = errors.New("session user mismatch")
)

// checkSessionID reports whether id is a session ID opened by userKey:
// nil, errSessionOfAnother for one of the right shape opened by someone
// else, errSessionNotFound for anything else.
func checkSessionID(id, userKey string) error {
	if base64.RawURLEncoding.DecodedLen(len(id)) != sessionNonceLen+sessionTagLen {
		return errSessionNotFound
	}
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(b) != sessionNonceLen+sessionTagLen {
		return errSessionNotFound
	}
	tag := sessionTag(userKey, b[:sessionNonceLen])
	if subtle.ConstantTimeCompare(tag[:sessionTagLen], b[sessionNonceLen:]) != 1 {
		return errSessionOfAnother
	}
	return nil
}

// sessionFor applies the session rules to a Streamable HTTP request of a
// revision with sessions, before the stateless SDK handler serves it: a
// presented session ID must be the user's, and the response to an
// initialize request outside a session carries a new one. It reports
// whether the request goes on; if not, it has answered.
func (s *MCPServer) sessionFor(w http.ResponseWriter, r *http.Request, userKey string) bool {
	if id := r.Header.Get(sessionIDHeader); id != "" {
		switch err := checkSessionID(id, userKey); {
		case errors.Is(err, errSessionOfAnother):
			http.Error(w, err.Error(), http.StatusForbidden)
			return false
		case err != nil:
			http.Error(w, err.Error(), http.StatusNotFound)
			return false
		}
		return true
	}
	if r.Method != http.MethodPost || r.Body == nil {
		return true
	}
	// Peek at the body as the SDK does (it reads it whole too), bounded
	// as the SDK bounds it.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.MaxRequestBody))
	r.Body.Close()
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("request body exceeds %d bytes", mbe.Limit), http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "failed to read body", http.StatusBadRequest)
		}
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if isInitialize(body) {
		w.Header().Set(sessionIDHeader, newSessionID(userKey))
	}
	return true
}

// isInitialize reports whether body is an initialize request (which the
// transport never sends in a batch).
func isInitialize(body []byte) bool {
	var msg struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
	}
	return json.Unmarshal(body, &msg) == nil && msg.Method == "initialize" && len(msg.ID) > 0
}
