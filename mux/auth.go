package mux

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// nonceSize is the length of the random nonces each side contributes.
const nonceSize = 32

// Labels separate the three things computed over the same nonces, so that
// no answer can be replayed as another.
const (
	labelNodeMAC    = "p2prc node auth v1\x00"
	labelRelayProof = "p2prc relay proof v1\x00"
	labelIdentity   = "p2prc node identity v1\x00"
)

// All three proofs end with the channel binding: a value both ends of one
// TLS connection derive from its keys (ChannelBinding), empty in plaintext.
// A proof made inside one TLS connection is worthless in another, so a man
// in the middle who terminates TLS cannot relay the handshake between two
// connections (and so cannot get its certificate pinned on first use).

// nodeMAC is what a node sends to prove it holds the token.
func nodeMAC(token, relayNonce, nodeNonce, identity, binding []byte) []byte {
	return mac(token, labelNodeMAC, relayNonce, nodeNonce, identity, binding)
}

// relayProof is what a relay sends, after the node proved itself, to prove it
// holds the token too.
func relayProof(token, relayNonce, nodeNonce, identity, binding []byte) []byte {
	return mac(token, labelRelayProof, relayNonce, nodeNonce, identity, binding)
}

func mac(token []byte, label string, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, token)
	h.Write([]byte(label))
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// identityTranscript is what a node signs with its identity key.
func identityTranscript(relayNonce, nodeNonce, binding []byte) []byte {
	b := make([]byte, 0, len(labelIdentity)+2*nonceSize+len(binding))
	b = append(b, labelIdentity...)
	b = append(b, relayNonce...)
	b = append(b, nodeNonce...)
	return append(b, binding...)
}

func newNonce() []byte {
	b := make([]byte, nonceSize)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return b
}

// NodeID is the stable name of a node identity: the hex of the first 16
// bytes of the SHA-256 of its ed25519 public key. Mappings are owned by it.
func NodeID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}
