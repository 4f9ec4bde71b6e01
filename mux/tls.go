package mux

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
)

// TLS on the control connection. The relay presents a certificate; a node
// trusts it because its fingerprint matches a pin (given by the user, or
// stored on first use) or because a CA vouches for it. TLS 1.3 only: every
// p2prc build speaks it, and it leaves nothing to negotiate downwards.

// Sentinel errors of certificate checking. Callers branch on these with
// errors.Is; both mean that retrying cannot help.
var (
	// ErrFingerprintMismatch: the relay's certificate is not the pinned one.
	// The error is a *FingerprintError saying both fingerprints.
	ErrFingerprintMismatch = errors.New("relay certificate does not match the pinned fingerprint")
	// ErrUntrustedCert: nothing vouches for the relay's certificate: no pin,
	// no CA, and trust on first use is off.
	ErrUntrustedCert = errors.New("relay certificate not trusted")
)

// fingerprintHexLen is the length of a fingerprint: SHA-256 in hex.
const fingerprintHexLen = 2 * sha256.Size

// Fingerprint names a certificate: the hex SHA-256 of its DER encoding, the
// same as `openssl x509 -noout -fingerprint -sha256` prints without colons.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ParseFingerprint reads a fingerprint as a person may paste it: 64 hex
// digits in either case, optionally with colons or spaces between pairs
// and a "sha256:" or "SHA256=" prefix (as openssl prints it). It returns
// the canonical form, lower-case hex without separators.
func ParseFingerprint(s string) (string, error) {
	t := strings.TrimSpace(s)
	if len(t) > 4*fingerprintHexLen {
		return "", fmt.Errorf("fingerprint of %d characters: want the 64 hex digits of a SHA-256", len(t))
	}
	lower := strings.ToLower(t)
	for _, prefix := range []string{"sha256 fingerprint=", "sha256:", "sha256="} {
		if strings.HasPrefix(lower, prefix) {
			lower = lower[len(prefix):]
			break
		}
	}
	clean := strings.Map(func(r rune) rune {
		if r == ':' || r == ' ' {
			return -1
		}
		return r
	}, lower)
	if len(clean) != fingerprintHexLen || strings.Trim(clean, "0123456789abcdef") != "" {
		return "", fmt.Errorf("fingerprint %q: want the 64 hex digits of a SHA-256, as the relay prints at start", t)
	}
	return clean, nil
}

// ServerTLS is the relay's TLS configuration for cert: TLS 1.3 only, no
// client certificates (nodes prove themselves in the control handshake).
func ServerTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates:                []tls.Certificate{cert},
		MinVersion:                  tls.VersionTLS13,
		DynamicRecordSizingDisabled: true, // a long-lived bulk link: full records from the start
	}
}

// Trust says which relay certificates a node accepts.
type Trust struct {
	// Relay is the relay's address, host:port, named in error messages.
	// Its host is checked against CA-issued certificates.
	Relay string
	// Pin is the fingerprint the certificate must have (see Fingerprint).
	// Empty: no pin yet.
	Pin string
	// PinFrom says where Pin came from, for messages: "--relay-fingerprint"
	// or the file it was stored in.
	PinFrom string
	// Strict refuses any certificate but the pinned one, even one a CA
	// vouches for; set when the user gave the pin. Without it, a stored pin
	// gives way to a certificate a CA vouches for (a renewed certificate).
	Strict bool
	// FirstUse accepts, when there is no pin, a certificate nothing vouches
	// for (trust on first use); the caller pins it once the relay has proved
	// it holds the token.
	FirstUse bool
	// RootCAs checks CA-issued certificates. Nil: the system's roots.
	RootCAs *x509.CertPool
}

// Verdict says why a relay's certificate was accepted.
type Verdict struct {
	Fingerprint string // the certificate's fingerprint
	Pinned      bool   // it matched the pin
	ByCA        bool   // a CA vouches for it, for the relay's host
	FirstUse    bool   // nothing vouched for it; accepted because there was no pin yet
}

