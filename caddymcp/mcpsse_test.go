package caddymcp

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSSEMessageAtAnotherInstance: a message for a legacy SSE stream that
// reaches an instance other than the one holding the stream is answered
// at once, 421 with a JSON-RPC error that says so; the stream's own
// instance serves it, and unknown or foreign sessions stay "not found".
func TestSSEMessageAtAnotherInstance(t *testing.T) {
	p := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.backends[0].URL+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	endpoint := ""
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			endpoint = data
			break
		}
	}
	if !strings.HasPrefix(endpoint, "/sse?sessionid=AAAAAAAA.") {
		t.Fatalf("endpoint %q, want /sse?sessionid= with instance A's tag", endpoint)
	}

	post := func(backend int, endpoint, user string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.backends[backend].URL+endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":"m-1","method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Test-User", user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	status, body := post(1, endpoint, "4242")
	var answer struct {
		JSONRPC string `json:"jsonrpc"`
		ID      string `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if status != http.StatusMisdirectedRequest || json.Unmarshal([]byte(body), &answer) != nil || answer.JSONRPC != "2.0" || answer.ID != "m-1" ||
		!strings.Contains(answer.Error.Message, "held by another instance") || !strings.Contains(answer.Error.Message, "sticky sessions") {
		t.Errorf("a message at the other instance: %d %s, want 421 with a JSON-RPC error saying the stream is elsewhere", status, body)
	}
	if status, body := post(0, endpoint, "4242"); status != http.StatusAccepted {
		t.Errorf("a message at the stream's instance: %d %s, want 202", status, body)
	}
	if status, _ := post(0, endpoint, "4243"); status != http.StatusNotFound {
		t.Errorf("bob's message for alice's stream: %d, want 404", status)
	}
	if status, _ := post(0, "/sse?sessionid=AAAAAAAA.NOSUCHSTREAM", "4242"); status != http.StatusNotFound {
		t.Errorf("a message for an ended stream of this instance: %d, want 404", status)
	}
	if status, _ := post(0, "/sse?sessionid=nosuchstream", "4242"); status != http.StatusNotFound {
		t.Errorf("a message for a session ID of no instance: %d, want 404", status)
	}
}
