package mux

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type result struct {
	peer    Peer
	welcome *Welcome
	err     error
}

// handshake runs both sides over a pipe and returns what each saw.
func handshake(t *testing.T, node NodeAuth, relay RelayAuth) (nodeSide, relaySide result) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	done := make(chan result, 1)
	go func() {
		p, err := NewConn(b, 0).RelayHandshake(relay, 2*time.Second)
		if err != nil {
			b.Close() // as a relay does: close after refusing
		}
		done <- result{peer: p, err: err}
	}()
	w, err := NewConn(a, 0).NodeHandshake(node, 2*time.Second)
	return result{welcome: w, err: err}, <-done
}

func TestHandshakeSucceeds(t *testing.T) {
	key := newKey(t)
	token := []byte("s3cret")
	n, r := handshake(t,
		NodeAuth{Name: "home-pc", Key: key, Token: token},
		RelayAuth{Name: "relay-1", PublicHost: "203.0.113.7", Token: token})
	if n.err != nil || r.err != nil {
		t.Fatalf("node: %v, relay: %v", n.err, r.err)
	}
	wantID := NodeID(key.Public().(ed25519.PublicKey))
	if r.peer.ID != wantID || r.peer.Name != "home-pc" {
		t.Errorf("relay saw %+v, want id %s", r.peer, wantID)
	}
	if n.welcome.Relay != "relay-1" || n.welcome.PublicHost != "203.0.113.7" || n.welcome.NodeID != wantID {
		t.Errorf("node got welcome %+v", n.welcome)
	}
}

func TestHandshakeWrongTokenIsRefused(t *testing.T) {
	n, r := handshake(t,
		NodeAuth{Name: "n", Key: newKey(t), Token: []byte("guess")},
		RelayAuth{Name: "r", PublicHost: "h", Token: []byte("s3cret")})
	if !errors.Is(r.err, ErrAuthFailed) {
		t.Errorf("relay: %v, want ErrAuthFailed", r.err)
	}
	var refused *Error
	if !errors.As(n.err, &refused) || refused.Code != CodeAuth || !refused.Fatal() {
		t.Errorf("node: %v, want a fatal auth refusal", n.err)
	}
}

func TestHandshakeVersionMismatch(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		_, err := NewConn(b, 0).RelayHandshake(RelayAuth{Name: "r", Token: []byte("t")}, time.Second)
		done <- err
	}()
	c := NewConn(a, 0)
	c.Send(&Hello{Version: 2, Identity: make([]byte, 32), Nonce: make([]byte, 32)})
	m, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.(*Error); !ok || e.Code != CodeVersion || !e.Fatal() {
		t.Fatalf("got %#v, want a version refusal", m)
	}
	<-done
}

// A relay that does not know the token cannot pass as the real one.
func TestHandshakeNodeChecksRelayProof(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := NewConn(b, 0)
		c.Recv()
		c.Send(&Challenge{Version: Version, Relay: "fake", Nonce: make([]byte, nonceSize)})
		c.Recv()
		c.Send(&Welcome{Relay: "fake", Proof: make([]byte, 32)})
	}()
	_, err := NewConn(a, 0).NodeHandshake(NodeAuth{Key: newKey(t), Token: []byte("t")}, time.Second)
	if !errors.Is(err, ErrRelayProof) {
		t.Fatalf("err = %v, want ErrRelayProof", err)
	}
}

// A node that never finishes the handshake is dropped at the deadline.
func TestHandshakeDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	start := time.Now()
	_, err := NewConn(b, 0).RelayHandshake(RelayAuth{Name: "r", Token: []byte("t")}, 50*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("the deadline did not cut the handshake short")
	}
}

// The token itself never crosses the wire.
func TestTokenNeverSent(t *testing.T) {
	token := []byte("very-secret-token-value")
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rec := &recorder{Conn: a}
	go NewConn(b, 0).RelayHandshake(RelayAuth{Name: "r", PublicHost: "h", Token: token}, time.Second)
	if _, err := NewConn(rec, 0).NodeHandshake(NodeAuth{Key: newKey(t), Token: token}, time.Second); err != nil {
		t.Fatal(err)
	}
	if containsBytes(rec.written, token) || containsBytes(rec.read, token) {
		t.Fatal("the token appeared on the wire")
	}
}

type recorder struct {
	net.Conn
	written, read []byte
}

func (r *recorder) Write(b []byte) (int, error) {
	r.written = append(r.written, b...)
	return r.Conn.Write(b)
}
func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.read = append(r.read, b[:n]...)
	return n, err
}

func containsBytes(hay, needle []byte) bool {
	return len(needle) > 0 && bytes.Contains(hay, needle)
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"", "home-pc", "node.example", "ü-node"} {
		if err := checkName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"has space", "tab\there", "nl\n", string(make([]byte, 65))} {
		if err := checkName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