// Check decides on a certificate chain as received (DER, leaf first).
func (t Trust) Check(rawCerts [][]byte) (Verdict, error) {
	if len(rawCerts) == 0 || len(rawCerts[0]) == 0 {
		return Verdict{}, fmt.Errorf("%w: the relay at %s sent no certificate", ErrUntrustedCert, t.Relay)
	}
	v := Verdict{Fingerprint: Fingerprint(rawCerts[0])}
	if t.Pin != "" && v.Fingerprint == t.Pin {
		v.Pinned = true
		return v, nil
	}
	if t.Pin != "" && t.Strict {
		return Verdict{}, t.mismatch(v.Fingerprint)
	}
	if t.vouchedByCA(rawCerts) {
		v.ByCA = true
		return v, nil
	}
	if t.Pin != "" {
		return Verdict{}, t.mismatch(v.Fingerprint)
	}
	if t.FirstUse {
		v.FirstUse = true
		return v, nil
	}
	return Verdict{}, fmt.Errorf("%w: the relay at %s presented a certificate (fingerprint %s) that no CA vouches for, and no fingerprint is pinned for it; compare that with the fingerprint the relay prints at start, then pass it with --relay-fingerprint",
		ErrUntrustedCert, t.Relay, v.Fingerprint)
}

// vouchedByCA reports whether the chain verifies, from a root in RootCAs
// (or the system's), for the relay's host.
func (t Trust) vouchedByCA(rawCerts [][]byte) bool {
	certs := make([]*x509.Certificate, 0, len(rawCerts))
	for _, der := range rawCerts {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return false
		}
		certs = append(certs, c)
	}
	opts := x509.VerifyOptions{
		Roots:         t.RootCAs,
		DNSName:       t.host(),
		Intermediates: x509.NewCertPool(),
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(opts)
	return err == nil
}

func (t Trust) host() string {
	host, _, err := net.SplitHostPort(t.Relay)
	if err != nil {
		return t.Relay
	}
	return host
}

func (t Trust) mismatch(got string) error {
	return &FingerprintError{Relay: t.Relay, Pinned: t.Pin, PinFrom: t.PinFrom, Got: got}
}

// ClientTLS is a node's TLS configuration for t. Go's own chain checks are
// off (self-signed certificates are the norm); VerifyPeerCertificate runs
// Check instead and, on success, passes the verdict to accepted.
func (t Trust) ClientTLS(accepted func(Verdict)) *tls.Config {
	cfg := &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		InsecureSkipVerify:          true, // replaced by Check, below
		DynamicRecordSizingDisabled: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			v, err := t.Check(rawCerts)
			if err == nil && accepted != nil {
				accepted(v)
			}
			return err
		},
	}
	if host := t.host(); host != "" && net.ParseIP(host) == nil {
		cfg.ServerName = host // SNI, for a relay behind a TLS-routing proxy
	}
	return cfg
}

// FingerprintError says that a relay's certificate changed: which
// fingerprint was pinned, where the pin came from, which one was seen, and
// how to accept the new one on purpose.
type FingerprintError struct {
	Relay   string // host:port
	Pinned  string // the fingerprint expected
	PinFrom string // "--relay-fingerprint" or the file holding the pin
	Got     string // the fingerprint presented
}

func (e *FingerprintError) Error() string {
	from := e.PinFrom
	if from == "" {
		from = "this node"
	}
	return fmt.Sprintf("the relay at %s presented a certificate with fingerprint %s, but %s pins %s for it. "+
		"If the relay's operator replaced its certificate (check the fingerprint the relay prints at start), "+
		"accept the new one with --relay-fingerprint %s; otherwise someone may be intercepting the connection, so do not",
		e.Relay, e.Got, from, e.Pinned, e.Got)
}

// Is makes errors.Is(err, ErrFingerprintMismatch) hold.
func (e *FingerprintError) Is(target error) bool { return target == ErrFingerprintMismatch }

// channelBindingLabel names the exporter value the handshake is bound to.
const channelBindingLabel = "p2prc channel binding v1"

// ChannelBinding returns 32 bytes that both ends of a TLS connection derive
// from its keys (RFC 8446 exporter), so that the handshake run inside it
// cannot be replayed in another; nil for a connection that is not TLS.
func ChannelBinding(c net.Conn) []byte {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	b, err := st.ExportKeyingMaterial(channelBindingLabel, nil, 32)
	if err != nil {
		return nil
	}
	return b
}
