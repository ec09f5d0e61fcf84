package config

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix prefixes the derived environment name of every setting.
const EnvPrefix = "MCP_OIDC_PROXY_"

// Field describes one setting: where it can be given and how it behaves.
// It is exported so that --help and the README are generated from the same
// table the loader uses.
type Field struct {
	// Path is the dotted YAML path, e.g. "oidc.client_id".
	Path string
	// Env lists the accepted environment names, the derived one first.
	Env []string
	// Flag is the command-line flag name without dashes.
	Flag string
	// Usage is the one-line help.
	Usage string
	// Secret fields are never printed.
	Secret bool
	// Reload fields are applied on SIGHUP or config file change.
	Reload bool
	// Default is the default rendered as text ("" when empty).
	Default string

	index []int
	typ   reflect.Type
	// podSecret is the key of the pod's Secret that feeds a secret setting
	// in an injected sidecar (tag podsecret).
	podSecret string
}

// Fields lists every setting in declaration order.
func Fields() []Field {
	var out []Field
	def := reflect.ValueOf(Defaults())
	walk(reflect.TypeOf(Config{}), nil, "", func(f Field) {
		f.Default = format(def.FieldByIndex(f.index))
		out = append(out, f)
	})
	return out
}

// SecretFields lists the YAML paths of every setting marked secret, e.g.
// "oidc.client_secret". It is the one source for anything that must keep
// secrets out of a place (the injector's cluster-wide defaults, which are
// copied into every pod spec), so a new secret setting is covered the moment
// it is tagged. Their *_file variants are paths and not listed.
func SecretFields() []string {
	var out []string
	walk(reflect.TypeOf(Config{}), nil, "", func(f Field) {
		if f.Secret {
			out = append(out, f.Path)
		}
	})
	return out
}

func walk(t reflect.Type, index []int, prefix string, visit func(Field)) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := strings.Split(sf.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		path := key
		if prefix != "" {
			path = prefix + "." + key
		}
		if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(time.Duration(0)) {
			walk(sf.Type, idx, path, visit)
			continue
		}
		f := Field{
			Path:   path,
			Flag:   strings.NewReplacer(".", "-", "_", "-").Replace(path),
			Usage:  sf.Tag.Get("usage"),
			Secret: sf.Tag.Get("secret") == "true",
			Reload: sf.Tag.Get("reload") == "true",
			index:  idx,
			typ:    sf.Type,

			podSecret: sf.Tag.Get("podsecret"),
		}
		f.Env = append(f.Env, EnvPrefix+strings.ToUpper(strings.NewReplacer(".", "_").Replace(path)))
		if alias := sf.Tag.Get("env"); alias != "" {
			f.Env = append(f.Env, strings.Split(alias, ",")...)
		}
		visit(f)
	}
}

// Type names the value syntax for help output.
func (f Field) Type() string {
	switch f.typ {
	case reflect.TypeOf(time.Duration(0)):
		return "duration"
	case reflect.TypeOf([]string(nil)):
		return "list"
	}
	if structList(f.typ) {
		return "yaml"
	}
	return f.typ.Kind().String()
}

// set parses raw into the field of cfg.
func (f Field) set(cfg *Config, raw string) error {
	v := reflect.ValueOf(cfg).Elem().FieldByIndex(f.index)
	switch {
	case f.typ == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("%q is not a duration (use e.g. 30s, 5m, 12h)", raw)
		}
		v.SetInt(int64(d))
	case f.typ == reflect.TypeOf([]string(nil)):
		v.Set(reflect.ValueOf(splitList(raw)))
	case structList(f.typ):
		// A list of records (policy.rules) is given as YAML or JSON text,
		// strictly: a misspelt key is an error, not an ignored rule part.
		p := reflect.New(f.typ)
		dec := yaml.NewDecoder(strings.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(p.Interface()); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("not a YAML or JSON list: %v", err)
		}
		v.Set(p.Elem())
	case f.typ.Kind() == reflect.String:
		v.SetString(raw)
	case f.typ.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("%q is not a boolean (use true or false)", raw)
		}
		v.SetBool(b)
	case f.typ.Kind() == reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", raw)
		}
		v.SetInt(int64(n))
	case f.typ.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		v.SetFloat(x)
	default:
		return fmt.Errorf("unsupported setting type %s", f.typ)
	}
	return nil
}

// structList reports whether t is a list of records, such as policy.rules,
// which flags and environment variables give as YAML or JSON text.
func structList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

func (f Field) value(cfg *Config) reflect.Value {
	return reflect.ValueOf(cfg).Elem().FieldByIndex(f.index)
}

func splitList(raw string) []string {
	var out []string
	for _, p := range strings.Split(raw, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func format(v reflect.Value) string {
	if structList(v.Type()) {
		if v.Len() == 0 {
			return ""
		}
		out, err := yaml.Marshal(v.Interface())
		if err != nil {
			return fmt.Sprint(v.Interface())
		}
		return strings.TrimSpace(string(out))
	}
	switch x := v.Interface().(type) {
	case time.Duration:
		if x == 0 {
			return ""
		}
		return x.String()
	case []string:
		return strings.Join(x, ",")
	case bool:
		if !x {
			return ""
		}
		return "true"
	case int:
		if x == 0 {
			return ""
		}
	case float64:
		if x == 0 {
			return ""
		}
	}
	return fmt.Sprint(v.Interface())
}
