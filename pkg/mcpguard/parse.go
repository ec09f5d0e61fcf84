package mcpguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
)

// maxDepth bounds the nesting of a request body. The SDK's own decoder
// stops at 1000; a JSON-RPC request never needs more than a few levels.
const maxDepth = 512

// Parse errors. errSyntax bodies are answered -32700, the others -32600.
var (
	errSyntax    = errors.New("not valid JSON")
	errDuplicate = errors.New("duplicate object key")
	errInvalid   = errors.New("not a valid JSON-RPC message")
)

// kind is what a JSON-RPC message is.
type kind int

const (
	kindRequest      kind = iota // method and id: gets an answer
	kindNotification             // method, no id
	kindResponse                 // result or error from the client
)

// message is one parsed JSON-RPC message.
type message struct {
	// raw is the message's exact bytes, forwarded unchanged.
	raw    []byte
	kind   kind
	method string
	// id is the raw id (requests only); idKey identifies it for matching
	// responses whatever its spelling.
	id    json.RawMessage
	idKey string
	// decided: the policy decides this method (methods.go).
	decided bool
	// target is the governed method whose rules decide the message: the
	// method itself, resources/read for resources/subscribe, and for
	// completion/complete the one its ref names ("" when it names none,
	// which is denied).
	target string
	// hasName and name: the tool or prompt name or resource URI of a
	// decided request (params.name, params.uri, params.ref.name or
	// params.ref.uri), when it is a string.
	hasName bool
	name    string
	// args are params.arguments of tools/call and prompts/get.
	args map[string]any
	// badParams: a decided request whose params or arguments have the
	// wrong type; it is denied.
	badParams bool
}

// body is a parsed request body.
type body struct {
	batch bool
	msgs  []message
}

// parseBody strictly parses a JSON-RPC body: one message or a batch. It
// refuses invalid UTF-8, trailing data, duplicate keys (also keys equal
// ignoring case, which Go's encoding/json would merge into one struct
// field), and JSON-RPC member names spelled with another case, so that the
// message the policy decides is the message every server acts on.
func parseBody(b []byte) (*body, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: invalid UTF-8", errSyntax)
	}
	if err := checkStrict(b); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	out := &body{}
	var elems []json.RawMessage
	if len(trimmed) > 0 && trimmed[0] == '[' {
		out.batch = true
		if err := json.Unmarshal(b, &elems); err != nil {
			return nil, fmt.Errorf("%w: %v", errSyntax, err)
		}
		if len(elems) == 0 {
			return nil, fmt.Errorf("%w: empty batch", errInvalid)
		}
	} else {
		elems = []json.RawMessage{b}
	}
	seen := map[string]bool{}
	for i, e := range elems {
		m, err := parseMessage(e)
		if err != nil {
			if out.batch {
				return nil, fmt.Errorf("batch element %d: %w", i, err)
			}
			return nil, err
		}
		if m.kind == kindRequest {
			if seen[m.idKey] {
				return nil, fmt.Errorf("%w: id %s used twice in one batch", errInvalid, m.id)
			}
			seen[m.idKey] = true
		}
		out.msgs = append(out.msgs, m)
	}
	return out, nil
}

// Known member names, matched exactly; a key equal to one of them only
// ignoring case is refused.
var (
	topKeys      = []string{"jsonrpc", "method", "id", "params", "result", "error"}
	paramsKeys   = []string{"name", "arguments", "uri", "_meta"}
	completeKeys = []string{"ref", "argument", "context", "_meta"}
	refKeys      = []string{"type", "name", "uri"}
)

func parseMessage(raw []byte) (message, error) {
	m := message{raw: raw}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return m, fmt.Errorf("%w: a message must be a JSON object", errInvalid)
	}
	if err := nearMiss(top, topKeys); err != nil {
		return m, err
	}
	method, hasMethod := top["method"]
	id, hasID := top["id"]
	switch {
	case hasMethod:
		if err := json.Unmarshal(method, &m.method); err != nil || !isString(method) {
			return m, fmt.Errorf("%w: method must be a string", errInvalid)
		}
		m.kind = kindNotification
		if hasID {
			key, err := idKey(id)
			if err != nil {
				return m, err
			}
			m.kind, m.id, m.idKey = kindRequest, id, key
		}
	case top["result"] != nil || top["error"] != nil:
		m.kind = kindResponse
		return m, nil
	default:
		return m, fmt.Errorf("%w: neither a request, a notification nor a response", errInvalid)
	}
	if m.decided = decided(m.method); !m.decided {
		return m, nil
	}
	params, ok := top["params"]
	if !ok || isNull(params) {
		return m, nil
	}
	var p map[string]json.RawMessage
	if err := json.Unmarshal(params, &p); err != nil || p == nil {
		m.badParams = true
		return m, nil
	}
	if m.method == methodComplete {
		return m, m.parseRef(p)
	}
	m.target = m.method
	if m.method == methodSubscribe {
		m.target = mcppolicy.MethodResourcesRead
	}
	if err := nearMiss(p, paramsKeys); err != nil {
		return m, err
	}
	nameKey := "name"
	if m.target == mcppolicy.MethodResourcesRead {
		nameKey = "uri"
	}
	m.setName(p[nameKey])
	if a, ok := p["arguments"]; ok && m.target != mcppolicy.MethodResourcesRead && !isNull(a) {
		d := json.NewDecoder(bytes.NewReader(a))
		d.UseNumber()
		if err := d.Decode(&m.args); err != nil || m.args == nil {
			m.badParams = true
		}
	}
	return m, nil
}

