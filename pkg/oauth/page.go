package oauth

import (
	"html"
	"strings"
)

// The proxy's own HTML pages (consent and errors) are written here by
// hand, every value through html.EscapeString, instead of with
// html/template. Executing a template calls reflect's MethodByName with
// names known only at run time, and once a binary can do that the Go
// linker must keep every exported method of every type in it: in the
// sidecar that was 9.5 MB of 33 MB (go-redis's command set alone 4.3 MB),
// over its 30 MB target. Every value on these pages is element text or a
// double-quoted attribute value, the two contexts where escaping <, >, &,
// ' and " is all html/template would do; no value goes into a URL, script
// or style attribute. pages_test.go parses the pages back to check that.

// pageStyle is the pages' shared CSS; the Content-Security-Policy allows
// only inline styles.
const pageStyle = `body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:0 .2rem}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}`

// page builds one HTML document. markup is trusted text of this package;
// text is anything else.
type page struct{ b strings.Builder }

func newPage(title string) *page {
	p := &page{}
	p.markup(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>`)
	p.text(title)
	p.markup("</title>\n<style>" + pageStyle + "</style>\n</head><body>\n")
	return p
}

func (p *page) markup(s string) { p.b.WriteString(s) }
func (p *page) text(s string)   { p.b.WriteString(html.EscapeString(s)) }

func (p *page) String() string { return p.b.String() + "</body></html>\n" }

// consentView is what the consent page shows and posts back.
type consentView struct {
	ClientName, Resource, User, RedirectHost, Action, RequestID, CSRF string
	Scopes                                                            []string
}

func consentPage(v consentView) string {
	p := newPage("Authorize " + v.ClientName)
	p.markup("<h1>Authorize access</h1>\n<p><strong>")
	p.text(v.ClientName)
	p.markup("</strong> wants to access <code>")
	p.text(v.Resource)
	p.markup("</code> as <strong>")
	p.text(v.User)
	p.markup("</strong>.</p>\n<p>After you approve, you will be sent to <code>")
	p.text(v.RedirectHost)
	p.markup("</code>.</p>\n")
	if len(v.Scopes) > 0 {
		p.markup("<p>Requested permissions:</p><ul>")
		for _, s := range v.Scopes {
			p.markup("<li><code>")
			p.text(s)
			p.markup("</code></li>")
		}
		p.markup("</ul>\n")
	}
	p.markup(`<form method="post" action="`)
	p.text(v.Action)
	p.markup(`">` + "\n" + `<input type="hidden" name="request" value="`)
	p.text(v.RequestID)
	p.markup(`">` + "\n" + `<input type="hidden" name="csrf" value="`)
	p.text(v.CSRF)
	p.markup(`">
<button type="submit" name="action" value="approve" id="approve">Approve</button>
<button type="submit" name="action" value="deny" id="deny">Deny</button>
</form>
`)
	return p.String()
}

// errorView is what the error page shows.
type errorView struct{ Code, Description, RequestID string }

func errorPageHTML(v errorView) string {
	p := newPage("Authorization failed")
	p.markup("<h1>Authorization failed</h1>\n<p>")
	p.text(v.Description)
	p.markup("</p>\n<p>Error: <code>")
	p.text(v.Code)
	p.markup("</code>")
	if v.RequestID != "" {
		p.markup(" &middot; request <code>")
		p.text(v.RequestID)
		p.markup("</code>")
	}
	p.markup("</p>\n<p>You were not sent back to the application because this server cannot tell yet whether you trust it. Close this page and start again from your application.</p>\n")
	return p.String()
}
