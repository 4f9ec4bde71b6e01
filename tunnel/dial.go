package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// NodeTLS says how a node secures its control connection and which relay
// certificates it trusts: the one pinned by Fingerprint; else the one whose
// fingerprint Pins holds for the relay's address; else one a CA vouches for
// (RootCAs); else, with Pins set, any — trusted on first use and pinned
// once the relay has proved it holds the token.
type NodeTLS struct {
	// Fingerprint pins the relay's certificate (--relay-fingerprint), in
	// the form mux.ParseFingerprint returns. It overrides a stored pin, and
	// replaces it once the relay has proved it holds the token. Empty: the
	// pin stored in Pins, if any.
	Fingerprint string
	// Pins stores the fingerprint of each relay, by address, in
	// reverse_proxy_server.json. Nil: nothing is stored, and a relay that
	// neither Fingerprint nor a CA vouches for is refused.
	Pins *registry.Servers
	// RootCAs checks CA-issued relay certificates. Nil: the system's roots.
	RootCAs *x509.CertPool
}

// errRelayPlaintext: a TLS node reached a relay that runs plaintext.
var errRelayPlaintext = errors.New("the relay runs with --insecure-plaintext and does not speak TLS; ask its operator to drop that flag (the relay then prints its certificate's fingerprint), or give this node --insecure-plaintext too, and everything it says travels unencrypted")

// securedConn is a connection to a relay's control port, secured as the
// node's NodeTLS says. Once the relay has proved it holds the token, call
// trusted to store a new pin.
type securedConn struct {
	net.Conn
	verdict mux.Verdict // set after a TLS handshake
	trust   *mux.Trust  // nil for plaintext
}

// dial connects to the relay at addr, its control address, and secures the
// connection as the node's TLS configuration says (see secureRelayConn). It
// is the one place p2prc connects to a relay: node sessions, --relay auto,
// probes and listings all come through here.
func (n *Node) dial(ctx context.Context, addr string) (*securedConn, error) {
	d := net.Dialer{Timeout: n.cfg.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tuneTCP(c, n.cfg.PeerTimeout)
	return secureRelayConn(ctx, c, addr, n.cfg.TLS, n.cfg.HandshakeTimeout)
}

// secureRelayConn runs, unless t is nil (plaintext), the TLS handshake on
// c, a fresh connection to the relay at addr, within handshakeTimeout and
// before anything else is said. On failure c is closed.
func secureRelayConn(ctx context.Context, c net.Conn, addr string, t *NodeTLS, handshakeTimeout time.Duration) (*securedConn, error) {
	if t == nil {
		return &securedConn{Conn: c}, nil
	}
	trust := t.trustFor(addr)
	rc := &securedConn{trust: &trust}
	tc := tls.Client(mux.NewCorkConn(c), trust.ClientTLS(func(v mux.Verdict) { rc.verdict = v }))
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, explainTLSError(addr, err)
	}
	rc.Conn = tc
	return rc, nil
}

// trustFor is the certificate policy for the relay at addr.
func (t *NodeTLS) trustFor(addr string) mux.Trust {
	trust := mux.Trust{Relay: addr, RootCAs: t.RootCAs}
	switch {
	case t.Fingerprint != "":
		trust.Pin, trust.PinFrom, trust.Strict = t.Fingerprint, "--relay-fingerprint", true
	case t.Pins != nil:
		if sv, ok := t.Pins.Get(addr); ok && sv.Fingerprint != "" {
			trust.Pin, trust.PinFrom = sv.Fingerprint, t.Pins.Path()
		}
		trust.FirstUse = true
	}
	return trust
}

// explainTLSError turns a failed TLS handshake into what a person can act on.
func explainTLSError(addr string, err error) error {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		if string(rh.RecordHeader[:]) == plaintextNotice[:len(rh.RecordHeader)] {
			return fmt.Errorf("%s: %w", addr, errRelayPlaintext)
		}
		return fmt.Errorf("the relay at %s did not answer in TLS: is it a p2prc relay? (%v)", addr, err)
	}
	if errors.Is(err, mux.ErrFingerprintMismatch) || errors.Is(err, mux.ErrUntrustedCert) {
		return err
	}
	return fmt.Errorf("TLS handshake with the relay at %s: %w", addr, err)
}

// trusted records what the TLS handshake learnt, now that the relay has
// proved it holds the token: a first-use certificate, one given with
// --relay-fingerprint, or a CA-vouched renewal is pinned in pins.
func (rc *securedConn) trusted(pins *registry.Servers, log *slog.Logger) {
	if rc.trust == nil || pins == nil {
		return
	}
	v, addr := rc.verdict, rc.trust.Relay
	if v.Fingerprint == "" || v.Fingerprint == rc.trust.Pin && rc.trust.PinFrom == pins.Path() {
		return // already pinned there
	}
	if err := pins.Upsert(registry.Server{Address: addr, Fingerprint: v.Fingerprint}); err != nil {
		log.Error("storing the relay's certificate fingerprint", "file", pins.Path(), "err", err)
		return
	}
	switch {
	case v.FirstUse:
		log.Warn("trusted the relay's certificate on first use and pinned it; check that this is the fingerprint the relay printed at start",
			"fingerprint", v.Fingerprint, "file", pins.Path())
	case v.ByCA && rc.trust.Pin != "":
		log.Info("the relay has a new certificate that a CA vouches for; pinned it", "old_fingerprint", rc.trust.Pin, "fingerprint", v.Fingerprint, "file", pins.Path())
	default:
		log.Info("pinned the relay's certificate", "fingerprint", v.Fingerprint, "file", pins.Path())
	}
}
