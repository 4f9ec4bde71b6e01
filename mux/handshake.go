package mux

import (
	"crypto/ed25519"
	"crypto/hmac"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// DefaultHandshakeTimeout bounds a whole handshake unless told otherwise.
const DefaultHandshakeTimeout = 10 * time.Second

// maxNameLen caps a node's or relay's self-chosen name.
const maxNameLen = 64

// HandshakeMaxFrame caps the frames a relay reads before a node is trusted:
// handshake messages are a few hundred bytes, so a stranger cannot make the
// relay allocate more than this.
const HandshakeMaxFrame = 4 << 10

// Sentinel errors of the handshake.
var (
	// ErrAuthFailed: the node's token MAC or identity signature was wrong.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrRelayProof: the relay could not prove it holds the token.
	ErrRelayProof = errors.New("the relay could not prove it holds the token: check --relay and the token, you may be talking to another relay")
	// ErrVersion: the relay speaks another protocol version.
	ErrVersion = errors.New("the relay speaks another protocol version: run the same p2prc release on both")
	// ErrUnexpected: the peer sent a message the handshake did not expect.
	ErrUnexpected = errors.New("unexpected message in handshake")
)

// NodeAuth is what a node needs to authenticate.
type NodeAuth struct {
	Name  string             // shown in the relay's logs and listings
	Key   ed25519.PrivateKey // the node's identity
	Token []byte             // the secret shared with the relay; never sent
	Query bool               // open a query session: see Hello.Query
	// Binding is ChannelBinding of the connection: what ties the
	// handshake to this TLS connection. Nil in plaintext.
	Binding []byte
}

// RelayAuth is what a relay needs to authenticate nodes.
type RelayAuth struct {
	Name       string // the relay's name, sent in the challenge and welcome
	PublicHost string // the host visitors use, sent in the welcome
	Token      []byte
	Binding    []byte // ChannelBinding of the connection; nil in plaintext
}

// Peer is a node the relay has authenticated.
type Peer struct {
	Name     string
	Identity ed25519.PublicKey
	ID       string // NodeID(Identity)
	Query    bool   // a query session: see Hello.Query
}

// within bounds the exchange that follows by timeout (zero:
// DefaultHandshakeTimeout); the returned func lifts the bound.
func (c *Conn) within(timeout time.Duration) (lift func()) {
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	c.SetDeadline(time.Now().Add(timeout))
	return func() { c.SetDeadline(time.Time{}) }
}

// hello sends h and waits for the relay's challenge, which must be of this
// protocol version.
func (c *Conn) hello(h *Hello) (*Challenge, error) {
	if err := c.Send(h); err != nil {
		return nil, c.refusalOr(err)
	}
	ch, err := expect[*Challenge](c)
	if err != nil {
		return nil, err
	}
	if ch.Version != Version {
		return nil, fmt.Errorf("%w (relay %d, node %d)", ErrVersion, ch.Version, Version)
	}
	return ch, nil
}

// NodeHandshake runs the node's side of the handshake on c and returns the
// relay's welcome. A refusal by the relay comes back as *Error. The whole
// exchange must finish within timeout (zero: DefaultHandshakeTimeout).
func (c *Conn) NodeHandshake(a NodeAuth, timeout time.Duration) (*Welcome, error) {
	defer c.within(timeout)()
	identity := a.Key.Public().(ed25519.PublicKey)
	nodeNonce := newNonce()
	ch, err := c.hello(&Hello{Version: Version, Name: a.Name, Identity: identity, Nonce: nodeNonce, Query: a.Query})
	if err != nil {
		return nil, err
	}
	if len(ch.Nonce) != nonceSize {
		return nil, fmt.Errorf("%w: challenge nonce of %d bytes", ErrMalformed, len(ch.Nonce))
	}
	err = c.Send(&Auth{
		MAC:       nodeMAC(a.Token, ch.Nonce, nodeNonce, identity, a.Binding),
		Signature: ed25519.Sign(a.Key, identityTranscript(ch.Nonce, nodeNonce, a.Binding)),
	})
	if err != nil {
		return nil, c.refusalOr(err)
	}
	w, err := expect[*Welcome](c)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(w.Proof, relayProof(a.Token, ch.Nonce, nodeNonce, identity, a.Binding)) {
		return nil, ErrRelayProof
	}
	return w, nil
}

// RelayHandshake runs the relay's side of the handshake on c and returns the
// authenticated node. On failure it tells the node why (with an Error frame)
// before returning; the caller closes the connection.
func (c *Conn) RelayHandshake(a RelayAuth, timeout time.Duration) (Peer, error) {
	defer c.within(timeout)()
	defer c.capFrames(HandshakeMaxFrame)()

	h, err := expect[*Hello](c)
	if err != nil {
		return Peer{}, err
	}
	if h.Version != Version {
		return Peer{}, c.refuse(CodeVersion, fmt.Sprintf(
			"this relay speaks protocol version %d and the node %d: run the same p2prc release on both", Version, h.Version))
	}
	if len(h.Identity) != ed25519.PublicKeySize || len(h.Nonce) != nonceSize {
		return Peer{}, c.refuse(CodeBadRequest, "hello carries a malformed identity or nonce")
	}
	if err := checkName(h.Name); err != nil {
		return Peer{}, c.refuse(CodeBadRequest, err.Error())
	}
	relayNonce := newNonce()
	if err := c.Send(&Challenge{Version: Version, Relay: a.Name, Nonce: relayNonce}); err != nil {
		return Peer{}, err
	}
	au, err := expect[*Auth](c)
	if err != nil {
		return Peer{}, err
	}
	identity := ed25519.PublicKey(h.Identity)
	macOK := hmac.Equal(au.MAC, nodeMAC(a.Token, relayNonce, h.Nonce, identity, a.Binding))
	sigOK := len(au.Signature) == ed25519.SignatureSize &&
		ed25519.Verify(identity, identityTranscript(relayNonce, h.Nonce, a.Binding), au.Signature)
	if !macOK || !sigOK {
		c.refuse(CodeAuth, "authentication failed: this relay's token differs from the node's (give the node the relay's token with --token-file or P2PRC_TOKEN), or something between them terminates TLS")
		return Peer{}, ErrAuthFailed
	}
	p := Peer{Name: h.Name, Identity: identity, ID: NodeID(identity), Query: h.Query}
	if p.Name == "" {
		p.Name = "node-" + p.ID[:8]
	}
	err = c.Send(&Welcome{
		Relay:      a.Name,
		PublicHost: a.PublicHost,
		NodeID:     p.ID,
		Proof:      relayProof(a.Token, relayNonce, h.Nonce, identity, a.Binding),
	})
	return p, err
}

// expect receives the next message, which must be a T. An Error from the
// peer is returned as the error.
func expect[T Message](c *Conn) (T, error) {
	var zero T
	m, err := c.Recv()
	if err != nil {
		return zero, err
	}
	if v, ok := m.(T); ok {
		return v, nil
	}
	if e, ok := m.(*Error); ok {
		return zero, e
	}
	return zero, fmt.Errorf("%w: got %v", ErrUnexpected, m.Type())
}

// refusalOr returns the refusal the relay sent before it hung up, if one
// is waiting to be read, and err otherwise. A relay answers and closes so
// fast that yamux may report our own write as failed ("session shutdown")
// although it arrived, and the answer says why: a refusal retrying cannot
// fix must not look like a network failure.
func (c *Conn) refusalOr(err error) error {
	c.SetReadDeadline(time.Now().Add(refusalWait))
	if m, rerr := c.Recv(); rerr == nil {
		if e, ok := m.(*Error); ok {
			return e
		}
	}
	return err
}

// refusalWait bounds the wait for a refusal after a failed write; when the
// session has ended, buffered data is returned at once.
const refusalWait = 200 * time.Millisecond

// refuse tells the peer why the handshake failed and returns that as an error.
func (c *Conn) refuse(code ErrorCode, text string) error {
	e := &Error{Code: code, Text: text}
	c.Send(e)
	return e
}

// checkName accepts names a person can read in a log line.
func checkName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("node name is %d bytes long; the limit is %d", len(name), maxNameLen)
	}
	if strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return fmt.Errorf("node name %q has spaces or control characters; use letters, digits, '-' and '.'", name)
	}
	return nil
}
