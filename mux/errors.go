package mux

// ErrorCode says why a request or a session was refused. The strings are part
// of the wire format and never change.
type ErrorCode string

const (
	// CodeVersion: the peers speak different protocol versions.
	CodeVersion ErrorCode = "version"
	// CodeAuth: the token or the identity proof did not check out.
	CodeAuth ErrorCode = "auth"
	// CodeTimeout: the peer did not finish the handshake in time.
	CodeTimeout ErrorCode = "timeout"
	// CodeBadRequest: a message was malformed or made no sense.
	CodeBadRequest ErrorCode = "bad_request"
	// CodeUnknownMessage: the receiver does not know this message type and ignored it.
	CodeUnknownMessage ErrorCode = "unknown_message"
	// CodeOutOfRange: the wanted port is outside the relay's range.
	CodeOutOfRange ErrorCode = "out_of_range"
	// CodeOwned: the wanted port belongs to another node.
	CodeOwned ErrorCode = "owned"
	// CodeInUse: the port is taken by another program on the relay host.
	CodeInUse ErrorCode = "in_use"
	// CodeExhausted: no port is free in the relay's range.
	CodeExhausted ErrorCode = "exhausted"
	// CodeLimit: a limit of this relay forbids the request (mappings per node, ...).
	CodeLimit ErrorCode = "limit"
	// CodeBusy: a limit that frees up by itself was hit (sessions per address, ...).
	CodeBusy ErrorCode = "busy"
	// CodeReplaced: a newer session of the same node took over.
	CodeReplaced ErrorCode = "replaced"
	// CodeShutdown: the sender is shutting down.
	CodeShutdown ErrorCode = "shutdown"
	// CodeInternal: the sender failed in a way that is not the peer's fault.
	CodeInternal ErrorCode = "internal"
	// CodeTLS: the peers disagree on TLS (a node without TLS, a relay with).
	CodeTLS ErrorCode = "tls"
)

// Fatal reports whether retrying cannot help: a node refused with such a
// code exits rather than reconnecting.
func (c ErrorCode) Fatal() bool {
	switch c {
	case CodeVersion, CodeAuth, CodeBadRequest, CodeOutOfRange, CodeOwned, CodeLimit, CodeReplaced, CodeTLS:
		return true
	}
	return false
}

// Error lets a received refusal travel as a Go error.
func (e *Error) Error() string {
	if e.Text == "" {
		return "refused: " + string(e.Code)
	}
	return e.Text
}

// Fatal reports whether retrying cannot help.
func (e *Error) Fatal() bool { return e.Code.Fatal() }
