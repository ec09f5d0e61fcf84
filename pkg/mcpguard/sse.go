package mcpguard

import (
	"bytes"
	"fmt"
	"net/http"
)

// SSE parser states.
const (
	sseParse   = iota // events are collected and inspected
	sseCopy           // nothing left to look for: bytes go straight through
	ssePass           // the current event is too large to inspect: written through
	sseDiscard        // the current event is too large and may be a list: dropped
)

// sseFilter inspects a text/event-stream response event by event. An
// event is written (and flushed) as soon as it is complete; only an event
// carrying the response to a list request is rewritten. Once every id it
// waits for is answered it copies the rest untouched. Lines end with LF
// or CRLF; a stream using bare CR line ends is never seen to complete an
// event, so it ends up too large: written through when only auditing,
// replaced by an error while a list is pending. An event holding a bare CR
// (or a first event starting with a byte order mark) while a list is
// pending is replaced by an error too: a client splits it where the
// filter does not, and could find an unfiltered list in it.
type sseFilter struct {
	w     *responseWriter
	state int
	event []byte // complete lines of the current event
	line  []byte // the current incomplete line
	// lineText: the current line (ssePass, sseDiscard) has content.
	lineText bool
	// begun: an event was handled (a BOM only counts at the start).
	begun bool
	err   error
}

func (f *sseFilter) out(b []byte) {
	if f.err == nil {
		_, f.err = f.w.ResponseWriter.Write(b)
	}
}

func (f *sseFilter) flush() {
	if fl, ok := f.w.ResponseWriter.(http.Flusher); ok && f.err == nil {
		fl.Flush()
	}
}

// waiting reports whether an answer is still looked for.
func (f *sseFilter) waiting() bool {
	return len(f.w.x.pending) > 0 || len(f.w.x.lists) > 0
}

func (f *sseFilter) write(p []byte) error {
	if f.state == sseParse && !f.waiting() && len(f.event) == 0 && len(f.line) == 0 {
		f.state = sseCopy
	}
	max := f.w.x.s.MaxListBytes
	for len(p) > 0 && f.err == nil {
		switch f.state {
		case sseCopy:
			f.out(p)
			p = nil
		case sseParse:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				f.line = append(f.line, p...)
				p = nil
				if len(f.event)+len(f.line) > max {
					f.tooLarge(false)
				}
				continue
			}
			f.line = append(f.line, p[:i+1]...)
			p = p[i+1:]
			blank := len(f.line) == 1 || (len(f.line) == 2 && f.line[0] == '\r')
			f.event = append(f.event, f.line...)
			f.line = f.line[:0]
			switch {
			case len(f.event) > max:
				f.tooLarge(blank)
			case blank:
				f.handle(f.event)
				f.event = f.event[:0]
				if !f.waiting() {
					f.state = sseCopy
				}
			}
		default: // ssePass, sseDiscard
			i := bytes.IndexByte(p, '\n')
			chunk := p
			if i >= 0 {
				chunk = p[:i+1]
			}
			p = p[len(chunk):]
			content := bytes.TrimRight(chunk, "\r\n")
			if len(content) > 0 {
				f.lineText = true
			}
			if f.state == ssePass {
				f.out(chunk)
			}
			if i >= 0 {
				if !f.lineText {
					// The blank line ending the oversized event.
					if f.state == ssePass {
						f.flush()
					}
					f.state = sseParse
				}
				f.lineText = false
			}
		}
	}
	return f.err
}

// tooLarge handles an event that grew past max_list_bytes. ended says
// its blank line has been read.
func (f *sseFilter) tooLarge(ended bool) {
	x := f.w.x
	if len(x.lists) > 0 {
		// It may be a list response: never shown unfiltered.
		f.refuseLists(fmt.Sprintf("is larger than %d bytes (policy.max_list_bytes) and cannot be filtered", x.s.MaxListBytes))
		f.state = sseDiscard
	} else {
		f.out(f.event)
		f.out(f.line)
		f.state = ssePass
	}
	f.lineText = len(bytes.TrimRight(f.line, "\r\n")) > 0
	f.event, f.line = f.event[:0], f.line[:0]
	if ended {
		if f.state == ssePass {
			f.flush()
		}
		f.state = sseParse
	}
}

