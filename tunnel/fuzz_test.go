package tunnel

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
)

func FuzzParsePublicPort(f *testing.F) {
	for _, s := range []string{"tcp:30022", "udp:1", "TCP:65535", "tcp:0", "x:1", ":", "tcp:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePublicPort(s)
		if err != nil {
			return
		}
		if (p.Network != "tcp" && p.Network != "udp") || p.Port < 1 || p.Port > 65535 {
			t.Fatalf("ParsePublicPort(%q) = %+v", s, p)
		}
		if back, err := ParsePublicPort(p.String()); err != nil || back != p {
			t.Fatalf("%v does not parse back: %+v %v", p, back, err)
		}
	})
}

// FuzzRelayConn sends a relay whatever a stranger might, as the first bytes
// of a connection: the relay must end the connection within its handshake
// deadline, allocate nothing, and never panic.
func FuzzRelayConn(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5})
	f.Add(yamuxHello(f, `{"version":1,"name":"n","identity":"AAAA","nonce":"AAAA"}`))
	f.Add(yamuxHello(f, `{"version":2}`))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

	maps, err := registry.OpenMappings(filepath.Join(f.TempDir(), registry.MappingFileName))
	if err != nil {
		f.Fatal(err)
	}
	r, err := NewRelay(RelayConfig{
		Name: "fuzz", PublicHost: "127.0.0.1", Token: []byte("fuzz-token"),
		Ports: portalloc.Range{Lo: 40000, Hi: 40001}, Mappings: maps,
		HandshakeTimeout: 200 * time.Millisecond,
		// Every input comes from the same pipe "address"; failures must not
		// turn later inputs away.
		Limits: Limits{AuthFailuresPerMinute: 1 << 30},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		node, relay := net.Pipe()
		defer node.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.serveConn(context.Background(), relay)
		}()
		go io.Copy(io.Discard, node)
		go func() {
			node.Write(data) // the relay may stop reading part-way; Close below ends it
			node.Close()     // then the stranger hangs up
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the relay held a connection beyond its handshake deadline")
		}
		if r.Sessions() != 0 || len(maps.List()) != 0 {
			t.Fatal("a stranger got a session or a mapping")
		}
	})
}

// yamuxHello is a yamux stream opening carrying one hello frame.
func yamuxHello(f *testing.F, payload string) []byte {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	out := make(chan []byte)
	go func() {
		buf := make([]byte, 4096)
		var got []byte
		b.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := b.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				out <- got
				return
			}
		}
	}()
	ym, err := mux.Client(mux.NewWire(a), mux.SessionConfig{})
	if err != nil {
		f.Fatal(err)
	}
	st, err := ym.OpenStream()
	if err != nil {
		f.Fatal(err)
	}
	frame := append([]byte{byte(mux.TypeHello), 0, 0, 0, byte(len(payload))}, payload...)
	st.Write(frame) // returns once the pipe's reader has it
	ym.Close()
	return <-out
}
