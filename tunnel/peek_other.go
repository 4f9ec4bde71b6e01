//go:build !unix

package tunnel

import "net"

// peekTCP is not available here; the caller reads the byte instead.
func peekTCP(c *net.TCPConn) (b byte, ok bool, err error) { return 0, false, nil }
