package tunnel

import (
	"net"
	"syscall"
)

// setUDPBuffers gives c kernel buffers of size bytes each way. A burst at
// 1 Gbit/s overflows Linux's default 208 KiB in under 2 ms, so the relay's
// public sockets and the node's flow sockets ask for more. Unprivileged,
// the kernel caps the request at net.core.rmem_max / wmem_max; as root
// (CAP_NET_ADMIN) SO_RCVBUFFORCE and SO_SNDBUFFORCE pass that cap, which is
// what this tries first. The sizes are limits, not allocations: the kernel
// charges only what is queued.
func setUDPBuffers(c *net.UDPConn, size int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var rerr, werr error
	rc.Control(func(fd uintptr) {
		rerr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
		werr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, size)
	})
	if rerr != nil {
		c.SetReadBuffer(size)
	}
	if werr != nil {
		c.SetWriteBuffer(size)
	}
}
