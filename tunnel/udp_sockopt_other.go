//go:build !linux

package tunnel

import "net"

// setUDPBuffers gives c kernel buffers of size bytes each way, as far as the
// system allows.
func setUDPBuffers(c *net.UDPConn, size int) {
	c.SetReadBuffer(size)
	c.SetWriteBuffer(size)
}