// refuseLists answers every pending list request with an error event,
// in place of an answer the filter cannot read as a client would.
func (f *sseFilter) refuseLists(why string) {
	x := f.w.x
	for key, lk := range x.lists {
		code := CodeListUnfiltered
		f.out(sseMessage(errorResponse(rawID(key), code, lk.method+" response "+why)))
		x.answered(key, &code)
	}
	x.lists = nil
	f.flush()
}

// bom is the byte order mark a client drops from the start of a stream.
var bom = []byte("\ufeff")

// handle inspects one complete event (its bytes end with the blank line)
// and writes it, rewritten if it answered a list request.
func (f *sseFilter) handle(ev []byte) {
	f.handleEvent(ev, false)
}

// handleEvent is handle; cut says the stream ended inside the event. A
// cut-off event whose data is not JSON while a list is pending is dropped
// (it may be the list answer's first part, and a client discards an event
// the stream ended in anyway) and the lists are answered with errors.
func (f *sseFilter) handleEvent(ev []byte, cut bool) {
	first := !f.begun
	f.begun = true
	if len(f.w.x.lists) > 0 && (hasBareCR(ev) || (first && bytes.HasPrefix(ev, bom))) {
		// A client also ends lines at a lone CR and drops a leading BOM,
		// so it may read a list answer here that the filter cannot see:
		// the event is dropped and the lists answered with errors.
		f.refuseLists("could not be filtered (the MCP server's event stream uses bare CR line ends or a byte order mark)")
		return
	}
	data, hasData := sseData(ev)
	if hasData {
		out, _, err := forEachResponse(data, f.w.x.seen)
		if err == nil && !bytes.Equal(out, data) {
			f.out(rewriteEvent(ev, out))
			f.flush()
			return
		}
		if err != nil && cut && len(f.w.x.lists) > 0 {
			f.refuseLists("was cut off by the end of the MCP server's stream and cannot be filtered")
			return
		}
	}
	f.out(ev)
	f.flush()
}

// end handles an event cut off by the end of the stream like a complete
// one, so a list response is never relayed unfiltered even then; one that
// is not JSON is dropped while a list is pending.
func (f *sseFilter) end() {
	if f.state != sseParse {
		return
	}
	ev := append(f.event, f.line...)
	if len(ev) > 0 {
		f.handleEvent(ev, true)
	}
}

// hasBareCR reports whether ev has a CR that is not part of a CRLF (a
// CR ending ev counts: the stream ended there).
func hasBareCR(ev []byte) bool {
	for i, c := range ev {
		if c == '\r' && (i+1 == len(ev) || ev[i+1] != '\n') {
			return true
		}
	}
	return false
}

// sseData joins the data lines of an event.
func sseData(ev []byte) ([]byte, bool) {
	var data []byte
	has := false
	for _, line := range bytes.Split(ev, []byte{'\n'}) {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		v, ok := bytes.CutPrefix(line, []byte("data"))
		if !ok || (len(v) > 0 && v[0] != ':') {
			continue
		}
		v = bytes.TrimPrefix(bytes.TrimPrefix(v, []byte{':'}), []byte{' '})
		if has {
			data = append(data, '\n')
		}
		data = append(data, v...)
		has = true
	}
	return data, has
}

// rewriteEvent keeps every field line of ev (id:, event:, retry:,
// comments) and replaces its data lines by one carrying data.
func rewriteEvent(ev, data []byte) []byte {
	var out []byte
	done := false
	for _, line := range bytes.Split(bytes.TrimRight(ev, "\r\n"), []byte{'\n'}) {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if v, ok := bytes.CutPrefix(line, []byte("data")); ok && (len(v) == 0 || v[0] == ':') {
			if !done {
				out = append(append(append(out, "data: "...), data...), '\n')
				done = true
			}
			continue
		}
		out = append(append(out, line...), '\n')
	}
	return append(out, '\n')
}

// sseMessage frames a JSON-RPC message as an SSE message event.
func sseMessage(msg []byte) []byte {
	out := append([]byte("event: message\ndata: "), msg...)
	return append(out, '\n', '\n')
}
