package tunnel

import (
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
)

// A hand-driven node, for sending what a real node never would.

// rawConnect dials addr (through TLS when cfg is set), starts yamux and
// opens the control stream, without a handshake. It returns the stream too,
// for writing what is not a frame.
func rawConnect(t *testing.T, addr string, cfg *tls.Config) (*yamux.Stream, *mux.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		tc := tls.Client(c, cfg)
		tc.SetDeadline(time.Now().Add(2 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			t.Fatal(err)
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	ym, err := mux.Client(mux.NewWire(c), mux.SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ym.Close() })
	st, err := ym.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	ctrl := mux.NewConn(st, 0)
	ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	return st, ctrl
}

// rawAuthed is a plaintext control stream of a node that has passed the
// handshake with identity key (nil: a fresh one).
func rawAuthed(t *testing.T, r *testRelay, key ed25519.PrivateKey) *mux.Conn {
	t.Helper()
	if key == nil {
		key = newKey(t)
	}
	_, ctrl := rawConnect(t, r.Addr, nil)
	if _, err := ctrl.NodeHandshake(mux.NodeAuth{Name: "raw", Key: key, Token: testToken}, 2*time.Second); err != nil {
		t.Fatalf("raw handshake: %v", err)
	}
	ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	return ctrl
}

// recvReply receives messages until one that is not a ping or pong.
func recvReply(t *testing.T, ctrl *mux.Conn) mux.Message {
	t.Helper()
	for {
		m, err := ctrl.Recv()
		if err != nil {
			t.Fatalf("waiting for the relay's answer: %v", err)
		}
		switch m := m.(type) {
		case *mux.Ping:
			ctrl.Send(&mux.Pong{Seq: m.Seq}) // a node measures latency first
			continue
		case *mux.Pong:
			continue
		}
		return m
	}
}

// wantError checks that m is an Error for request id with code.
func wantError(t *testing.T, m mux.Message, id uint32, code mux.ErrorCode) *mux.Error {
	t.Helper()
	e, ok := m.(*mux.Error)
	if !ok || e.ID != id || e.Code != code {
		t.Fatalf("answer %T %+v; want an error for request %d with code %q", m, m, id, code)
	}
	return e
}

// isClosedErr reports whether err means the peer closed the connection.
func isClosedErr(err error) bool {
	return err != nil && !errors.Is(err, yamux.ErrTimeout) && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
