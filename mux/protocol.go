// Package mux is the wire between a relay and a node: one TCP connection
// carrying a yamux session, and on it a control stream that speaks the
// hand-written protocol described in PROTOCOL.md.
//
// The control protocol is a sequence of frames. A frame is a 5-byte header —
// a one-byte message type and a four-byte big-endian payload length — then the
// payload, a JSON object whose shape is fixed by the type. Payload lengths are
// capped before anything is allocated.
//
// Visitor streams, which the relay opens to the node for each visitor
// connection, start with a small binary header (see stream.go) and then carry
// raw bytes.
package mux

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the control protocol version this build speaks. A peer whose
// hello carries another version is refused with CodeVersion.
const Version = 1

const (
	sizeOfType   = 1
	sizeOfLength = 4

	// frameHeaderSize is the size of the header in front of every frame.
	frameHeaderSize = sizeOfType + sizeOfLength

	// DefaultMaxFrameSize caps a control frame's payload unless a Conn is
	// told otherwise. Listings and IP-table exchanges are the largest
	// messages; 1 MiB holds thousands of entries.
	DefaultMaxFrameSize = 1 << 20
)

// Type identifies a control message. The values are part of the wire format
// and never change; a test pins them.
type Type uint8

const (
	// TypeHello opens the handshake, node to relay. Payload: Hello.
	TypeHello Type = 1
	// TypeChallenge answers a hello, relay to node. Payload: Challenge.
	TypeChallenge Type = 2
	// TypeAuth proves the token and the node's identity, node to relay. Payload: Auth.
	TypeAuth Type = 3
	// TypeWelcome ends a successful handshake, relay to node. Payload: Welcome.
	TypeWelcome Type = 4
	// TypeExpose asks for a public port, node to relay. Payload: Expose.
	TypeExpose Type = 5
	// TypeGrant answers an expose with a port, relay to node. Payload: Grant.
	TypeGrant Type = 6
	// TypeError refuses a request or the whole session, either way. Payload: Error.
	TypeError Type = 7
	// TypePing asks for a pong, either way. Payload: Ping.
	TypePing Type = 8
	// TypePong answers a ping with its sequence number, either way. Payload: Ping.
	TypePong Type = 9
	// TypeClose announces that the sender is ending the session. Payload: Close.
	TypeClose Type = 10
	// TypeReset aborts one visitor stream, either way. Payload: Reset.
	TypeReset Type = 11
	// TypeExchange shares known relays and the IP table, node to relay and
	// back. Payload: Exchange.
	TypeExchange Type = 12
	// TypeListMappings asks for the asking node's mappings, node to relay.
	// Payload: ListMappings.
	TypeListMappings Type = 13
	// TypeMappingList answers TypeListMappings, relay to node. Payload: MappingList.
	TypeMappingList Type = 14
	// TypeRelease gives up one of the node's own mappings, node to relay;
	// the relay confirms with the same message. Payload: Release.
	TypeRelease Type = 15
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeChallenge:
		return "challenge"
	case TypeAuth:
		return "auth"
	case TypeWelcome:
		return "welcome"
	case TypeExpose:
		return "expose"
	case TypeGrant:
		return "grant"
	case TypeError:
		return "error"
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeClose:
		return "close"
	case TypeReset:
		return "reset"
	case TypeExchange:
		return "exchange"
	case TypeListMappings:
		return "list-mappings"
	case TypeMappingList:
		return "mapping-list"
	case TypeRelease:
		return "release"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Sentinel errors of the codec. Callers branch on these with errors.Is.
var (
	// ErrFrameTooLarge means a peer announced a payload above the cap. The
	// connection cannot be resynchronised and must be closed.
	ErrFrameTooLarge = errors.New("control frame too large")
	// ErrUnknownType means a well-formed frame carried a type this build
	// does not know. The frame has been consumed; the stream is still usable.
	ErrUnknownType = errors.New("unknown control message type")
	// ErrMalformed means a frame of a known type carried a payload that does
	// not decode. The stream is still in sync, but the peer is broken.
	ErrMalformed = errors.New("malformed control message")
)

// Message is one control message. The set of implementations is closed:
// the types in this file.
type Message interface {
	Type() Type
}

// Hello opens the handshake. The node names itself and its identity key and
// sends a fresh nonce that the relay's final proof must cover.
type Hello struct {
	Version  int    `json:"version"`
	Name     string `json:"name"`
	Identity []byte `json:"identity"` // ed25519 public key, 32 bytes
	Nonce    []byte `json:"nonce"`    // 32 random bytes
	// Query opens a query session (a probe or a listing): it never replaces
	// the node's live session and may not expose.
	Query bool `json:"query,omitempty"`
}

// Challenge carries the relay's nonce, which the node must answer.
type Challenge struct {
	Version int    `json:"version"`
	Relay   string `json:"relay"` // the relay's name
	Nonce   []byte `json:"nonce"` // 32 random bytes
}

// Auth answers a challenge: an HMAC over both nonces keyed with the shared
// token, and a signature by the node's identity key.
type Auth struct {
	MAC       []byte `json:"mac"`
	Signature []byte `json:"signature"`
}

// Welcome ends a successful handshake. Proof shows the relay knows the token
// too; it is sent only after the node has proved itself, so a stranger cannot
// collect MACs to guess the token offline.
type Welcome struct {
	Relay      string `json:"relay"`       // the relay's name
	PublicHost string `json:"public_host"` // the host visitors use to reach granted ports
	NodeID     string `json:"node_id"`     // the node's identity as the relay records it
	Proof      []byte `json:"proof"`
}

// Expose asks for a public port for one local service.
type Expose struct {
	ID         uint32 `json:"id"`          // chosen by the node; echoed in the grant or error
	Network    string `json:"network"`     // "tcp" or "udp"
	Local      string `json:"local"`       // the node's local target, host:port (recorded, never dialled by the relay)
	WantedPort int    `json:"wanted_port"` // 0: the relay chooses
}

// Grant answers an Expose: visitors reach the service at PublicHost:Port.
type Grant struct {
	ID         uint32 `json:"id"`
	Network    string `json:"network"`
	Port       int    `json:"port"`
	PublicHost string `json:"public_host"`
	Relay      string `json:"relay"`
}

// Error refuses a request (ID names it) or, with ID 0, the whole session.
type Error struct {
	ID   uint32    `json:"id"`
	Code ErrorCode `json:"code"`
	Text string    `json:"text"` // for a person: what went wrong and what to do
}

// Ping asks for a Pong carrying the same Seq; Pong reuses this payload.
type Ping struct {
	Seq uint64 `json:"seq"`
}

// Pong answers a Ping.
type Pong Ping

// Close says the sender is ending the session, and why.
type Close struct {
	Code   ErrorCode `json:"code,omitempty"`
	Reason string    `json:"reason"`
}

// Release asks the relay to drop one of the node's own mappings: its port
// is closed and freed for anyone. The relay answers with the same message
// (done) or an Error with the same ID (code owned: another node's port).
type Release struct {
	ID      uint32 `json:"id"`      // chosen by the node; echoed in the answer
	Network string `json:"network"` // "tcp" or "udp"
	Port    int    `json:"port"`    // the public port
}

// Reset aborts one visitor stream, named by its yamux stream ID, because the
// connection at the sender's end failed. The receiver closes its end at once.
type Reset struct {
	Stream uint32 `json:"stream"`
}

func (*Hello) Type() Type     { return TypeHello }
func (*Challenge) Type() Type { return TypeChallenge }
func (*Auth) Type() Type      { return TypeAuth }
func (*Welcome) Type() Type   { return TypeWelcome }
func (*Expose) Type() Type    { return TypeExpose }
func (*Grant) Type() Type     { return TypeGrant }
func (*Error) Type() Type     { return TypeError }
func (*Ping) Type() Type      { return TypePing }
func (*Pong) Type() Type      { return TypePong }
func (*Close) Type() Type     { return TypeClose }
func (*Reset) Type() Type     { return TypeReset }
func (*Release) Type() Type   { return TypeRelease }

// newMessage returns an empty message of type t, or nil for an unknown type.
func newMessage(t Type) Message {
	switch t {
	case TypeHello:
		return new(Hello)
	case TypeChallenge:
		return new(Challenge)
	case TypeAuth:
		return new(Auth)
	case TypeWelcome:
		return new(Welcome)
	case TypeExpose:
		return new(Expose)
	case TypeGrant:
		return new(Grant)
	case TypeError:
		return new(Error)
	case TypePing:
		return new(Ping)
	case TypePong:
		return new(Pong)
	case TypeClose:
		return new(Close)
	case TypeReset:
		return new(Reset)
	case TypeExchange:
		return new(Exchange)
	case TypeListMappings:
		return new(ListMappings)
	case TypeMappingList:
		return new(MappingList)
	case TypeRelease:
		return new(Release)
	}
	return nil
}

// AppendFrame appends m, framed, to b.
func AppendFrame(b []byte, m Message) ([]byte, error) {
	payload, err := json.Marshal(m)
	if err != nil {
		return b, fmt.Errorf("encode %v: %w", m.Type(), err)
	}
	b = append(b, byte(m.Type()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...), nil
}

// ReadFrame reads one frame from r. It returns ErrFrameTooLarge, without
// reading the payload, when the announced length exceeds max; ErrUnknownType
// (wrapped, with the frame consumed) for a type this build does not know; and
// ErrMalformed (wrapped) for a payload that does not decode.
func ReadFrame(r io.Reader, max int) (Message, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	t := Type(hdr[0])
	n := binary.BigEndian.Uint32(hdr[sizeOfType:])
	if int64(n) > int64(max) {
		return nil, fmt.Errorf("%w: %v of %d bytes, limit %d", ErrFrameTooLarge, t, n, max)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, noEOF(err)
	}
	return decode(t, payload)
}

// decode turns one payload of type t into its message.
func decode(t Type, payload []byte) (Message, error) {
	m := newMessage(t)
	if m == nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownType, t)
	}
	if err := json.Unmarshal(payload, m); err != nil {
		return nil, fmt.Errorf("%w: %v: %v", ErrMalformed, t, err)
	}
	if c, ok := m.(checker); ok {
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrMalformed, t, err)
		}
	}
	return m, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF: the peer hung up
// half-way, which is not a clean end.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
