package tunnel

import (
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
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
	r := startRelay(t, relayOpts{Ports: freeRange(t, 20)})
	ctrl := rawAuthed(t, r, nil)
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
	r.Stop() // fails the test unless Serve returns, and promptly
	ctrl.Close()
	<-sent
	for p := r.Ports.Lo; p <= r.Ports.Hi; p++ {
		if listenFails(p) {
			t.Errorf("port %d is still held after the relay stopped", p)
		}
	}
}
