package mux

import (
	"crypto/ed25519"
	"crypto/rand"
	"time"
)

// Greet sends a hello with a throwaway identity and waits for the relay's
// challenge, without authenticating. It is how a machine without the token
// measures a relay: the round trip from hello to challenge, one sample, with
// the relay's name from the challenge. The relay sees an abandoned
// handshake; the caller closes the connection.
func (c *Conn) Greet(name string, timeout time.Duration) (*Challenge, time.Duration, error) {
	defer c.within(timeout)()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	ch, err := c.hello(&Hello{Version: Version, Name: name, Identity: pub, Nonce: newNonce(), Query: true})
	if err != nil {
		return nil, 0, err
	}
	return ch, time.Since(start), nil
}
