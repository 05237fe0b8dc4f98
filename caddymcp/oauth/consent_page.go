package oauth

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"strings"
)

// The consent page and the script that guards its Approve button against
// double-clickjacking (see templates/consent.js), embedded at build time.
//
//go:embed templates/consent.html templates/consent.js
var consentFiles embed.FS

var (
	consentPage = template.Must(template.ParseFS(consentFiles, "templates/consent.html"))
	// consentScript is inserted verbatim into the page's one <script>
	// element; consentScriptSource is the only script the page's CSP
	// allows: that element's text, by its SHA-256. Both come from the
	// same bytes, so editing the script cannot leave the hash stale.
	consentScript       = mustRead(consentFiles, "templates/consent.js")
	consentScriptSource = scriptHashSource(consentScript)
)

func mustRead(fs embed.FS, name string) string {
	b, err := fs.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// scriptHashSource is the CSP source expression allowing exactly one
// inline script.
func scriptHashSource(script string) string {
	sum := sha256.Sum256([]byte(script))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

type consentData struct {
	ClientName   string
	ClientID     string
	ClientURI    string
	RedirectHost string
	RedirectURI  string
	Resource     string
	Scopes       []string
	Params       map[string]string
	CSRF         string
	// Identity says how the client is known; Warnings are shown above
	// the buttons.
	Identity string
	Warnings []string
	// Script is the Approve button's guard, trusted: it is our own file.
	Script template.JS
}

func (s *Server) showConsent(w http.ResponseWriter, r *http.Request, req *authzRequest, browser string) {
	name := req.client.Name
	if name == "" {
		name = "An unnamed client"
	}
	resource := req.resource
	if resource == s.issuer(r) {
		resource += " (every protected path)"
	}
	identity, warnings := s.describeClient(req)
	setPageHeaders(w)
	// The pages' policy (no framing, nothing loaded, no script) plus this
	// page's one script, by hash: no other inline script, no attribute
	// handler, no script from anywhere runs.
	h := w.Header()
	h.Set("Content-Security-Policy", h.Get("Content-Security-Policy")+"; script-src "+consentScriptSource)
	w.WriteHeader(http.StatusOK)
	_ = consentPage.Execute(w, consentData{
		ClientName:   name,
		ClientID:     req.client.ID,
		ClientURI:    req.client.ClientURI,
		RedirectHost: redirectHost(req.redirectURI),
		RedirectURI:  req.redirectURI,
		Resource:     resource,
		Scopes:       strings.Fields(req.scope),
		Params:       req.params(),
		CSRF:         s.csrfToken(browser, req),
		Identity:     identity,
		Warnings:     warnings,
		Script:       template.JS(consentScript),
	})
}
