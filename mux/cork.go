package mux

import (
	"net"
	"sync"
)

// CorkConn sits under a TLS connection and lets the gathering writer send a
// whole batch with one system call. crypto/tls writes each record (16 KiB
// at most) with a write of its own, so a 256 KiB batch would cost sixteen;
// while corked, CorkConn collects the records and sends them together when
// uncorked. Uncorked, it writes straight through (the TLS handshake, alerts).
type CorkConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	buf    []byte
}

// NewCorkConn wraps c, the TCP connection a TLS connection will run on.
func NewCorkConn(c net.Conn) *CorkConn { return &CorkConn{Conn: c} }

// maxCorkKeep is the largest buffer kept between batches.
const maxCorkKeep = 1 << 20

func (c *CorkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.corked {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// cork starts collecting writes.
func (c *CorkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork sends what was collected, with one write, and writes straight
// through again.
func (c *CorkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > maxCorkKeep {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}
