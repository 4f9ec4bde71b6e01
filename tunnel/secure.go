package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/p2prc/p2prc/mux"
)

// The first byte a node sends says which mode it speaks: a TLS handshake
// record starts with 0x16, a plaintext yamux session with its version, 0.
const (
	firstByteTLS   = 0x16
	firstByteYamux = 0x00
)

// plaintextNotice is what a plaintext relay answers a node that starts TLS.
// The node's TLS client reads its first five bytes as a record header and
// fails with a tls.RecordHeaderError holding them, so "P2PRC" tells the node
// exactly what happened; the rest is for a person with a packet capture.
const plaintextNotice = "P2PRC relay: this relay runs with --insecure-plaintext and does not speak TLS\n"

// errNotANode: the connection's first byte is neither TLS nor yamux.
var errNotANode = errors.New("not a p2prc node")

// errNodeTriedTLS: a node started TLS, and this relay runs plaintext.
var errNodeTriedTLS = errors.New("a node started TLS, but this relay runs with --insecure-plaintext; it was told so")

// secure reads the first byte of c and, by the relay's mode, returns the
// connection to run yamux on. In TLS mode that is the TLS connection after
// its handshake; a plaintext node gets back c and a refusal to send it over
// yamux. In plaintext mode a node that starts TLS is told so and refused.
// The caller's deadline on c bounds it all.
func (r *Relay) secure(ctx context.Context, c net.Conn) (net.Conn, *mux.Error, error) {
	first, pc, err := peekFirstByte(c)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case first != firstByteTLS && first != firstByteYamux:
		return nil, nil, fmt.Errorf("%w: its first byte is 0x%02x", errNotANode, first)
	case r.cfg.TLS == nil && first == firstByteTLS:
		tellTLSNode(c)
		return nil, nil, errNodeTriedTLS
	case r.cfg.TLS == nil:
		return pc, nil, nil
	case first == firstByteYamux:
		return pc, &mux.Error{Code: mux.CodeTLS, Text: "this relay requires TLS: remove --insecure-plaintext from the node, and pin the relay with --relay-fingerprint (the fingerprint the relay prints at start)"}, nil
	}
	tc := tls.Server(mux.NewCorkConn(pc), r.cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil, nil
}

// tellTLSNode answers a TLS ClientHello with plaintextNotice. It then reads
// what the node sent until the node hangs up (within the caller's deadline):
// closing with its ClientHello unread would reset the connection, and the
// node could lose the notice.
func tellTLSNode(c net.Conn) {
	io.WriteString(c, plaintextNotice)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// peekFirstByte returns the first byte c will read, and the connection to
// read from afterwards. A TCP connection is peeked (MSG_PEEK), so the caller
// keeps the *net.TCPConn itself and everything it offers (writev, socket
// options); any other connection is read, and wrapped to give the byte back.
func peekFirstByte(c net.Conn) (byte, net.Conn, error) {
	if tc, ok := c.(*net.TCPConn); ok {
		if b, ok, err := peekTCP(tc); ok {
			return b, c, err
		}
	}
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return 0, nil, err
	}
	return first[0], &prefixConn{Conn: c, prefix: first[:]}, nil
}

// prefixConn is a connection whose first bytes were already read; Read
// returns them first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
