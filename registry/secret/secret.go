// Package secret keeps the secrets in a state dir: the token a relay and its
// nodes share, a node's identity key, and a relay's TLS certificate with its
// key. Files are written once, atomically, with mode 0600, and never logged;
// errors name a file, never its content.
package secret

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/p2prc/p2prc/registry/jsonfile"
)

// File names inside a state dir.
const (
	TokenFileName = "relay.token"
	KeyFileName   = "node.key"
)

// tokenBytes is the entropy of a generated token: 32 bytes, as 64 hex digits.
const tokenBytes = 32

// maxTokenFile caps what is read as a token file.
const maxTokenFile = 4096

// ReadToken reads a token file: its content with surrounding white space
// removed. An empty file is an error.
func ReadToken(path string) ([]byte, error) {
	b, err := jsonfile.ReadAtMost(path, maxTokenFile)
	if errors.Is(err, jsonfile.ErrTooLarge) {
		return nil, fmt.Errorf("token file %s is larger than %d bytes; it should hold just the token", path, maxTokenFile)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return nil, fmt.Errorf("token file %s is empty; put the relay's token in it", path)
	}
	return []byte(t), nil
}

// LoadOrCreateToken reads the token at path, or generates a random one and
// stores it there (0600) if the file does not exist; created says which.
func LoadOrCreateToken(path string) (token []byte, created bool, err error) {
	t, err := ReadToken(path)
	if err == nil {
		return t, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	raw := make([]byte, tokenBytes)
	rand.Read(raw)
	t = []byte(hex.EncodeToString(raw))
	if err := jsonfile.WriteFile(path, append(t, '\n'), 0o600); err != nil {
		return nil, false, fmt.Errorf("storing a new token: %w", err)
	}
	return t, true, nil
}

// LoadOrCreateKey reads the ed25519 identity key at path (PKCS #8 in PEM), or
// generates one and stores it there (0600) if the file does not exist.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := jsonfile.ReadAtMost(path, maxPEMFile)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, err
		}
		out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := jsonfile.WriteFile(path, out, 0o600); err != nil {
			return nil, false, fmt.Errorf("storing a new identity key: %w", err)
		}
		return key, true, nil
	}
	if errors.Is(err, jsonfile.ErrTooLarge) {
		return nil, false, fmt.Errorf("identity key %s is larger than %d bytes; it should hold one PEM key", path, maxPEMFile)
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the identity key: %w", err)
	}
	key, err = parseKey(path, b)
	return key, false, err
}

// parseKey parses the content of the identity key file at path.
func parseKey(path string, b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("identity key %s is not a PEM private key; move it away and a new identity is created (the node then gets new ports)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	ek, ok := k.(ed25519.PrivateKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("identity key %s is not an ed25519 key; move it away and a new identity is created (the node then gets new ports)", path)
	}
	return ek, nil
}
