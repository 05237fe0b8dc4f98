package fakegithub_test

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// TestBrowserAuthorize walks a minimal authorization server (a consent
// page, a redirect to the stand-in, a callback that sends the browser to
// the client) approving and denying, and checks the consent form parser.
func TestBrowserAuthorize(t *testing.T) {
	var gh *fakegithub.Server
	var ghURL string
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/authorize":
			fmt.Fprintf(w, `<form method="post" action="/consent"><input type="hidden" name="state" value="%s"><input type="hidden" name="csrf" value="c&amp;1"></form>`,
				html.EscapeString(r.URL.Query().Get("state")))
		case "/consent":
			if r.PostFormValue("csrf") != "c&1" {
				http.Error(w, "csrf", http.StatusForbidden)
				return
			}
			if r.PostFormValue("action") == fakegithub.Deny {
				http.Redirect(w, r, "https://client.example/cb?error=access_denied", http.StatusFound)
				return
			}
			http.Redirect(w, r, ghURL+"/login/oauth/authorize?client_id=app&state="+url.QueryEscape(r.PostFormValue("state")), http.StatusFound)
		case "/callback":
			http.Redirect(w, r, "https://client.example/cb?code=ours-"+r.URL.Query().Get("code"), http.StatusFound)
		}
	}))
	defer as.Close()
	gh = fakegithub.New(fakegithub.Options{
		Apps:  []fakegithub.App{{ClientID: "app", ClientSecret: "secret", CallbackURL: as.URL + "/callback"}},
		Users: []fakegithub.User{{ID: 1, Login: "alice"}},
	})
	var err error
	if ghURL, err = gh.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer gh.Close()

	b := fakegithub.NewBrowser(ghURL, "alice", nil)
	final, err := b.Authorize(t.Context(), as.URL+"/authorize?state=a%26b")
	if err != nil {
		t.Fatal(err)
	}
	if final.Host != "client.example" || final.Query().Get("code") == "ours-" {
		t.Errorf("approved: ended at %s, want the client with a code", final)
	}
	if b.ConsentPages() != 1 {
		t.Errorf("consent pages %d, want 1", b.ConsentPages())
	}

	cb, err := b.Follow(t.Context(), as.URL+"/authorize?state=s", func(u *url.URL) bool { return u.Path == "/callback" })
	if err != nil || cb.Path != "/callback" || cb.Query().Get("state") != "s" {
		t.Errorf("Follow to the callback: %v, %v", cb, err)
	}

	b.Consent = fakegithub.Deny
	if final, err = b.Authorize(t.Context(), as.URL+"/authorize?state=s"); err != nil || final.Query().Get("error") != "access_denied" {
		t.Errorf("denied: %v, %v", final, err)
	}

	if _, ok := fakegithub.ConsentForm("<p>no form</p>"); ok {
		t.Error("ConsentForm accepted a page without the consent form")
	}
}
