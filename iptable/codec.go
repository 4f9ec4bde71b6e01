package iptable

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// keyEntries is the top-level key that holds the entries.
const keyEntries = "ip_address"

// MarshalJSON writes the entry in today's P2PRC format: every known key, in
// P2PRC's order, then the Extra keys in key order.
func (e Entry) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	w := newMemberWriter(&buf)
	buf.WriteByte('{')
	for i := range fields {
		if err := w.member(fields[i].key, fields[i].value(&e)); err != nil {
			return nil, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.Extra)) {
		if lookupField(k) != nil {
			continue
		}
		if err := w.member(k, e.Extra[k]); err != nil {
			return nil, fmt.Errorf("iptable: entry key %q: %w", k, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// MarshalJSON writes the table in today's P2PRC format: "ip_address" first
// (an empty list when there are no entries), then the Extra keys in key order.
func (t Table) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	w := newMemberWriter(&buf)
	buf.WriteString(`{"` + keyEntries + `":[`)
	for i := range t.Entries {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := t.Entries[i].MarshalJSON()
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	w.n = 1 // "ip_address" is the first member
	for _, k := range slices.Sorted(maps.Keys(t.Extra)) {
		if strings.EqualFold(k, keyEntries) {
			continue
		}
		if err := w.member(k, t.Extra[k]); err != nil {
			return nil, fmt.Errorf("iptable: top-level key %q: %w", k, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// memberWriter writes "key":value pairs of one object, with HTML characters
// left as they are so that strings and kept values come back byte for byte.
type memberWriter struct {
	buf *bytes.Buffer
	enc *json.Encoder
	n   int // members written so far
}

func newMemberWriter(buf *bytes.Buffer) *memberWriter {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	return &memberWriter{buf: buf, enc: enc}
}

func (w *memberWriter) member(key string, v any) error {
	if w.n > 0 {
		w.buf.WriteByte(',')
	}
	w.n++
	if err := w.value(key); err != nil {
		return err
	}
	w.buf.WriteByte(':')
	return w.value(v)
}

// value writes v without the newline json.Encoder ends each value with.
func (w *memberWriter) value(v any) error {
	if err := w.enc.Encode(v); err != nil {
		return err
	}
	w.buf.Truncate(w.buf.Len() - 1)
	return nil
}

// UnmarshalJSON reads an entry in today's or the 2021 format, replacing
// everything in e. Keys are matched case-insensitively, as P2PRC matches them;
// when one field appears under several spellings the last one counts. Keys it
// does not know go to Extra. null leaves e as it is.
func (e *Entry) UnmarshalJSON(data []byte) error {
	if isNull(bytes.TrimSpace(data)) {
		return nil
	}
	d := newDecoder(data)
	var n Entry
	if err := d.entry(&n, "entry"); err != nil {
		return locate("", data, err)
	}
	if err := d.end(); err != nil {
		return locate("", data, err)
	}
	*e = n
	return nil
}

// UnmarshalJSON reads a whole table, as Load does, replacing everything in t.
// null leaves t as it is.
func (t *Table) UnmarshalJSON(data []byte) error {
	if isNull(bytes.TrimSpace(data)) {
		return nil
	}
	n, err := decodeTable(data)
	if err != nil {
		return locate("", data, err)
	}
	*t = *n
	return nil
}

// A posError is a problem at a byte offset of the document being read.
type posError struct {
	off  int64
	msg  string
	kind error // ErrCorrupt or ErrTooLarge
}

func (e *posError) Error() string { return fmt.Sprintf("byte %d: %s", e.off, e.msg) }
func (e *posError) Unwrap() error { return e.kind }

// A docError is a posError placed by line and column, in a file when path is
// set.
type docError struct {
	path      string
	line, col int
	msg       string
	kind      error
}

func (e *docError) Error() string {
	if e.path == "" {
		return fmt.Sprintf("iptable: line %d, column %d: %s", e.line, e.col, e.msg)
	}
	return fmt.Sprintf("iptable: %s:%d:%d: %v: %s (the file was left as it is: fix it, or move it aside to start with an empty table)",
		e.path, e.line, e.col, e.kind, e.msg)
}

func (e *docError) Unwrap() error { return e.kind }

// locate turns a posError from reading data into a docError naming path.
func locate(path string, data []byte, err error) error {
	var pe *posError
	if !errors.As(err, &pe) {
		return err
	}
	off := min(max(pe.off, 0), int64(len(data)))
	head := data[:off]
	line := 1 + bytes.Count(head, []byte{'\n'})
	col := int(off) - bytes.LastIndexByte(head, '\n')
	return &docError{path: path, line: line, col: col, msg: pe.msg, kind: pe.kind}
}

// decoder walks one JSON document token by token, so that keys are seen in
// order and every problem can be given a position.
type decoder struct {
	data []byte
	dec  *json.Decoder
}

func newDecoder(data []byte) *decoder {
	return &decoder{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
}

// here is the offset of the next token: past white space and separators.
func (d *decoder) here() int64 {
	off := d.dec.InputOffset()
	for off < int64(len(d.data)) {
		switch d.data[off] {
		case ' ', '\t', '\r', '\n', ':', ',':
			off++
			continue
		}
		break
	}
	return off
}

func (d *decoder) fail(off int64, format string, args ...any) error {
	return &posError{off: off, msg: fmt.Sprintf(format, args...), kind: ErrCorrupt}
}

// wrap places an error from encoding/json.
func (d *decoder) wrap(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// Inside a value read whole (a kept key's), the decoder counts
		// offsets from where that read began; scanning the whole
		// document again finds the error's place in it.
		var whole *json.SyntaxError
		if errors.As(json.Unmarshal(d.data, new(json.RawMessage)), &whole) {
			se = whole
		}
		return d.fail(se.Offset-1, "%v", se)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return d.fail(int64(len(d.data)), "unexpected end of file (is it cut short?)")
	}
	return d.fail(d.here(), "%v", err)
}

// open reads the token that opens an object or array.
func (d *decoder) open(delim json.Delim, what string) error {
	at := d.here()
	tok, err := d.dec.Token()
	if err != nil {
		return d.wrap(err)
	}
	if tok != delim {
		return d.fail(at, "%s must be a JSON %s", what, map[json.Delim]string{'{': "object", '[': "list"}[delim])
	}
	return nil
}

// close reads the token that closes an object or array once More is false.
func (d *decoder) close() error {
	if _, err := d.dec.Token(); err != nil {
		return d.wrap(err)
	}
	return nil
}

// end checks that nothing but white space follows the document.
func (d *decoder) end() error {
	at := d.here()
	_, err := d.dec.Token()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return d.wrap(err)
	}
	return d.fail(at, "unexpected data after the end of the document")
}

func (d *decoder) key() (string, error) {
	at := d.here()
	tok, err := d.dec.Token()
	if err != nil {
		return "", d.wrap(err)
	}
	k, ok := tok.(string)
	if !ok {
		return "", d.fail(at, "want an object key")
	}
	return k, nil
}

// raw reads one whole value, exactly as written.
func (d *decoder) raw() (json.RawMessage, error) {
	var raw json.RawMessage
	if err := d.dec.Decode(&raw); err != nil {
		return nil, d.wrap(err)
	}
	return bytes.TrimSpace(raw), nil
}

func decodeTable(data []byte) (*Table, error) {
	d := newDecoder(data)
	t := &Table{}
	if err := d.open('{', `the IP table ({"ip_address": [...]})`); err != nil {
		return nil, err
	}
	for d.dec.More() {
		key, err := d.key()
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(key, keyEntries) {
			if t.Entries, err = d.entries(); err != nil {
				return nil, err
			}
			continue
		}
		raw, err := d.raw()
		if err != nil {
			return nil, err
		}
		t.Extra = put(t.Extra, key, raw)
	}
	if err := d.close(); err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return t, nil
}

// entries reads the value of "ip_address": a list of entries, or null.
func (d *decoder) entries() ([]Entry, error) {
	at := d.here()
	tok, err := d.dec.Token()
	if err != nil {
		return nil, d.wrap(err)
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('[') {
		return nil, d.fail(at, "%q must be a JSON list of entries", keyEntries)
	}
	var entries []Entry
	for i := 0; d.dec.More(); i++ {
		if i == maxDecodedEntries {
			return nil, &posError{off: d.here(), msg: fmt.Sprintf("more than %d entries", maxDecodedEntries), kind: ErrTooLarge}
		}
		var e Entry
		if err := d.entry(&e, fmt.Sprintf("%s[%d]", keyEntries, i)); err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, d.close()
}

// entry reads one entry object into e; where names it in error messages.
func (d *decoder) entry(e *Entry, where string) error {
	if err := d.open('{', where); err != nil {
		return err
	}
	for d.dec.More() {
		key, err := d.key()
		if err != nil {
			return err
		}
		at := d.here()
		raw, err := d.raw()
		if err != nil {
			return err
		}
		f := lookupField(key)
		if f == nil {
			e.Extra = put(e.Extra, key, raw)
			continue
		}
		if err := f.decode(e, raw); err != nil {
			return d.fail(at, "%s %q: %v", where, key, err)
		}
	}
	return d.close()
}

func put(m map[string]json.RawMessage, k string, v json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		m = make(map[string]json.RawMessage)
	}
	m[k] = v
	return m
}
