package mux

import (
	"net"
	"sync"
	"time"
)

// Conn is a control stream: it sends and receives framed messages. Send is
// safe for concurrent use; Recv must be called from one goroutine at a time.
type Conn struct {
	c        net.Conn
	maxFrame int

	wmu  sync.Mutex
	wbuf []byte
}

// NewConn wraps c, usually the first yamux stream of a session. maxFrame caps
// the payload of a received frame; zero means DefaultMaxFrameSize.
func NewConn(c net.Conn, maxFrame int) *Conn {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrameSize
	}
	return &Conn{c: c, maxFrame: maxFrame}
}

// Send writes m as one frame with a single write, so that a frame never
// interleaves with another and travels as one yamux data frame.
func (c *Conn) Send(m Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := AppendFrame(c.wbuf[:0], m)
	if err != nil {
		return err
	}
	_, err = c.c.Write(b)
	if cap(b) <= 4096 {
		c.wbuf = b // keep small buffers; let a large listing go
	}
	return err
}

// Recv reads the next message. See ReadFrame for the errors.
func (c *Conn) Recv() (Message, error) {
	return ReadFrame(c.c, c.maxFrame)
}

// capFrames lowers the cap on received frames to n until restore is called.
// Recv's goroutine calls it, between reads.
func (c *Conn) capFrames(n int) (restore func()) {
	old := c.maxFrame
	c.maxFrame = min(old, n)
	return func() { c.maxFrame = old }
}

// SetDeadline bounds both Send and Recv; the zero time clears it.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// SetReadDeadline bounds Recv; the zero time clears it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// Close closes the underlying stream.
func (c *Conn) Close() error { return c.c.Close() }
