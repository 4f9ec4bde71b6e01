package mux

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"sync/atomic"
	"time"
)

// yamux's frame header, as its spec.md lays it out: version, type, flags,
// stream ID, length. Only what Wire needs to recognise a data frame.
const (
	yamuxHeaderSize   = 1 + 1 + 2 + 4 + 4
	yamuxTypeOffset   = 1
	yamuxLengthOffset = 8
	yamuxTypeData     = 0
)

// Wire is the connection under a yamux session. It does three things yamux
// does not:
//
//   - It sends each data frame with one system call. yamux writes a frame's
//     12-byte header and its body as two writes; Wire holds the header of a
//     data frame until its body arrives and sends both together. yamux's
//     send loop is the only writer and always writes a body right after
//     its header.
//   - It gathers the frames that are ready at once into one write and
//     takes the writing off yamux's send loop (see gather.go), so a burst
//     of requests on many streams costs one system call, not one each, and
//     a bulk stream reads while it writes.
//   - It remembers when bytes last arrived, so a session can tell a silent
//     peer from a busy one (see SilentFor).
type Wire struct {
	conn io.ReadWriteCloser
	out  *gatherer

	lastRead atomic.Int64 // unix nanoseconds

	hdr     [yamuxHeaderSize]byte
	holding bool
}

// NewWire wraps conn, a *net.TCPConn or a *tls.Conn, for a session.
func NewWire(conn io.ReadWriteCloser) *Wire {
	w := &Wire{conn: conn, out: newGatherer(conn)}
	if tc, ok := conn.(*tls.Conn); ok {
		w.out.cork, _ = tc.NetConn().(*CorkConn) // a batch's records leave together
	}
	w.lastRead.Store(time.Now().UnixNano())
	return w
}

// Read reads from the connection and notes that the peer spoke.
func (w *Wire) Read(p []byte) (int, error) {
	n, err := w.conn.Read(p)
	if n > 0 {
		w.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

// SilentFor is how long the peer has sent nothing. Any byte counts — data,
// a window update, a pong — so a ping starved behind a bulk transfer cannot
// make a live peer look silent.
func (w *Wire) SilentFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, w.lastRead.Load()))
}

// Write is called by yamux's send loop only. A frame may still be on its
// way when Write returns; Close gives it time to leave.
func (w *Wire) Write(p []byte) (int, error) {
	var err error
	switch {
	case w.holding:
		w.holding = false
		err = w.out.enqueue(w.hdr[:], p)
	case len(p) == yamuxHeaderSize && p[yamuxTypeOffset] == yamuxTypeData &&
		binary.BigEndian.Uint32(p[yamuxLengthOffset:]) > 0:
		copy(w.hdr[:], p)
		w.holding = true
	default:
		err = w.out.enqueue(nil, p)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes what Write has accepted, waiting up to a second for a live
// peer to take it, then closes the connection. Safe to call more than once.
func (w *Wire) Close() error {
	var setDeadline func(time.Time) error
	if c, ok := w.conn.(interface{ SetWriteDeadline(time.Time) error }); ok {
		setDeadline = c.SetWriteDeadline
	}
	return w.out.close(setDeadline, w.conn.Close)
}
