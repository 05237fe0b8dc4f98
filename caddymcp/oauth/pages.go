package oauth

import (
	"embed"
	"html/template"
	"net/http"
)

// The plain pages a browser is shown when it cannot be sent on, embedded
// at build time; page_head.html is the top they share.
//
//go:embed templates/page_head.html templates/error.html templates/github_down.html
var pageFiles embed.FS

var (
	// errorPage is executed with a pageData.
	errorPage = parsePage("error.html")
	// githubDownPage is executed with the URL of the same sign-in, to
	// try again.
	githubDownPage = parsePage("github_down.html")
)

func parsePage(name string) *template.Template {
	return template.Must(template.ParseFS(pageFiles, "templates/"+name, "templates/page_head.html"))
}

// pageData fills the plain HTML page used for errors a browser sees that
// must not be redirected to a client (RFC 6749 section 4.1.2.1).
type pageData struct {
	Title   string
	Message string
}

// writeErrorPage shows a browser an error it cannot be redirected with.
func writeErrorPage(w http.ResponseWriter, status int, title, message string) {
	retryAfter503(w, status)
	setPageHeaders(w)
	w.WriteHeader(status)
	_ = errorPage.Execute(w, pageData{Title: title, Message: message})
}

// setPageHeaders makes an HTML page of ours uncacheable, unframeable and
// unable to load anything but its own inline style.
func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}
