package oauth

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// hostileValues are what a client (its name, scopes, redirect URI) or a
// request parameter quoted in an error could put on a page.
var hostileValues = []string{
	`"><script>alert(1)</script>`,
	`' autofocus onfocus='alert(1)`,
	`</title><script>alert(1)</script>`,
	`</code></strong><img src=x onerror=alert(1)>`,
	`<!-- x`,
	`&amp; &lt; &#x3c;`,
	"ünïcødé\u00a0and\ttabs",
	`javascript:alert(1)`,
}

// TestPagesKeepEveryValueText parses the consent and error pages back with
// an HTML5 parser, as a browser would, and checks that every value is
// exactly the text or attribute value it was given and that no value made
// an element of its own.
func TestPagesKeepEveryValueText(t *testing.T) {
	for _, v := range hostileValues {
		t.Run(v, func(t *testing.T) {
			consent := consentView{
				ClientName: "client " + v, Resource: "https://mcp.example/" + v, User: "user " + v,
				RedirectHost: "host " + v, Action: PathConsent, RequestID: "req " + v, CSRF: "csrf " + v,
				Scopes: []string{"openid", "scope " + v},
			}
			doc := parsePage(t, consentPage(consent))
			checkElements(t, doc, []string{"body", "button", "code", "form", "h1", "head", "html", "input", "li", "meta", "p", "strong", "style", "title", "ul"})
			want := map[string][]string{
				"title":  {"Authorize client " + v},
				"strong": {"client " + v, "user " + v},
				"code":   {"https://mcp.example/" + v, "host " + v, "openid", "scope " + v},
			}
			for tag, texts := range want {
				if got := textsOf(doc, tag); !slices.Equal(got, texts) {
					t.Errorf("<%s> texts %q, want %q", tag, got, texts)
				}
			}
			if got := attrsOf(doc, "input", "value"); !slices.Equal(got, []string{"req " + v, "csrf " + v}) {
				t.Errorf("hidden input values %q", got)
			}
			if got := attrsOf(doc, "form", "action"); !slices.Equal(got, []string{PathConsent}) {
				t.Errorf("form action %q", got)
			}
			if got := attrsOf(doc, "button", "value"); !slices.Equal(got, []string{"approve", "deny"}) {
				t.Errorf("button values %q", got)
			}

			doc = parsePage(t, errorPageHTML(errorView{Code: "invalid_request", Description: "bad " + v, RequestID: "rid " + v}))
			checkElements(t, doc, []string{"body", "code", "h1", "head", "html", "meta", "p", "style", "title"})
			if got := textsOf(doc, "code"); !slices.Equal(got, []string{"invalid_request", "rid " + v}) {
				t.Errorf("error page <code> texts %q", got)
			}
			if got := textsOf(doc, "p"); len(got) < 1 || got[0] != "bad "+v {
				t.Errorf("error page first paragraph %q, want %q", got, "bad "+v)
			}
		})
	}
}

// TestPagesOptionalParts: no scopes, no list; no request id, no id.
func TestPagesOptionalParts(t *testing.T) {
	doc := parsePage(t, consentPage(consentView{ClientName: "c", Action: PathConsent}))
	if got := textsOf(doc, "li"); len(got) != 0 {
		t.Errorf("scopes listed without scopes: %q", got)
	}
	page := errorPageHTML(errorView{Code: "access_denied", Description: "no"})
	if strings.Contains(page, "request <code>") {
		t.Errorf("error page names a request without an id:\n%s", page)
	}
	if got := textsOf(parsePage(t, page), "code"); !slices.Equal(got, []string{"access_denied"}) {
		t.Errorf("error page <code> texts %q", got)
	}
}

func parsePage(t *testing.T, page string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatalf("parse page: %v\n%s", err, page)
	}
	return doc
}

// checkElements fails unless the document's element names are exactly want.
func checkElements(t *testing.T, doc *html.Node, want []string) {
	t.Helper()
	seen := map[string]bool{}
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode {
			seen[n.Data] = true
		}
	}
	var got []string
	for k := range seen {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("elements %q, want %q", got, want)
	}
}

// textsOf is the text content of each tag element, in document order.
func textsOf(doc *html.Node, tag string) []string {
	var out []string
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode || n.Data != tag {
			continue
		}
		var b strings.Builder
		for c := range n.Descendants() {
			if c.Type == html.TextNode {
				b.WriteString(c.Data)
			}
		}
		out = append(out, b.String())
	}
	return out
}

func attrsOf(doc *html.Node, tag, attr string) []string {
	var out []string
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode || n.Data != tag {
			continue
		}
		for _, a := range n.Attr {
			if a.Key == attr {
				out = append(out, a.Val)
			}
		}
	}
	return out
}
