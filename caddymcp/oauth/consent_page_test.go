package oauth_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// cspDirectives splits a Content-Security-Policy header into its
// directives, failing on a directive named twice: browsers ignore the
// second, so a duplicate is a policy that does not say what it reads.
func cspDirectives(t *testing.T, csp string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, d := range strings.Split(csp, ";") {
		fields := strings.Fields(d)
		if len(fields) == 0 {
			continue
		}
		name := strings.ToLower(fields[0])
		if _, dup := out[name]; dup {
			t.Errorf("CSP %q names %s twice", csp, name)
		}
		out[name] = fields[1:]
	}
	return out
}

// pageScripts returns the text of every <script> element of a page, and
// every attribute that would run script (on* handlers, javascript: URLs).
func pageScripts(t *testing.T, page string) (scripts []string, handlers []string) {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(page))
	inScript := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if z.Err() != io.EOF {
				t.Fatalf("parsing the consent page: %v", z.Err())
			}
			return scripts, handlers
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			for _, a := range tok.Attr {
				if strings.HasPrefix(strings.ToLower(a.Key), "on") ||
					strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:") {
					handlers = append(handlers, tok.Data+" "+a.Key+"="+a.Val)
				}
			}
			if tok.Data == "script" {
				inScript = true
				scripts = append(scripts, "")
			}
		case html.TextToken:
			if inScript {
				// As served: a script's text is not decoded, so these
				// are the bytes the browser hashes.
				scripts[len(scripts)-1] += string(z.Raw())
			}
		case html.EndTagToken:
			inScript = false
		}
	}
}

// TestConsentPageScriptPolicy: the consent page's only script is the
// Approve button's guard, and its CSP allows exactly that script, by the
// hash of the text the page really carries, and nothing else. An edit of
// the template that changes the script's bytes as served (whitespace
// inside the element, a second script, an onclick) fails here before a
// browser silently refuses to run the guard, leaving Approve unguarded.
func TestConsentPageScriptPolicy(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	b := e.newBrowser("alice")
	r := b.authorize(authzQuery(c, newPKCE()))
	consentForm(t, r)

	csp := r.Header.Get("Content-Security-Policy")
	d := cspDirectives(t, csp)
	// Still the strict page policy around the one script.
	for name, want := range map[string][]string{
		"default-src":     {"'none'"},
		"frame-ancestors": {"'none'"},
		"base-uri":        {"'none'"},
		"style-src":       {"'unsafe-inline'"},
	} {
		if !slices.Equal(d[name], want) {
			t.Errorf("CSP %s = %q, want %q (policy %q)", name, d[name], want, csp)
		}
	}
	// Directives that would let script in beside script-src, which
	// browsers prefer to it for elements and attributes.
	for _, name := range []string{"script-src-elem", "script-src-attr", "worker-src", "child-src", "connect-src", "img-src"} {
		if v, ok := d[name]; ok {
			t.Errorf("CSP has %s %q: nothing but the one script may load or run", name, v)
		}
	}

	scripts, handlers := pageScripts(t, r.Body)
	if len(handlers) != 0 {
		t.Errorf("the page has script in attributes, which the CSP (rightly) blocks: %q", handlers)
	}
	if len(scripts) != 1 {
		t.Fatalf("the page has %d script elements, want exactly the Approve guard", len(scripts))
	}
	if !strings.Contains(scripts[0], `getElementById("approve")`) {
		t.Errorf("the page's script is not the Approve guard: %.200q", scripts[0])
	}
	sum := sha256.Sum256([]byte(scripts[0]))
	want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if got := d["script-src"]; !slices.Equal(got, []string{want}) {
		t.Errorf("CSP script-src = %q, want exactly the hash of the page's script, %s", got, want)
	}
}

// TestConsentPageWorksWithoutScript: the guard only holds Approve back
// when it runs; as served, the button is a plain enabled submit button of
// the form, so a client without JavaScript can approve (the no-script
// POST itself is what every other consent test does).
func TestConsentPageWorksWithoutScript(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	b := e.newBrowser("alice")
	r := b.authorize(authzQuery(c, newPKCE()))
	consentForm(t, r)

	doc, err := html.Parse(strings.NewReader(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	var approve *html.Node
	var inForm bool
	var walk func(n *html.Node, form bool)
	walk = func(n *html.Node, form bool) {
		if n.Type == html.ElementNode && n.Data == "form" {
			form = true
		}
		if n.Type == html.ElementNode && n.Data == "button" && attr(n, "value") == "approve" {
			approve, inForm = n, form
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, form)
		}
	}
	walk(doc, false)
	if approve == nil || !inForm {
		t.Fatalf("no Approve button inside the form: %s", r.Body)
	}
	if attr(approve, "type") != "submit" || attr(approve, "name") != "action" {
		t.Errorf("Approve is not a submit button for action: %+v", approve.Attr)
	}
	for _, a := range approve.Attr {
		if a.Key == "disabled" || a.Key == "aria-disabled" {
			t.Errorf("Approve is served %s: without script nothing would enable it", a.Key)
		}
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
