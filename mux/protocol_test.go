package mux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/p2prc/p2prc/iptable"
)

// The wire numbers never change; this pins them.
func TestWireNumbersArePinned(t *testing.T) {
	pinned := map[Type]uint8{
		TypeHello: 1, TypeChallenge: 2, TypeAuth: 3, TypeWelcome: 4, TypeExpose: 5, TypeGrant: 6,
		TypeError: 7, TypePing: 8, TypePong: 9, TypeClose: 10, TypeReset: 11,
		TypeExchange: 12, TypeListMappings: 13, TypeMappingList: 14, TypeRelease: 15,
	}
	for typ, want := range pinned {
		if uint8(typ) != want {
			t.Errorf("%v = %d, want %d", typ, uint8(typ), want)
		}
		if m := newMessage(typ); m == nil || m.Type() != typ {
			t.Errorf("newMessage(%v) = %T", typ, m)
		}
	}
	if TypeRelease.String() != "release" {
		t.Errorf("type 15 is called %q", TypeRelease)
	}
	if !CodeTLS.Fatal() || CodeTLS != "tls" {
		t.Error("code tls must be fatal and spelled tls")
	}
	if frameHeaderSize != 5 || Version != 1 {
		t.Errorf("frame header %d bytes, version %d; want 5 and 1", frameHeaderSize, Version)
	}
	if KindTCP != 1 || KindUDP != 2 || StatusOK != 0 || StatusRefused != 1 || StatusUnknownMapping != 2 {
		t.Error("stream kinds or statuses moved")
	}
}

