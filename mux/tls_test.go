package mux

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

const fp64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseFingerprint(t *testing.T) {
	colons := "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF"
	for _, in := range []string{fp64, strings.ToUpper(fp64), " " + fp64 + "\n", colons, "sha256:" + fp64, "SHA256 Fingerprint=" + colons} {
		if got, err := ParseFingerprint(in); err != nil || got != fp64 {
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q", in, got, err, fp64)
		}
	}
	for _, in := range []string{"", fp64[:63], fp64 + "0", strings.Replace(fp64, "0", "g", 1), "md5:" + fp64, strings.Repeat(fp64, 10)} {
		if _, err := ParseFingerprint(in); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
			t.Errorf("ParseFingerprint(%q): err %v; want one saying what a fingerprint looks like", in, err)
		}
	}
}

// selfSignedDER is a throwaway certificate.
func selfSignedDER(t testing.TB) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "r"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestTrustCheck(t *testing.T) {
	der := selfSignedDER(t)
	fp := Fingerprint(der)
	certs := [][]byte{der}
	tests := []struct {
		name  string
		trust Trust
		want  Verdict
		err   error
	}{
		{"pinned", Trust{Pin: fp, Strict: true}, Verdict{Fingerprint: fp, Pinned: true}, nil},
		{"stored pin", Trust{Pin: fp, FirstUse: true}, Verdict{Fingerprint: fp, Pinned: true}, nil},
		{"first use", Trust{FirstUse: true}, Verdict{Fingerprint: fp, FirstUse: true}, nil},
		{"wrong pin", Trust{Pin: fp64, Strict: true}, Verdict{}, ErrFingerprintMismatch},
		{"wrong stored pin", Trust{Pin: fp64, FirstUse: true}, Verdict{}, ErrFingerprintMismatch},
		{"nothing vouches", Trust{}, Verdict{}, ErrUntrustedCert},
	}
	for _, tt := range tests {
		got, err := tt.trust.Check(certs)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v, %v", tt.name, got, err, tt.want, tt.err)
		}
	}
	if _, err := (Trust{FirstUse: true}).Check(nil); !errors.Is(err, ErrUntrustedCert) {
		t.Errorf("no certificate: %v", err)
	}
	err := Trust{Relay: "203.0.113.7:8700", Pin: fp64, PinFrom: "/state/reverse_proxy_server.json"}.mismatch(fp)
	for _, want := range []string{"203.0.113.7:8700", fp64, fp, "--relay-fingerprint " + fp, "/state/reverse_proxy_server.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch message %q lacks %q", err, want)
		}
	}
}

// Before the handshake, the relay reads no frame above HandshakeMaxFrame.
func TestRelayHandshakeCapsFrames(t *testing.T) {
	big := frame(byte(TypeHello), `{"name":"`+strings.Repeat("x", HandshakeMaxFrame)+`"}`)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go a.Write(big) // ends when b is closed
	c := NewConn(b, 0)
	_, err := c.RelayHandshake(RelayAuth{Name: "r", Token: []byte("t")}, time.Second)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized hello: %v; want ErrFrameTooLarge", err)
	}
	if c.maxFrame != DefaultMaxFrameSize {
		t.Fatalf("cap after the handshake is %d; want it restored to %d", c.maxFrame, DefaultMaxFrameSize)
	}
}

func FuzzParseFingerprint(f *testing.F) {
	for _, s := range []string{fp64, "sha256:" + fp64, "AB:CD", "", "SHA256 Fingerprint=00:11"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		if len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
			t.Fatalf("ParseFingerprint(%q) = %q, not 64 lower-case hex digits", s, fp)
		}
		if again, err := ParseFingerprint(fp); err != nil || again != fp {
			t.Fatalf("canonical form %q does not parse back: %q %v", fp, again, err)
		}
	})
}

// FuzzTrustCheck feeds certificate chains as a relay could send them:
// Check never panics, and accepts only what its policy allows.
func FuzzTrustCheck(f *testing.F) {
	der := selfSignedDER(f)
	f.Add(der, []byte{}, false)
	f.Add(der, der, true)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01}, []byte{}, true)
	f.Fuzz(func(t *testing.T, leaf, intermediate []byte, firstUse bool) {
		chain := [][]byte{leaf}
		if len(intermediate) > 0 {
			chain = append(chain, intermediate)
		}
		pool := x509.NewCertPool() // an empty pool: no CA vouches for anything
		v, err := Trust{Relay: "127.0.0.1:8700", Pin: fp64, Strict: true, RootCAs: pool}.Check(chain)
		if err == nil && v.Fingerprint != fp64 {
			t.Fatalf("strict pin accepted %s", v.Fingerprint)
		}
		v, err = Trust{Relay: "127.0.0.1:8700", FirstUse: firstUse, RootCAs: pool}.Check(chain)
		if err == nil && (!firstUse || !v.FirstUse || len(leaf) == 0) {
			t.Fatalf("accepted %+v without a pin, a CA or first use", v)
		}
	})
}
