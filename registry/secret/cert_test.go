package secret

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCertificateCreatedOnceAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), CertFileName)
	cert, created, err := LoadOrCreateCertificate(path, "relay-1")
	if err != nil || !created {
		t.Fatalf("first load: %v, created %v", err, created)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("certificate file mode %v, want 0600: it holds the private key", fi.Mode().Perm())
	}
	if cert.Leaf == nil || !strings.Contains(cert.Leaf.Subject.CommonName, "relay-1") {
		t.Errorf("certificate does not name the relay: %+v", cert.Leaf)
	}
	again, created, err := LoadOrCreateCertificate(path, "renamed")
	if err != nil || created || !bytes.Equal(again.Certificate[0], cert.Certificate[0]) {
		t.Fatalf("second load gave another certificate (its fingerprint would change): %v", err)
	}
}

// A damaged certificate file is an error naming it, and is left alone:
// replacing it would change the fingerprint every node pinned.
func TestCorruptCertificateIsAnErrorAndKept(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":    "not pem",
		"cert only":  onlyBlock(t, "CERTIFICATE"),
		"key only":   onlyBlock(t, "PRIVATE KEY"),
		"mismatched": onlyBlock(t, "CERTIFICATE") + otherKey(t),
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".pem")
		os.WriteFile(path, []byte(content), 0o600)
		_, _, err := LoadOrCreateCertificate(path, "r")
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it away") {
			t.Errorf("%s: err %v; want one naming the file and what to do", name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("%s: the file was changed", name)
		}
	}
}

func TestLoadCertificateNamesTheFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "relay.pem")
	if _, _, err := LoadOrCreateCertificate(good, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCertificate(good, good); err != nil {
		t.Fatalf("a combined file as both --tls-cert and --tls-key: %v", err)
	}
	if _, err := LoadCertificate(filepath.Join(dir, "missing"), good); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("missing cert: %v", err)
	}
	if _, err := LoadCertificate(good, filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("missing key: %v", err)
	}
	huge := filepath.Join(dir, "huge")
	os.WriteFile(huge, make([]byte, maxPEMFile+1), 0o600)
	if _, err := LoadCertificate(huge, good); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge cert: %v", err)
	}
}

// onlyBlock is the PEM block of that type from a fresh relay.pem.
func onlyBlock(t testing.TB, typ string) string {
	b, err := newSelfSigned("r", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			t.Fatalf("no %s block", typ)
		}
		if block.Type == typ {
			return string(pem.EncodeToMemory(block))
		}
	}
}

func otherKey(t testing.TB) string {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func FuzzReadToken(f *testing.F) {
	for _, s := range []string{"0123abcd\n", "", " \t\n", "tok en", strings.Repeat("a", maxTokenFile+1)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), TokenFileName)
		os.WriteFile(path, data, 0o600)
		tok, err := ReadToken(path)
		if err != nil {
			if bytes.Contains([]byte(err.Error()), bytes.TrimSpace(data)) && len(bytes.TrimSpace(data)) > 3 {
				t.Fatalf("the error %q repeats the file's content", err)
			}
			return
		}
		if len(tok) == 0 || len(tok) > maxTokenFile || !bytes.Equal(tok, bytes.TrimSpace(tok)) {
			t.Fatalf("token %q: empty, too long or padded", tok)
		}
	})
}

func FuzzParseKey(f *testing.F) {
	path := filepath.Join(f.TempDir(), KeyFileName)
	if _, _, err := LoadOrCreateKey(path); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add([]byte(onlyBlock(f, "PRIVATE KEY"))) // an ECDSA key: not an identity
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parseKey("node.key", data)
		if err != nil {
			if !strings.Contains(err.Error(), "move it away") {
				t.Fatalf("error %q does not say what to do", err)
			}
			return
		}
		if len(k) != ed25519.PrivateKeySize {
			t.Fatalf("a key of %d bytes", len(k))
		}
		msg := []byte("p2prc")
		if !ed25519.Verify(k.Public().(ed25519.PublicKey), msg, ed25519.Sign(k, msg)) {
			t.Fatal("the key does not sign")
		}
	})
}

func FuzzParseCertificate(f *testing.F) {
	combined, err := newSelfSigned("r", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(combined, combined)
	f.Add([]byte(onlyBlock(f, "CERTIFICATE")), []byte(otherKey(f)))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"), combined)
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		cert, err := ParseCertificate(certPEM, keyPEM)
		if err != nil {
			return
		}
		if len(cert.Certificate) == 0 || cert.Leaf == nil || cert.PrivateKey == nil {
			t.Fatalf("accepted a certificate without leaf or key: %+v", cert)
		}
	})
}
