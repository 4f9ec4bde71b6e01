package mux

import (
	"bytes"
	"net"
	"testing"
)

// writeCounter is a net.Conn that records each Write.
type writeCounter struct {
	net.Conn
	writes [][]byte
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// While corked, writes are collected and leave as one; uncorked, they pass
// straight through.
func TestCorkConnCollectsABatch(t *testing.T) {
	under := &writeCounter{}
	c := NewCorkConn(under)
	c.Write([]byte("hello ")) // straight through
	c.cork()
	for _, rec := range []string{"one ", "two ", "three"} {
		if n, err := c.Write([]byte(rec)); n != len(rec) || err != nil {
			t.Fatalf("corked Write = %d, %v", n, err)
		}
	}
	if len(under.writes) != 1 {
		t.Fatalf("%d writes reached the connection while corked, want only the one before", len(under.writes))
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(under.writes) != 2 || string(under.writes[1]) != "one two three" {
		t.Fatalf("after uncork the connection saw %q, want one write of the batch", under.writes)
	}
	c.uncork() // nothing collected: no empty write
	if len(under.writes) != 2 {
		t.Fatalf("an empty uncork wrote: %q", under.writes)
	}
}
