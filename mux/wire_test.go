package mux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// countingConn records each Write as one call. If gate is set, each Write
// first waits for a value from it (or for Close).
type countingConn struct {
	mu      sync.Mutex
	writes  [][]byte
	r       io.Reader
	gate    chan struct{}
	entered chan struct{} // receives a value as each Write begins
	closed  chan struct{}
	err     error // returned by every Write, if set
}

func newCountingConn() *countingConn {
	return &countingConn{closed: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (c *countingConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *countingConn) Write(p []byte) (int, error) {
	select {
	case c.entered <- struct{}{}:
	default:
	}
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}
func (c *countingConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

// inWrite waits until a Write has begun.
func (c *countingConn) inWrite(t *testing.T) {
	t.Helper()
	select {
	case <-c.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no write began")
	}
}

// release lets one gated Write through.
func (c *countingConn) release(t *testing.T) {
	t.Helper()
	select {
	case c.gate <- struct{}{}:
	case <-time.After(5 * time.Second):
		t.Fatal("no write waited to be let through")
	}
}

// written returns the writes so far.
func (c *countingConn) written() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

func yamuxHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[yamuxTypeOffset] = typ
	binary.BigEndian.PutUint32(h[yamuxLengthOffset:], length)
	return h
}

// writeAll writes each of ps to w as yamux's send loop would.
func writeAll(t *testing.T, w *Wire, ps ...[]byte) {
	t.Helper()
	for _, p := range ps {
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
}

// A data frame's header and body leave in the same write, and every frame
// arrives, in order.
func TestWireMergesDataFrames(t *testing.T) {
	c := newCountingConn()
	w := NewWire(c)
	body := []byte("hello")
	large := bytes.Repeat([]byte{7}, 256<<10)
	frames := [][]byte{
		yamuxHeader(yamuxTypeData, uint32(len(body))), body,
		yamuxHeader(1, 1024), // a window update: no body follows
		yamuxHeader(yamuxTypeData, 0),
		yamuxHeader(yamuxTypeData, uint32(len(large))), large,
	}
	writeAll(t, w, frames...)
	w.Close()
	writes := c.written()
	if got, want := bytes.Join(writes, nil), bytes.Join(frames, nil); !bytes.Equal(got, want) {
		t.Fatalf("the connection got %x, want %x", got, want)
	}
	for _, frame := range [][]byte{append(yamuxHeader(yamuxTypeData, 5), body...), append(yamuxHeader(yamuxTypeData, uint32(len(large))), large...)} {
		if !slices.ContainsFunc(writes, func(b []byte) bool { return bytes.Contains(b, frame) }) {
			t.Errorf("a data frame of %d bytes was split across writes", len(frame)-yamuxHeaderSize)
		}
	}
}

// Small frames handed over while a write is in progress leave together in
// the next write: a burst costs two system calls, not one per frame.
func TestWireGathersReadyFrames(t *testing.T) {
	c := newCountingConn()
	c.gate = make(chan struct{})
	w := NewWire(c)
	frame := func(b byte) [][]byte { return [][]byte{yamuxHeader(yamuxTypeData, 3), {b, b, b}} }
	writeAll(t, w, frame(1)...)
	c.inWrite(t) // the flusher took it and waits in Write
	for b := byte(2); b <= 9; b++ {
		writeAll(t, w, frame(b)...)
	}
	c.release(t) // the first write
	c.release(t) // the second: everything else
	close(c.gate)
	w.Close()
	if writes := c.written(); len(writes) != 2 || len(writes[1]) != 8*(yamuxHeaderSize+3) {
		t.Fatalf("%d writes of %v bytes; want 2, the second holding 8 frames", len(writes), lens(writes))
	}
}

func lens(bs [][]byte) []int {
	var n []int
	for _, b := range bs {
		n = append(n, len(b))
	}
	return n
}

// What the gatherer holds is bounded: past gatherMax, the send loop waits
// for the write in progress.
func TestWireBoundsWhatItHolds(t *testing.T) {
	c := newCountingConn()
	c.gate = make(chan struct{})
	w := NewWire(c)
	body := make([]byte, 8<<10)
	hdr := yamuxHeader(yamuxTypeData, uint32(len(body)))
	writeAll(t, w, hdr, body)
	c.inWrite(t) // in flight, held at the gate
	held := 0
	for held+len(hdr)+len(body) <= gatherMax {
		writeAll(t, w, hdr, body)
		held += len(hdr) + len(body)
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		writeAll(t, w, hdr, body)
	}()
	select {
	case <-wrote:
		t.Fatalf("a frame was taken with %d bytes already held", held)
	case <-time.After(50 * time.Millisecond):
	}
	close(c.gate)
	<-wrote
	w.Close()
}

// A failed write fails every later one: the connection is unusable.
func TestWireWriteErrorSticks(t *testing.T) {
	c := newCountingConn()
	c.err = errors.New("broken pipe")
	w := NewWire(c)
	defer w.Close()
	hdr := yamuxHeader(1, 1) // a window update goes to the flusher
	w.Write(hdr)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := w.Write(hdr); err != nil {
			if err != c.err {
				t.Fatalf("Write: %v, want the connection's error", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes still succeed after the connection failed")
		}
		time.Sleep(time.Millisecond)
	}
}

// Close gives up on a peer that takes nothing, closes the connection, and
// leaves no goroutine behind; a second Close is harmless.
func TestWireCloseDoesNotHang(t *testing.T) {
	c := newCountingConn()
	c.gate = make(chan struct{}) // never opened
	w := NewWire(c)
	writeAll(t, w, yamuxHeader(1, 1))
	start := time.Now()
	w.Close()
	if d := time.Since(start); d > closeFlush+time.Second {
		t.Errorf("Close took %v", d)
	}
	select {
	case <-w.out.done:
	default:
		t.Error("the flusher outlived Close")
	}
	w.Close()
	if _, err := w.Write(yamuxHeader(1, 1)); err == nil {
		t.Error("a write after Close succeeded")
	}
}

// Over TCP, everything Write accepted has arrived, in order, once Close returns.
func TestWireOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := NewWire(c)
	hdr, body := yamuxHeader(yamuxTypeData, 3), []byte("abc")
	w.Write(hdr)
	w.Write(body)
	w.Close()
	if b := <-got; !bytes.Equal(b, append(hdr, body...)) {
		t.Fatalf("received %x", b)
	}
}

func TestWireSilentFor(t *testing.T) {
	c := newCountingConn()
	c.r = bytes.NewReader([]byte("x"))
	w := NewWire(c)
	defer w.Close()
	later := time.Now().Add(time.Minute)
	if s := w.SilentFor(later); s < 59*time.Second {
		t.Fatalf("silent for %v after a minute without reads", s)
	}
	w.lastRead.Store(time.Now().Add(-time.Hour).UnixNano()) // as if the last byte came an hour ago
	w.Read(make([]byte, 1))
	if s := w.SilentFor(time.Now()); s > time.Second {
		t.Fatalf("silent for %v right after a read", s)
	}
}
