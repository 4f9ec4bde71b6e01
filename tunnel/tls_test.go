package tunnel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/registry/secret"
)

// TLS on the control connection: pinning, trust on first use, CA-issued
// certificates, and both kinds of mode mismatch.

// selfSigned returns a relay certificate kept in a fresh state dir, as
// `p2prc relay` creates it, and its fingerprint.
func selfSigned(t testing.TB) (*tls.Config, string) {
	t.Helper()
	cert, created, err := secret.LoadOrCreateCertificate(filepath.Join(t.TempDir(), secret.CertFileName), "test-relay")
	if err != nil || !created {
		t.Fatalf("creating a certificate: %v (created %v)", err, created)
	}
	return mux.ServerTLS(cert), mux.Fingerprint(cert.Certificate[0])
}

// storedPin reads the pin for addr from the file afresh.
func storedPin(t *testing.T, pins *registry.Servers, addr string) string {
	t.Helper()
	sv, _ := reloadServers(t, pins).Get(addr)
	return sv.Fingerprint
}

func tlsNodeConfig(r *testRelay, echo string, t *NodeTLS) NodeConfig {
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.TLS = t
	return cfg
}

func TestTLSWithPinnedFingerprint(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	cfg, fp := selfSigned(t)
	r := startRelay(t, relayOpts{TLS: cfg})
	n := runNode(t, tlsNodeConfig(r, echo, &NodeTLS{Fingerprint: fp}))
	c := n.nextReady(t, 5*time.Second)
	assertEcho(t, portFor(t, c.Mappings, echo))
	if strings.Contains(r.Logs.String(), "not encrypted") || strings.Contains(n.Logs.String(), "not encrypted") {
		t.Error("a TLS relay or node warned that it is not encrypted")
	}
}

// The relay really speaks TLS 1.3 with the certificate it was given.
func TestRelaySpeaksTLS13(t *testing.T) {
	cfg, fp := selfSigned(t)
	r := startRelay(t, relayOpts{TLS: cfg})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", r.Addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if st.Version != tls.VersionTLS13 || mux.Fingerprint(st.PeerCertificates[0].Raw) != fp {
		t.Fatalf("version %x, fingerprint %s; want TLS 1.3 and %s", st.Version, mux.Fingerprint(st.PeerCertificates[0].Raw), fp)
	}
	_, err = tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", r.Addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err == nil {
		t.Fatal("the relay accepted TLS 1.2")
	}
}

// Trust on first use: the first connection pins the certificate in
// reverse_proxy_server.json; a relay that comes back with another
// certificate is refused with both fingerprints and the way to accept it;
// given with --relay-fingerprint, the new one is accepted and pinned.
func TestTrustOnFirstUseThenMismatch(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	pins := openServers(t)
	cfg1, fp1 := selfSigned(t)
	r1 := startRelay(t, relayOpts{TLS: cfg1})
	addr := r1.Addr

	n := runNode(t, tlsNodeConfig(r1, echo, &NodeTLS{Pins: pins}))
	n.nextReady(t, 5*time.Second)
	if got := storedPin(t, pins, addr); got != fp1 {
		t.Fatalf("pinned %q, want the relay's %q", got, fp1)
	}
	if !strings.Contains(n.Logs.String(), "first use") {
		t.Error("the node did not say it trusted the relay on first use")
	}
	n.Stop()
	// The same relay again: the pin holds.
	n = runNode(t, tlsNodeConfig(r1, echo, &NodeTLS{Pins: pins}))
	n.nextReady(t, 5*time.Second)
	if strings.Contains(n.Logs.String(), "first use") {
		t.Error("the node trusted a pinned relay \"on first use\" again")
	}
	n.Stop()
	r1.Stop()

	// The relay comes back, at the same address, with another certificate.
	cfg2, fp2 := selfSigned(t)
	r2 := startRelay(t, relayOpts{TLS: cfg2, Addr: addr, Ports: r1.Ports, MapsPath: filepath.Join(t.TempDir(), registry.MappingFileName)})
	n = runNode(t, tlsNodeConfig(r2, echo, &NodeTLS{Pins: pins}))
	err := n.wait(t, 5*time.Second)
	var fe *mux.FingerprintError
	if !errors.As(err, &fe) || !errors.Is(err, mux.ErrFingerprintMismatch) || !isFatal(err) {
		t.Fatalf("node Run returned %v; want a fatal fingerprint mismatch", err)
	}
	for _, want := range []string{fp1, fp2, "--relay-fingerprint " + fp2, pins.Path()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not mention %q", err, want)
		}
	}
	if ms := fileMappings(t, r2.MapsPath); len(ms) != 0 {
		t.Fatalf("the relay allocated %+v for a node that refused it", ms)
	}
	if storedPin(t, pins, addr) != fp1 {
		t.Fatal("a refused certificate replaced the pin")
	}
	if !eventually(2*time.Second, func() bool { return r2.Logs.count("refused this relay's certificate") > 0 }) {
		t.Error("the relay did not log that a node refused its certificate")
	}

	// Accepted on purpose: the new pin replaces the old one.
	n = runNode(t, tlsNodeConfig(r2, echo, &NodeTLS{Pins: pins, Fingerprint: fp2}))
	n.nextReady(t, 5*time.Second)
	if got := storedPin(t, pins, addr); got != fp2 {
		t.Fatalf("after --relay-fingerprint, the pin is %q, want %q", got, fp2)
	}
}

