//go:build !unix

package tunnel

import (
	"net"
	"syscall"
)

// readDatagram reads one datagram from c into a buffer from udpBufs, which
// the caller puts back.
func readDatagram(c *net.UDPConn, _ syscall.RawConn) (buf *[]byte, n int, err error) {
	b := udpBufs.Get().(*[]byte)
	n, err = c.Read(*b)
	if err != nil {
		udpBufs.Put(b)
		return nil, 0, err
	}
	return b, n, nil
}
