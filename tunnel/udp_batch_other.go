//go:build !(linux && (amd64 || arm64))

package tunnel

import (
	"net"
	"net/netip"
)

// udpReader reads a public port's datagrams one at a time.
type udpReader struct {
	c    *net.UDPConn
	buf  []byte
	n    int
	from netip.AddrPort
}

func newUDPReader(c *net.UDPConn) *udpReader {
	return &udpReader{c: c, buf: make([]byte, maxUDPPayload)}
}

// read waits for a datagram (honouring the read deadline).
func (r *udpReader) read() (int, error) {
	n, from, err := r.c.ReadFromUDPAddrPort(r.buf)
	if err != nil {
		return 0, err
	}
	r.n, r.from = n, from
	return 1, nil
}

func (r *udpReader) datagram(int) ([]byte, netip.AddrPort) { return r.buf[:r.n], r.from }

func (r *udpReader) release() {}

// udpWriter writes datagrams to connected sockets one at a time.
type udpWriter struct{}

// write sends payloads in order on c and returns how many c refused.
func (w *udpWriter) write(c *net.UDPConn, payloads [][]byte) (failed int) {
	for _, p := range payloads {
		if _, err := c.Write(p); err != nil {
			failed++
		}
	}
	return failed
}

// writeTo sends payloads[i] to to[i] on c and returns how many failed.
func (w *udpWriter) writeTo(c *net.UDPConn, payloads [][]byte, to []netip.AddrPort) (failed int) {
	for i, p := range payloads {
		if _, err := c.WriteToUDPAddrPort(p, to[i]); err != nil {
			failed++
		}
	}
	return failed
}
