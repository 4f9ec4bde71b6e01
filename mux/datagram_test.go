package mux

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
	"testing/iotest"
)

func TestDatagramWireNumbersArePinned(t *testing.T) {
	if DatagramData != 1 || DatagramOpen != 2 || DatagramClose != 3 {
		t.Error("datagram types moved")
	}
	if DatagramHeaderSize != 7 || MaxDatagramSize != 65535 {
		t.Errorf("header %d bytes, max payload %d; want 7 and 65535", DatagramHeaderSize, MaxDatagramSize)
	}
	b, _ := AppendDatagram(nil, DatagramData, 0x01020304, []byte{0xAA, 0xBB})
	want := []byte{1, 1, 2, 3, 4, 0, 2, 0xAA, 0xBB}
	if !bytes.Equal(b, want) {
		t.Errorf("frame % x, want % x", b, want)
	}
}

// sizes are the datagram sizes a UDP user may send, the empty one included.
var sizes = []int{0, 1, 1400, 8000, 60000, 65507, MaxDatagramSize}

func encodeAll(t testing.TB, sizes []int) ([]byte, []Datagram) {
	var wire []byte
	var want []Datagram
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte(i + 1)}, n)
		g := Datagram{Type: DatagramType(1 + i%3), Flow: uint32(i * 1000003), Payload: p}
		var err error
		if wire, err = AppendDatagram(wire, g.Type, g.Flow, g.Payload); err != nil {
			t.Fatal(err)
		}
		want = append(want, g)
	}
	return wire, want
}

// Frames come back whole and in order however the stream splits them.
func TestDatagramRoundTrip(t *testing.T) {
	wire, want := encodeAll(t, sizes)
	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(wire) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(wire)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(wire)) },
		"data+EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(wire)) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			d := NewDatagramReader(mk(), 0)
			for i, w := range want {
				if typ, flow, ok := d.Peek(); ok && (typ != w.Type || flow != w.Flow) {
					t.Fatalf("frame %d: Peek says %v flow %d, want %v flow %d", i, typ, flow, w.Type, w.Flow)
				}
				g, err := d.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if g.Type != w.Type || g.Flow != w.Flow || !bytes.Equal(g.Payload, w.Payload) {
					t.Fatalf("frame %d: got %v flow %d with %d bytes, want %v flow %d with %d bytes",
						i, g.Type, g.Flow, len(g.Payload), w.Type, w.Flow, len(w.Payload))
				}
			}
			if _, err := d.Next(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

// Payloads gathered while Peek reports whole frames stay intact: a run of
// datagrams can be sent at once.
func TestDatagramPeekKeepsPayloads(t *testing.T) {
	var wire []byte
	for i := range 50 {
		wire, _ = AppendDatagram(wire, DatagramData, 1, bytes.Repeat([]byte{byte(i)}, 1400))
	}
	d := NewDatagramReader(iotest.HalfReader(bytes.NewReader(wire)), 0)
	seen := 0
	for seen < 50 {
		g, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		run := [][]byte{g.Payload}
		for _, _, ok := d.Peek(); ok; _, _, ok = d.Peek() {
			g, _ := d.Next()
			run = append(run, g.Payload)
		}
		for i, p := range run {
			if !bytes.Equal(p, bytes.Repeat([]byte{byte(seen + i)}, 1400)) {
				t.Fatalf("datagram %d of a run was overwritten", seen+i)
			}
		}
		seen += len(run)
	}
}

// A stream that ends inside a frame is an unexpected EOF, never a short
// datagram passed on as if whole.
func TestDatagramTruncated(t *testing.T) {
	wire, _ := AppendDatagram(nil, DatagramData, 7, bytes.Repeat([]byte{1}, 1400))
	for _, cut := range []int{1, DatagramHeaderSize - 1, DatagramHeaderSize, len(wire) - 1} {
		d := NewDatagramReader(bytes.NewReader(wire[:cut]), 0)
		if g, err := d.Next(); err != io.ErrUnexpectedEOF {
			t.Errorf("cut at %d: got %d bytes, err %v; want io.ErrUnexpectedEOF", cut, len(g.Payload), err)
		}
	}
}

func TestAppendDatagramRefusesOversize(t *testing.T) {
	b, err := AppendDatagram([]byte{9}, DatagramData, 1, make([]byte, MaxDatagramSize+1))
	if !errors.Is(err, ErrDatagramTooLarge) || len(b) != 1 {
		t.Fatalf("got %d bytes, err %v; want the buffer untouched and ErrDatagramTooLarge", len(b), err)
	}
}

func TestOpenFrame(t *testing.T) {
	for _, s := range []string{"203.0.113.9:5353", "[2001:db8::1]:53", "[fe80::1%eth0]:9"} {
		ap := netip.MustParseAddrPort(s)
		b, err := AppendOpen(nil, 42, ap)
		if err != nil {
			t.Fatal(err)
		}
		g, err := NewDatagramReader(bytes.NewReader(b), 0).Next()
		if err != nil || g.Type != DatagramOpen || g.Flow != 42 {
			t.Fatalf("%s: %+v, %v", s, g, err)
		}
		got, err := OpenVisitor(g.Payload)
		if err != nil || got != ap {
			t.Errorf("%s: decoded %v, %v", s, got, err)
		}
	}
	for _, bad := range [][]byte{{1, 2, 3}, bytes.Repeat([]byte{1}, 70)} {
		if _, err := OpenVisitor(bad); err == nil {
			t.Errorf("OpenVisitor(% x) succeeded", bad)
		}
	}
}

// FuzzDatagramReader feeds arbitrary bytes to the reader: it never panics,
// never returns more than it was given, and each frame it returns encodes
// back to the bytes it came from.
func FuzzDatagramReader(f *testing.F) {
	wire, _ := encodeAll(f, []int{0, 1, 3, 1400})
	f.Add(wire)
	f.Add([]byte{1, 0, 0, 0, 1, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewDatagramReader(bytes.NewReader(in), 0)
		var again []byte
		for {
			g, err := d.Next()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if again, err = AppendDatagram(again, g.Type, g.Flow, g.Payload); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.HasPrefix(in, again) {
			t.Fatalf("re-encoded frames are not a prefix of the input")
		}
	})
}

func BenchmarkAppendDatagram1400(b *testing.B) {
	p := make([]byte, 1400)
	buf := make([]byte, 0, 64<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendDatagram(buf[:0], DatagramData, 1, p)
	}
}

// loopReader serves the same bytes forever, as a busy stream would.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func BenchmarkDatagramReader1400(b *testing.B) {
	var wire []byte
	for range 64 {
		wire, _ = AppendDatagram(wire, DatagramData, 1, make([]byte, 1400))
	}
	d := NewDatagramReader(&loopReader{data: wire}, 128<<10)
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
