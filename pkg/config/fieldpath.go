package config

import (
	"fmt"
	"net"
	"net/url"
)

// fieldPath names a setting by its dotted path (session.cookie_name), the
// path FieldError, the flags table and the injector all key on. It plays the
// part of apimachinery's field.Path in cert-manager's validators: each
// section's validator receives its section's path and names its settings
// with Child, so no validator spells out where its section sits. The sidecar
// does not link apimachinery, hence this small copy of the idea.
type fieldPath string

// root is the path of the top-level settings.
const root fieldPath = ""

// Child is the path of the setting name inside p.
func (p fieldPath) Child(name string) fieldPath {
	if p == root {
		return fieldPath(name)
	}
	return p + "." + fieldPath(name)
}

func (p fieldPath) String() string { return string(p) }

// errorList collects the problems one validator finds, like field.ErrorList;
// Validate joins the lists of all sections.
type errorList []error

// add records a problem with the setting at p.
func (l *errorList) add(p fieldPath, format string, args ...any) {
	*l = append(*l, &FieldError{Path: p.String(), Msg: fmt.Sprintf(format, args...)})
}

// howToSet says where a setting can be given: its flag, its preferred
// environment variable and its path in the file.
func howToSet(p fieldPath) string {
	for _, f := range Fields() {
		if f.Path == p.String() {
			return fmt.Sprintf("set --%s, %s or %s in the config file", f.Flag, f.Env[len(f.Env)-1], p)
		}
	}
	return ""
}

// checkHostPort requires a listen address.
func (l *errorList) checkHostPort(p fieldPath, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		l.add(p, "%q is not host:port (e.g. :15080 or 0.0.0.0:15080)", addr)
	}
}

// checkURL requires an absolute http(s) URL, or nothing when not required.
func (l *errorList) checkURL(p fieldPath, raw string, required bool) {
	if raw == "" {
		if required {
			l.add(p, "required; %s", howToSet(p))
		}
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.add(p, "%q is not an absolute http(s) URL", raw)
	}
}
