package mux

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"
)

// Greet sends a hello with a throwaway identity and waits for the relay's
// challenge, without authenticating. It is how a machine without the token
// measures a relay: the round trip from hello to challenge, one sample, with
// the relay's name from the challenge. The relay sees an abandoned
// handshake; the caller closes the connection.
func (c *Conn) Greet(name string, timeout time.Duration) (*Challenge, time.Duration, error) {
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	if err := c.Send(&Hello{Version: Version, Name: name, Identity: pub, Nonce: newNonce(), Query: true}); err != nil {
		return nil, 0, err
	}
	ch, err := expect[*Challenge](c)
	if err != nil {
		return nil, 0, err
	}
	rtt := time.Since(start)
	if ch.Version != Version {
		return nil, 0, fmt.Errorf("%w (relay %d, node %d)", ErrVersion, ch.Version, Version)
	}
	return ch, rtt, nil
}
