package tunnel

import (
	"context"
	"net"
)

// dial opens a connection to the relay at addr, its control address. It is
// the one place p2prc connects to a relay: node sessions, --relay auto,
// probes and listings all come through here, so whatever that connection
// needs (TLS, certificate pinning) is added here, once.
func (n *Node) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: n.cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tuneTCP(conn, n.cfg.PeerTimeout)
	return conn, nil
}
