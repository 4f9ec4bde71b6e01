package mux

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// countingConn records each Write as one call.
type countingConn struct {
	writes [][]byte
	r      io.Reader
}

func (c *countingConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *countingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}
func (c *countingConn) Close() error { return nil }

func yamuxHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[yamuxTypeOffset] = typ
	binary.BigEndian.PutUint32(h[yamuxLengthOffset:], length)
	return h
}

// A data frame's header and body leave as one write; other frames as they come.
func TestWireMergesDataFrames(t *testing.T) {
	c := &countingConn{}
	w := NewWire(c)
	body := []byte("hello")
	writes := [][]byte{
		yamuxHeader(yamuxTypeData, uint32(len(body))), body,
		yamuxHeader(1, 1024), // a window update: no body follows
		yamuxHeader(yamuxTypeData, 0),
	}
	for _, p := range writes {
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
	if len(c.writes) != 3 {
		t.Fatalf("%d writes reached the connection, want 3", len(c.writes))
	}
	if want := append(yamuxHeader(yamuxTypeData, 5), body...); !bytes.Equal(c.writes[0], want) {
		t.Errorf("first write %x, want header and body %x", c.writes[0], want)
	}
}

// On TCP the merge is one writev; the bytes arrive in order.
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
	if !w.vectored {
		t.Fatal("a TCP connection was not recognised for writev")
	}
	hdr, body := yamuxHeader(yamuxTypeData, 3), []byte("abc")
	w.Write(hdr)
	w.Write(body)
	w.Close()
	if b := <-got; !bytes.Equal(b, append(hdr, body...)) {
		t.Fatalf("received %x", b)
	}
}

func TestWireSilentFor(t *testing.T) {
	w := NewWire(&countingConn{r: bytes.NewReader([]byte("x"))})
	later := time.Now().Add(time.Minute)
	if s := w.SilentFor(later); s < 59*time.Second {
		t.Fatalf("silent for %v after a minute without reads", s)
	}
	w.Read(make([]byte, 1))
	if s := w.SilentFor(time.Now()); s > time.Second {
		t.Fatalf("silent for %v right after a read", s)
	}
}