func TestFrameRoundTrip(t *testing.T) {
	msgs := []Message{
		&Hello{Version: 1, Name: "n1", Identity: bytes.Repeat([]byte{7}, 32), Nonce: bytes.Repeat([]byte{1}, 32)},
		&Challenge{Version: 1, Relay: "r", Nonce: bytes.Repeat([]byte{2}, 32)},
		&Auth{MAC: []byte{1, 2}, Signature: []byte{3}},
		&Welcome{Relay: "r", PublicHost: "203.0.113.7", NodeID: "abc", Proof: []byte{9}},
		&Expose{ID: 3, Network: "tcp", Local: "127.0.0.1:22", WantedPort: 30022},
		&Grant{ID: 3, Network: "tcp", Port: 30022, PublicHost: "203.0.113.7", Relay: "r"},
		&Error{ID: 3, Code: CodeOwned, Text: "owned"},
		&Ping{Seq: 1 << 40},
		&Pong{Seq: 5},
		&Close{Code: CodeShutdown, Reason: "bye"},
		&Reset{Stream: 42},
		&Hello{Version: 1, Name: "probe", Identity: bytes.Repeat([]byte{7}, 32), Nonce: bytes.Repeat([]byte{1}, 32), Query: true},
		exampleExchange(),
		&Exchange{Relays: []RelayInfo{}, IPTable: []iptable.Entry{}},
		&ListMappings{ID: 9},
		&MappingList{ID: 9, Mappings: []MappingInfo{{Network: "tcp", Port: 30022, PublicHost: "203.0.113.7",
			Relay: "r", Node: "home", Local: "127.0.0.1:22", Created: 1735689600, LastSeen: 1735693200}}},
		&Release{ID: 3, Network: "tcp", Port: 30022},
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		b, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	for _, want := range msgs {
		got, err := ReadFrame(&buf, DefaultMaxFrameSize)
		if err != nil {
			t.Fatalf("reading %v: %v", want.Type(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, want %#v", got, want)
		}
	}
	if _, err := ReadFrame(&buf, DefaultMaxFrameSize); err != io.EOF {
		t.Errorf("after the last frame: %v, want io.EOF", err)
	}
}

func frame(typ byte, payload string) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func TestReadFrameRefusals(t *testing.T) {
	huge := []byte{byte(TypePing), 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"oversized frame is refused before reading it", huge, ErrFrameTooLarge},
		{"unknown type", frame(200, `{}`), ErrUnknownType},
		{"malformed payload", frame(byte(TypeExpose), `{"id":"x"}`), ErrMalformed},
		{"not json", frame(byte(TypePing), `garbage`), ErrMalformed},
		{"truncated header", []byte{1, 0}, io.ErrUnexpectedEOF},
		{"truncated payload", frame(byte(TypePing), `{"seq":1}`)[:8], io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.in), 1024)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// An unknown message is consumed whole, so the next frame still reads.
func TestUnknownTypeKeepsStreamInSync(t *testing.T) {
	in := append(frame(99, `{"future":true}`), frame(byte(TypePing), `{"seq":7}`)...)
	r := bytes.NewReader(in)
	if _, err := ReadFrame(r, 1024); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("first frame: %v", err)
	}
	m, err := ReadFrame(r, 1024)
	if err != nil || m.(*Ping).Seq != 7 {
		t.Fatalf("second frame: %v %v", m, err)
	}
}

func TestStreamHeaderRoundTrip(t *testing.T) {
	for _, visitor := range []string{"203.0.113.9:50000", "[2001:db8::1]:443", "127.0.0.1:1"} {
		h := StreamHeader{Kind: KindTCP, Port: 30001, Visitor: mustAddrPort(t, visitor)}
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadStreamHeader(bytes.NewReader(append(b, "data"...)))
		if err != nil || got != h {
			t.Fatalf("got %+v, %v; want %+v", got, err, h)
		}
	}
}

func TestStreamHeaderRefusals(t *testing.T) {
	tests := map[string][]byte{
		"bad version":  {9, 1, 0, 1, 0},
		"bad kind":     {1, 7, 0, 1, 0},
		"long address": {1, 1, 0, 1, 200},
		"bad address":  {1, 1, 0, 1, 3, 1, 2, 3},
	}
	for name, in := range tests {
		if _, err := ReadStreamHeader(bytes.NewReader(in)); !errors.Is(err, ErrBadStreamHeader) {
			t.Errorf("%s: err = %v, want ErrBadStreamHeader", name, err)
		}
	}
	if _, err := ReadStreamHeader(strings.NewReader("\x01\x01")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short header: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(frame(byte(TypeHello), `{"version":1,"name":"n"}`))
	f.Add(frame(byte(TypeExpose), `{"id":1,"network":"tcp","local":"127.0.0.1:22","wanted_port":0}`))
	f.Add(frame(byte(TypeError), `{"id":0,"code":"auth","text":"x"}`))
	f.Add(frame(250, `{}`))
	f.Add([]byte{byte(TypePing), 0xff, 0xff, 0xff, 0xff})
	f.Add(frame(byte(TypeExchange), `{"relays":[{"name":"r","address":"203.0.113.7:8700"}],`+
		`"ip_table":[{"ipv4":"198.51.100.1","serverport":8088,"Future":{"a": [1, "<b>"]}},null]}`))
	f.Add(frame(byte(TypeListMappings), `{"id":4}`))
	f.Add(frame(byte(TypeMappingList), `{"id":4,"mappings":[{"network":"tcp","port":30001,"created":1}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ReadFrame(bytes.NewReader(in), 4096)
		if err != nil {
			return
		}
		// What decodes must encode and decode to the same message.
		b, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", m, err)
		}
		again, err := ReadFrame(bytes.NewReader(b), 1<<20)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed %#v into %#v (%v)", m, again, err)
		}
	})
}

func FuzzReadStreamHeader(f *testing.F) {
	f.Add([]byte{1, 1, 0x75, 0x31, 6, 127, 0, 0, 1, 0x50, 0})
	f.Add([]byte{1, 2, 0, 53, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := ReadStreamHeader(bytes.NewReader(in))
		if err != nil {
			return
		}
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", h, err)
		}
		again, err := ReadStreamHeader(bytes.NewReader(b))
		if err != nil || again != h {
			t.Fatalf("round trip changed %+v into %+v (%v)", h, again, err)
		}
	})
}