// A wrong --relay-fingerprint is refused before anything is allocated,
// even if it is the first connection.
func TestWrongFingerprintIsFatal(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	cfg, fp := selfSigned(t)
	r := startRelay(t, relayOpts{TLS: cfg})
	wrong := strings.Repeat("ab", 32)
	pins := openServers(t)
	n := runNode(t, tlsNodeConfig(r, echo, &NodeTLS{Fingerprint: wrong, Pins: pins}))
	err := n.wait(t, 5*time.Second)
	if !errors.Is(err, mux.ErrFingerprintMismatch) || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "--relay-fingerprint pins "+wrong) {
		t.Fatalf("node Run returned %v; want a mismatch naming both fingerprints", err)
	}
	if ms := fileMappings(t, r.MapsPath); len(ms) != 0 {
		t.Fatalf("mappings %+v after a refused certificate", ms)
	}
	if storedPin(t, pins, r.Addr) != "" {
		t.Fatal("a refused certificate was pinned")
	}
}

// Without a pin, a pin store or a CA, a self-signed certificate is refused,
// and the refusal says how to pin it.
func TestUnpinnedSelfSignedIsRefused(t *testing.T) {
	echo := startEcho(t)
	cfg, fp := selfSigned(t)
	r := startRelay(t, relayOpts{TLS: cfg})
	n := runNode(t, tlsNodeConfig(r, echo, &NodeTLS{}))
	err := n.wait(t, 5*time.Second)
	if !errors.Is(err, mux.ErrUntrustedCert) || !isFatal(err) || !strings.Contains(err.Error(), "--relay-fingerprint") || !strings.Contains(err.Error(), fp) {
		t.Fatalf("node Run returned %v; want a fatal refusal saying to pin %s", err, fp)
	}
}

// A node without TLS reaching a TLS relay is told, over the control
// protocol, to drop --insecure-plaintext; it exits.
func TestPlaintextNodeTLSRelay(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	cfg, _ := selfSigned(t)
	r := startRelay(t, relayOpts{TLS: cfg})
	n := runNode(t, nodeConfig(r, []Expose{tcpExpose(echo)}))
	err := n.wait(t, 5*time.Second)
	wantRefusal(t, err, mux.CodeTLS)
	if !strings.Contains(err.Error(), "--insecure-plaintext") {
		t.Errorf("the refusal %q does not name --insecure-plaintext", err)
	}
	if !strings.Contains(n.Logs.String(), "not encrypted") {
		t.Error("a plaintext node did not warn that it is not encrypted")
	}
	if ms := fileMappings(t, r.MapsPath); len(ms) != 0 {
		t.Fatalf("mappings %+v for a refused node", ms)
	}
}

