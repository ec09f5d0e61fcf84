package oidcprovider

import (
	"context"
	"html/template"
	"net/http"
)

const (
	// loginPath is fixed by the example storage's clients, whose login URL
	// is "/login/username?authRequestID=<id>".
	loginPath     = "/login/username"
	loggedOutPath = "/logged-out"
)

// loginTemplate is the login page a browser sees. Login (the scripted
// browser) posts the same form fields.
var loginTemplate = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Test OIDC provider login</title></head>
<body>
<form method="POST" action="/login/username">
<input type="hidden" name="id" value="{{.ID}}">
<label>Username <input type="text" name="username" autofocus></label>
<label>Password <input type="password" name="password"></label>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<button type="submit">Log in</button>
</form>
</body></html>
`))

// authenticator is the part of the storage the login UI needs.
type authenticator interface {
	CheckUsernamePassword(username, password, id string) error
}

// loginUI is a minimal username/password page. It replaces the example's
// exampleop UI, which replaces the process-wide slog logger and exits the
// process on errors.
type loginUI struct {
	auth     authenticator
	callback func(ctx context.Context, authRequestID string) string
}

func (l *loginUI) form(w http.ResponseWriter, r *http.Request) {
	l.render(w, http.StatusOK, r.URL.Query().Get("authRequestID"), "")
}

func (l *loginUI) submit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("id")
	if err := l.auth.CheckUsernamePassword(r.PostForm.Get("username"), r.PostForm.Get("password"), id); err != nil {
		l.render(w, http.StatusUnauthorized, id, "wrong username or password")
		return
	}
	http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
}

func (l *loginUI) render(w http.ResponseWriter, status int, id, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginTemplate.Execute(w, struct{ ID, Error string }{id, msg})
}
