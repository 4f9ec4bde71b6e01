package tunnel

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// A connection that opens more than the control stream — before or after
// authenticating — is closed at once: each extra stream would make the
// relay buffer up to a window before anyone reads it.
func TestExtraStreamsEndTheConnection(t *testing.T) {
	leakCheck(t)
	r := startRelay(t, relayOpts{})
	for _, authed := range []bool{false, true} {
		st, ctrl := rawConnect(t, r.Addr, nil)
		if authed {
			if _, err := ctrl.NodeHandshake(mux.NodeAuth{Name: "raw", Key: newKey(t), Token: testToken}, 2*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		ym := st.Session()
		data := make([]byte, 64<<10)
		for range 8 {
			extra, err := ym.OpenStream()
			if err != nil {
				break // already refused
			}
			extra.SetWriteDeadline(time.Now().Add(time.Second))
			extra.Write(data)
		}
		select {
		case <-ym.CloseChan():
		case <-time.After(3 * time.Second):
			t.Fatalf("authenticated=%v: the relay kept a connection that opened extra streams", authed)
		}
	}
	if !eventually(2*time.Second, func() bool { return r.Relay.Refusals()[limitOneStream] >= 2 }) {
		t.Errorf("refusals counted: %v", r.Relay.Refusals())
	}
}

// A relay shutting down while a node's requests are still queued returns
// promptly and opens no port after it began closing them.
func TestShutdownWithQueuedExposes(t *testing.T) {
	leakCheck(t)
	maps, err := registry.OpenMappings(filepath.Join(t.TempDir(), registry.MappingFileName))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := newLogger(t, "relay")
	r, err := NewRelay(RelayConfig{Name: "r", PublicHost: "127.0.0.1", Token: testToken, Ports: freeRange(t, 20),
		BindHost: "127.0.0.1", Mappings: maps, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	ctrl := rawAuthed(t, &testRelay{Addr: ln.Addr().String()}, nil)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := uint32(1); i < 3000; i++ {
			if ctrl.Send(&mux.Expose{ID: i, Network: "tcp", Local: "127.0.0.1:9"}) != nil {
				return
			}
		}
	}()
	go func() {
		for {
			if _, err := ctrl.Recv(); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatalf("Serve did not return within 10 s of cancel:\n%s", allStacks())
	}
	ctrl.Close()
	<-sent
}
