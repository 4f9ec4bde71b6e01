package tunnel

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// An interceptor without the token that terminates TLS on both sides and
// passes the handshake through cannot make the node trust it: the handshake
// is bound to each TLS connection, so the relay refuses it, and nothing is
// pinned.
func TestInterceptorIsNotPinnedOnFirstUse(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	relayCfg, _ := selfSigned(t)
	r := startRelay(t, relayOpts{TLS: relayCfg})
	mitmCfg, _ := selfSigned(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			front := tls.Server(c, mitmCfg)
			back, err := tls.Dial("tcp", r.Addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(back, front); back.Close() }()
			io.Copy(front, back)
			front.Close()
		}
	}()

	pins := openServers(t)
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Relay = ln.Addr().String()
	cfg.TLS = &NodeTLS{Pins: pins}
	cfg.Once = true
	n := runNode(t, cfg)
	err = n.wait(t, 10*time.Second)
	var refused *mux.Error
	if !errors.As(err, &refused) || refused.Code != mux.CodeAuth {
		t.Fatalf("through an interceptor the node ended with %v; want the relay's auth refusal", err)
	}
	if sv, ok := pins.Get(ln.Addr().String()); ok && sv.Fingerprint != "" {
		t.Fatalf("the interceptor's certificate was pinned: %s", sv.Fingerprint)
	}
}
