package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// The stories of real traffic: hosted clients registering for all their
// users from one egress address, floods from one address while others are
// served, clients retrying a refresh whose answer was lost, and two
// processes refreshing one token at once. Linux routes the whole of
// 127.0.0.0/8 to loopback, so each address here is another client.

// from is a view of e whose HTTP clients connect from the loopback
// address ip.
func (e *env) from(ip string) *env {
	v := *e
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	v.dial = d.DialContext
	return &v
}

// TestHostedClientsFromOneAddress: a hosted client (Claude.ai, ChatGPT)
// registers a confidential client for each of its users from its one
// egress address; with the default configuration 120 of them within a
// minute, each followed by a user signing in, are all served.
func TestHostedClientsFromOneAddress(t *testing.T) {
	e := start(t, options{})
	egress := e.from("127.0.0.2")
	for i := range 120 {
		c := egress.register(t, true)
		tok := c.login(t, e.browser("alice"), e.site+"/mcp")
		if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
			t.Fatalf("client %d: its token at /mcp: %s", i, resp.Status)
		}
	}
}

// TestFloodsLeaveOtherAddressesServed: one address floods registrations
// that never obtain a grant, another floods consent approvals that never
// come back from GitHub; each is refused past its bound with 429 and
// Retry-After, and meanwhile a third address registers and signs in.
func TestFloodsLeaveOtherAddressesServed(t *testing.T) {
	e := start(t, options{authExtra: `registration open {
			per_address 40
		}
		pending_sign_ins {
			per_address 15
		}`})
	var wg sync.WaitGroup
	var regAccepted, pendAccepted int
	var regRefusal, pendRefusal *http.Response
	wg.Add(2)
	go func() { // registrations that never obtain a grant
		defer wg.Done()
		client := e.from("127.0.0.5").httpClient(nil)
		for i := range 200 {
			body := fmt.Sprintf(`{"client_name":"flood %d","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`, i)
			resp, err := client.Post(e.site+"/register", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				regRefusal = resp
				return
			}
			regAccepted++
		}
	}()
	go func() { // consent approvals that never reach the callback
		defer wg.Done()
		flooder := e.from("127.0.0.6")
		c := flooder.register(t, true)
		b := flooder.browser("bob")
		for range 200 {
			status, _, body := b.step(t, http.MethodGet, c.authURL(e.site+"/mcp"), nil)
			form, ok := fakegithub.ConsentForm(body)
			if status != http.StatusOK || !ok {
				t.Errorf("authorize: %d, no consent page", status)
				return
			}
			form.Set("action", "approve")
			resp, err := b.Client.PostForm(e.site+"/consent", form)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				pendRefusal = resp
				return
			}
			pendAccepted++
		}
	}()
	// Meanwhile another address registers and signs in, again and again.
	other := e.from("127.0.0.7")
	for range 10 {
		c := other.register(t, true)
		tok := c.login(t, other.browser("alice"), e.site+"/mcp")
		if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
			t.Fatalf("a newcomer's token at /mcp: %s", resp.Status)
		}
	}
	wg.Wait()
	for _, f := range []struct {
		what     string
		accepted int
		bound    int
		refusal  *http.Response
	}{{"registrations", regAccepted, 40, regRefusal}, {"pending sign-ins", pendAccepted, 15, pendRefusal}} {
		if f.accepted != f.bound || f.refusal == nil {
			t.Errorf("%s: %d accepted before a refusal, want %d", f.what, f.accepted, f.bound)
			continue
		}
		if secs, err := strconv.Atoi(f.refusal.Header.Get("Retry-After")); f.refusal.StatusCode != http.StatusTooManyRequests || err != nil || secs < 1 {
			t.Errorf("%s: refused with %s, Retry-After %q; want 429 with a Retry-After", f.what, f.refusal.Status, f.refusal.Header.Get("Retry-After"))
		}
	}
	// The flooder stays refused while its unfinished sign-ins count.
	flooder := e.from("127.0.0.6")
	c := flooder.register(t, true)
	if _, err := flooder.browser("bob").Authorize(t.Context(), c.authURL(e.site+"/mcp")); err == nil || !strings.Contains(err.Error(), "429") {
		t.Errorf("a sign-in from the address over its bound: %v, want 429", err)
	}
}