// parseRef reads what a completion/complete completes: params.ref, a
// ref/prompt with a name or a ref/resource with a (template) uri. Any
// other shape leaves the message without a target or name, so it is
// denied; a member spelt with another case is refused outright.
func (m *message) parseRef(p map[string]json.RawMessage) error {
	if err := nearMiss(p, completeKeys); err != nil {
		return err
	}
	raw, ok := p["ref"]
	if !ok || isNull(raw) {
		return nil
	}
	var ref map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ref); err != nil || ref == nil {
		m.badParams = true
		return nil
	}
	if err := nearMiss(ref, refKeys); err != nil {
		return err
	}
	var typ string
	if t, ok := ref["type"]; !ok || !isString(t) || json.Unmarshal(t, &typ) != nil {
		return nil
	}
	switch typ {
	case "ref/prompt":
		m.target = mcppolicy.MethodPromptsGet
		m.setName(ref["name"])
	case "ref/resource":
		m.target = mcppolicy.MethodResourcesRead
		m.setName(ref["uri"])
	}
	return nil
}

// setName takes raw as the message's name when it is a JSON string.
func (m *message) setName(raw json.RawMessage) {
	if isString(raw) && json.Unmarshal(raw, &m.name) == nil {
		m.hasName = true
	}
}

// nearMiss refuses keys that equal a known member name only ignoring case
// ("Method", "NAME"): a server matching names case-insensitively would
// read them as that member while the policy would not.
func nearMiss(obj map[string]json.RawMessage, known []string) error {
	for k := range obj {
		for _, want := range known {
			if k != want && foldKey(k) == foldKey(want) {
				return fmt.Errorf("%w: key %q is %q spelt with another case", errDuplicate, k, want)
			}
		}
	}
	return nil
}

func isString(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '"' }
func isNull(raw json.RawMessage) bool   { return string(raw) == "null" }

// maxID bounds numeric ids: 2^53-1, the largest integer every JSON
// implementation (a float64, as the Go SDK decodes it) keeps exactly.
const maxID = 1<<53 - 1

// idKey identifies a request id independently of its spelling: the SDK
// re-encodes ids, so "\u0061" and "a", or 1 and 1.0, are the same id.
// Numeric ids must be integers within ±maxID (MCP ids are strings or
// integers): the SDK answers 1.5 as 1 and 2^53+1 as 2^53, and an answer
// under another id than the request's would escape list filtering.
func idKey(raw json.RawMessage) (string, error) {
	switch {
	case isString(raw):
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: id: %v", errInvalid, err)
		}
		return "s" + s, nil
	case len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')):
		// Every integer spelling past maxID parses to 2^53 or more.
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > maxID {
			return "", fmt.Errorf("%w: a numeric id must be an integer between -%d and %d", errInvalid, int64(maxID), int64(maxID))
		}
		return "n" + strconv.FormatInt(int64(f), 10), nil
	case isNull(raw):
		return "null", nil
	}
	return "", fmt.Errorf("%w: id must be a string or a number", errInvalid)
}

// checkStrict walks the whole body token by token: one JSON value, no
// trailing data, nesting at most maxDepth, and no object with two keys
// equal ignoring case (Unicode simple folding, which is what Go's
// encoding/json uses to match struct fields).
func checkStrict(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	type frame struct {
		object bool
		keys   map[string]struct{}
		expKey bool // next token in this object is a key
	}
	var stack []*frame
	started := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			if !started || len(stack) > 0 {
				return fmt.Errorf("%w: unexpected end of input", errSyntax)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errSyntax, err)
		}
		if started && len(stack) == 0 {
			return fmt.Errorf("%w: data after the JSON value", errSyntax)
		}
		started = true
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expKey {
			if delim, ok := tok.(json.Delim); ok && delim == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k, _ := tok.(string)
			f := foldKey(k)
			if _, dup := top.keys[f]; dup {
				return fmt.Errorf("%w: %q appears twice (keys are compared ignoring case)", errDuplicate, k)
			}
			top.keys[f] = struct{}{}
			top.expKey = false
			continue
		}
		if top != nil && top.object {
			top.expKey = true
		}
		if delim, ok := tok.(json.Delim); ok {
			switch delim {
			case '{':
				stack = append(stack, &frame{object: true, keys: map[string]struct{}{}, expKey: true})
			case '[':
				stack = append(stack, &frame{})
			case ']':
				stack = stack[:len(stack)-1]
			}
			if len(stack) > maxDepth {
				return fmt.Errorf("%w: nested deeper than %d", errInvalid, maxDepth)
			}
		}
	}
}

// foldKey maps s to a canonical spelling under Unicode simple case
// folding: two keys fold to the same string exactly when
// strings.EqualFold says they are equal.
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// The smallest rune of an ASCII letter's fold orbit is its upper
		// case (k's orbit also holds the Kelvin sign, s's the long s).
		return strings.ToUpper(s)
	}
	out := make([]rune, 0, len(s))
	for _, r := range s {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < low {
				low = f
			}
		}
		out = append(out, low)
	}
	return string(out)
}