// A TLS node reaching a plaintext relay says that the relay runs
// --insecure-plaintext; it exits.
func TestTLSNodePlaintextRelay(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	n := runNode(t, tlsNodeConfig(r, echo, &NodeTLS{Fingerprint: strings.Repeat("0", 64)}))
	err := n.wait(t, 5*time.Second)
	if !errors.Is(err, errRelayPlaintext) || !isFatal(err) || !strings.Contains(err.Error(), "--insecure-plaintext") {
		t.Fatalf("node Run returned %v; want a fatal error naming --insecure-plaintext", err)
	}
	if !eventually(2*time.Second, func() bool { return r.Logs.count("started TLS") > 0 }) {
		t.Error("the plaintext relay did not log the TLS attempt")
	}
	if !strings.Contains(r.Logs.String(), "not encrypted") {
		t.Error("a plaintext relay did not warn that it is not encrypted")
	}
}

// A CA-issued certificate is trusted without a pin, and pinned; a renewal
// by the CA is accepted; a self-signed impostor at the same address is not.
func TestCAIssuedCertificate(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	ca := newTestCA(t)
	pins := openServers(t)
	leaf1 := ca.issue(t)
	r1 := startRelay(t, relayOpts{TLS: mux.ServerTLS(leaf1)})
	addr := r1.Addr
	n := runNode(t, tlsNodeConfig(r1, echo, &NodeTLS{Pins: pins, RootCAs: ca.pool}))
	n.nextReady(t, 5*time.Second)
	if got := storedPin(t, pins, addr); got != mux.Fingerprint(leaf1.Certificate[0]) {
		t.Fatalf("pinned %q after a CA-verified connection", got)
	}
	if strings.Contains(n.Logs.String(), "first use") {
		t.Error("a CA-verified relay was trusted \"on first use\"")
	}
	n.Stop()
	r1.Stop()

	// Renewed by the CA: accepted, and the pin follows.
	leaf2 := ca.issue(t)
	r2 := startRelay(t, relayOpts{TLS: mux.ServerTLS(leaf2), Addr: addr, Ports: r1.Ports, MapsPath: r1.MapsPath})
	n = runNode(t, tlsNodeConfig(r2, echo, &NodeTLS{Pins: pins, RootCAs: ca.pool}))
	n.nextReady(t, 5*time.Second)
	if got := storedPin(t, pins, addr); got != mux.Fingerprint(leaf2.Certificate[0]) {
		t.Fatalf("after a renewal the pin is %q", got)
	}
	n.Stop()
	// A pin the user gave is strict: even a CA cannot override it.
	n = runNode(t, tlsNodeConfig(r2, echo, &NodeTLS{RootCAs: ca.pool, Fingerprint: mux.Fingerprint(leaf1.Certificate[0])}))
	if err := n.wait(t, 5*time.Second); !errors.Is(err, mux.ErrFingerprintMismatch) {
		t.Fatalf("node Run returned %v with --relay-fingerprint of the old certificate; want a mismatch", err)
	}
	r2.Stop()

	// An impostor with a self-signed certificate.
	cfg, _ := selfSigned(t)
	r3 := startRelay(t, relayOpts{TLS: cfg, Addr: addr, Ports: r1.Ports, MapsPath: filepath.Join(t.TempDir(), registry.MappingFileName)})
	n = runNode(t, tlsNodeConfig(r3, echo, &NodeTLS{Pins: pins, RootCAs: ca.pool}))
	if err := n.wait(t, 5*time.Second); !errors.Is(err, mux.ErrFingerprintMismatch) {
		t.Fatalf("node Run returned %v against an impostor; want a fingerprint mismatch", err)
	}
}

// testCA issues certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "p2prc test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "relay.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