// TestRefreshRetriedAfterLostAnswer: a client whose refresh answer never
// arrived (it read nothing, or its connection dropped mid-request) sends
// the same refresh token again and gets a fresh pair; the grant lives on,
// and the token it now holds refreshes.
func TestRefreshRetriedAfterLostAnswer(t *testing.T) {
	e := start(t, options{})
	for _, confidential := range []bool{false, true} {
		t.Run(fmt.Sprintf("confidential=%v", confidential), func(t *testing.T) {
			c := e.register(t, confidential)
			tok := c.login(t, e.browser("alice"), e.site+"/mcp")

			// The answer is sent, and lost.
			if status, out := c.refresh(t, tok.RefreshToken); status != http.StatusOK {
				t.Fatalf("refresh: %d %v", status, out)
			} else {
				e.logs.addSecret(fmt.Sprint(out["access_token"]))
				e.logs.addSecret(fmt.Sprint(out["refresh_token"]))
			}
			// The connection drops before any answer is read: the server
			// may or may not have rotated again.
			c.dropRefresh(t, tok.RefreshToken)

			status, out := c.refresh(t, tok.RefreshToken)
			if status != http.StatusOK {
				t.Fatalf("the retried refresh: %d %v, want a fresh pair", status, out)
			}
			at, rt := out["access_token"].(string), out["refresh_token"].(string)
			e.logs.addSecret(at)
			e.logs.addSecret(rt)
			if resp := e.mcpPost(t, "/mcp", "Bearer "+at); resp.StatusCode != http.StatusOK {
				t.Fatalf("the retry's access token: %s", resp.Status)
			}
			status, out = c.refresh(t, rt)
			if status != http.StatusOK {
				t.Fatalf("refreshing the retry's token: %d %v", status, out)
			}
			e.logs.addSecret(fmt.Sprint(out["access_token"]))
			e.logs.addSecret(fmt.Sprint(out["refresh_token"]))
		})
	}
}

// dropRefresh sends a refresh request for refreshToken on a connection of
// its own and closes it without reading the answer.
func (c *oauthClient) dropRefresh(t *testing.T, refreshToken string) {
	t.Helper()
	u, _ := url.Parse(c.e.site)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: c.e.roots, ServerName: u.Hostname()})
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	auth := ""
	if c.secret != "" {
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
		auth = "Authorization: " + req.Header.Get("Authorization") + "\r\n"
	} else {
		form.Set("client_id", c.id)
	}
	body := form.Encode()
	fmt.Fprintf(conn, "POST /token HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		u.Host, auth, len(body), body)
	conn.Close()
}

// TestRacingRefreshesBothSucceed: two processes sharing one token store
// (several mcp-remote instances, an IDE and its helper) refresh the same
// token at the same moment. Both are answered, and whichever answer the
// store keeps refreshes next; the grant is not taken for stolen.
func TestRacingRefreshesBothSucceed(t *testing.T) {
	e := start(t, options{})
	c := e.register(t, true)
	for round := range 4 {
		tok := c.login(t, e.browser("alice"), e.site+"/mcp")
		var wg sync.WaitGroup
		var status [2]int
		var out [2]map[string]any
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status[i], out[i] = c.refresh(t, tok.RefreshToken)
			}()
		}
		wg.Wait()
		for i := range 2 {
			if status[i] != http.StatusOK {
				t.Fatalf("round %d: racing refresh %d: %d %v", round, i, status[i], out[i])
			}
			e.logs.addSecret(fmt.Sprint(out[i]["access_token"]))
			e.logs.addSecret(fmt.Sprint(out[i]["refresh_token"]))
		}
		kept := out[round%2]["refresh_token"].(string)
		if s, o := c.refresh(t, kept); s != http.StatusOK {
			t.Fatalf("round %d: the kept answer's refresh token: %d %v", round, s, o)
		} else {
			e.logs.addSecret(fmt.Sprint(o["access_token"]))
			e.logs.addSecret(fmt.Sprint(o["refresh_token"]))
		}
	}
}
