package secret

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"time"

	"github.com/p2prc/p2prc/registry/jsonfile"
)

// CertFileName holds a relay's self-signed TLS certificate and its private
// key, both PEM, in one file: one atomic write creates both, so a crash can
// never leave a certificate without its key.
const CertFileName = "relay.pem"

// maxPEMFile caps what is read as a certificate or key file. A chain of a
// few certificates is a few kilobytes.
const maxPEMFile = 1 << 20

// certLifetime is how long a generated certificate is valid. Nodes pin it by
// fingerprint and do not check its dates, so it only matters to other tools.
const certLifetime = 20 * 365 * 24 * time.Hour

// LoadOrCreateCertificate returns the relay's self-signed certificate kept at
// path, or generates an ECDSA P-256 key and a certificate naming the relay
// and stores both there (0600) if the file does not exist; created says
// which. The certificate's fingerprint is what nodes pin, so the file must be
// kept: a new one makes every node that pinned the old one refuse the relay.
func LoadOrCreateCertificate(path, relayName string) (cert tls.Certificate, created bool, err error) {
	b, err := readCapped(path)
	if err == nil {
		cert, err := ParseCertificate(b, b)
		if err != nil {
			return tls.Certificate{}, false, fmt.Errorf("%s: %w; move it away and a new certificate is created (nodes that pinned the old one must then be given the new fingerprint)", path, err)
		}
		return cert, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, false, fmt.Errorf("reading the relay's certificate: %w", err)
	}
	pemBytes, err := newSelfSigned(relayName, time.Now())
	if err != nil {
		return tls.Certificate{}, false, err
	}
	if err := jsonfile.WriteFile(path, pemBytes, 0o600); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("storing a new certificate: %w", err)
	}
	cert, err = ParseCertificate(pemBytes, pemBytes)
	return cert, true, err
}

// LoadCertificate reads a certificate chain and its private key from PEM
// files, as given with --tls-cert and --tls-key (e.g. issued by a CA).
func LoadCertificate(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readCapped(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--tls-cert: %w", err)
	}
	keyPEM, err := readCapped(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--tls-key: %w", err)
	}
	cert, err := ParseCertificate(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--tls-cert %s and --tls-key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// ParseCertificate parses a PEM certificate chain (leaf first) and the PEM
// private key that belongs to the leaf. Both may be the same bytes, as in a
// file holding both. The error says what is wrong, never what the key is.
func ParseCertificate(certPEM, keyPEM []byte) (tls.Certificate, error) {
	if len(certPEM) > maxPEMFile || len(keyPEM) > maxPEMFile {
		return tls.Certificate{}, fmt.Errorf("larger than %d bytes; it should hold PEM blocks only", maxPEMFile)
	}
	if !hasBlock(certPEM, "CERTIFICATE") {
		return tls.Certificate{}, errors.New("no PEM CERTIFICATE block found")
	}
	if !hasKeyBlock(keyPEM) {
		return tls.Certificate{}, errors.New("no PEM PRIVATE KEY block found")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's messages name the problem, never the key's bytes.
		return tls.Certificate{}, fmt.Errorf("not a usable certificate and key: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("not a usable certificate: %w", err)
		}
	}
	return cert, nil
}

// newSelfSigned returns the PEM of a fresh ECDSA P-256 key and a
// certificate for it, signed by itself, naming the relay.
func newSelfSigned(relayName string, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "p2prc relay " + relayName, Organization: []string{"p2prc"}},
		NotBefore:             now.Add(-time.Hour), // tolerate a node whose clock is a little behind
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating a certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...), nil
}

// readCapped reads a PEM file of at most maxPEMFile bytes.
func readCapped(path string) ([]byte, error) {
	b, err := jsonfile.ReadAtMost(path, maxPEMFile)
	if errors.Is(err, jsonfile.ErrTooLarge) {
		return nil, fmt.Errorf("%s is larger than %d bytes; it should hold PEM blocks only", path, maxPEMFile)
	}
	return b, err
}

// hasBlock reports whether b holds a PEM block of type typ.
func hasBlock(b []byte, typ string) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if block.Type == typ {
			return true
		}
	}
}

// hasKeyBlock reports whether b holds a PEM private key of a type
// crypto/tls reads.
func hasKeyBlock(b []byte) bool {
	return hasBlock(b, "PRIVATE KEY") || hasBlock(b, "EC PRIVATE KEY") || hasBlock(b, "RSA PRIVATE KEY")
}
